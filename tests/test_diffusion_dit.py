"""The DiT denoiser, its objectives and its training data: each test fails if the feature it names is removed."""

import dataclasses
import math

import pytest
import torch

import zoo
from zoo.diffusion import recipe
from zoo.diffusion.data import CaptionTokenizer
from zoo.diffusion.dit import DiTConfig, grid_embedding, timestep_embedding
from zoo.diffusion.objectives import corrupt, training_scheduler
from zoo.registry import get_family

TINY = get_family("dit").tiny


def tiny_dit(**overrides):
    torch.manual_seed(0)
    return zoo.load("dit-shapes", **{**TINY, **overrides})


def with_random_output(model):
    """Undo the zero init of the output layers, so the prediction depends on the input."""
    torch.manual_seed(1)
    for layer in (model.final_modulation[-1], model.final):
        torch.nn.init.normal_(layer.weight, std=0.2)
    for block in model.transformer.blocks:
        torch.nn.init.normal_(block.modulation[-1].weight, std=0.2)
    return model.eval()


def captions(*texts):
    return CaptionTokenizer.build().encode_batch(list(texts))


def test_untrained_dit_predicts_zero_and_every_block_starts_as_identity():
    model = tiny_dit().eval()
    latents = torch.randn(2, 4, 4, 4)
    tokens, mask = captions("a small red triangle at the top left on a blue background", "")
    with torch.no_grad():
        assert torch.equal(model(latents, torch.tensor([10.0, 900.0]), tokens, mask), torch.zeros_like(latents))
        x, cond = torch.randn(2, 4, 32), torch.randn(2, 32)
        context, context_mask, _ = model.encode_text(tokens, mask)
        context_mask = context_mask[:, None, None, :]
        block = model.transformer.blocks[0]
        assert torch.equal(block.modulation(cond), torch.zeros(2, 6 * 32))
        # the gated self-attention and MLP branches add nothing; only the (ungated) cross-attention does
        expected = x + block.cross_attn(block.cross_norm(x), mask=context_mask, context=context)
        assert torch.allclose(block(x, context=context, context_mask=context_mask, cond=cond), expected)


def test_prediction_depends_on_caption_timestep_and_position_and_any_latent_size_works():
    model = with_random_output(tiny_dit())
    latents = torch.randn(1, 4, 4, 4)
    red, blue = captions("a small red triangle at the top left on a blue background",
                         "a small blue triangle at the top left on a blue background")
    t = torch.tensor([500.0])
    with torch.no_grad():
        base = model(latents, t, red[:1], blue[:1] | True)
        assert not torch.allclose(base, model(latents, t, red[1:], blue[1:] | True))  # caption
        assert not torch.allclose(base, model(latents, torch.tensor([50.0]), red[:1], blue[:1] | True))  # timestep
        # 2-D RoPE: a bigger latent (other patch positions) runs and is not a tiling of the small one
        big = model(latents.repeat(1, 1, 2, 2), t, red[:1], blue[:1] | True)
        assert big.shape == (1, 4, 8, 8) and not torch.allclose(big[..., :4, :4], big[..., 4:, 4:])


def test_empty_caption_is_the_learned_null_state():
    model = with_random_output(tiny_dit())
    tokens, mask = captions("", "")
    with torch.no_grad():
        context, context_mask, pooled = model.encode_text(tokens, mask)
    assert torch.isfinite(context).all() and context_mask[:, 0].all() and not context_mask[:, 1:].any()
    with torch.no_grad():
        model.text_encoder.null.add_(1.0)
        assert not torch.allclose(model.encode_text(tokens, mask)[2], pooled)


def test_unpatchify_inverts_the_token_layout():
    """With the transformer bypassed and the output layer set to copy each patch, the model is the identity."""
    model = tiny_dit(patch_size=2, latent_channels=3)
    p, C = 2, 3
    x = torch.randn(2, C, 4, 6)
    tokens = x.unfold(2, p, p).unfold(3, p, p)  # (B, C, h/p, w/p, p, p)
    tokens = tokens.permute(0, 2, 3, 4, 5, 1).reshape(2, -1, p * p * C)  # row-major patches, (p_row, p_col, C)
    width = model.config.backbone.dim
    model.transformer.forward = lambda x, **kwargs: torch.nn.functional.pad(tokens, (0, width - p * p * C))
    model.final_norm = torch.nn.Identity()  # and the zero-initialised modulation leaves the tokens unchanged
    with torch.no_grad():
        model.final.weight.copy_(torch.eye(p * p * C, width))
    tok, mask = captions("", "")
    with torch.no_grad():
        assert torch.equal(model(x, torch.zeros(2), tok, mask), x)


def test_timestep_embedding_matches_the_formula():
    t = torch.tensor([0.0, 1.0, 999.0])
    emb = timestep_embedding(t, 8)
    freqs = [10000 ** (-i / 4) for i in range(4)]
    expected = [[math.cos(v * f) for f in freqs] + [math.sin(v * f) for f in freqs] for v in t.tolist()]
    assert torch.allclose(emb, torch.tensor(expected), atol=1e-4)


def test_absolute_positions_tell_the_tokens_where_they_are():
    """RoPE only compares positions; the sin-cos table is what lets "at the top left" mean a place. Patches of equal
    content enter the first block as different tokens with the table, as equal ones without it."""
    table = grid_embedding(torch.tensor([[0, 0], [2, 3]]), 8)  # (row, column): row's sinusoids, then column's
    assert torch.allclose(table[1], torch.cat([timestep_embedding(torch.tensor([2.0]), 4)[0],
                                               timestep_embedding(torch.tensor([3.0]), 4)[0]]))
    entering = {}
    for absolute in (True, False):
        model = tiny_dit(absolute_positions=absolute)
        model.transformer.register_forward_hook(lambda m, args, out, a=absolute: entering.update({a: args[0]}))
        tokens, mask = captions("")
        with torch.no_grad():
            model(torch.zeros(1, 4, 4, 4), torch.tensor([500.0]), tokens, mask)
    assert not torch.allclose(entering[True][0, 0], entering[True][0, 3])  # four tokens of equal (zero) content
    assert torch.allclose(entering[False][0, 0], entering[False][0, 3])


@pytest.mark.parametrize("objective", ["epsilon", "v_prediction"])
def test_ddpm_objectives_follow_the_forward_process(objective):
    config = DiTConfig(objective=objective, weighting="min_snr", min_snr_gamma=5.0)
    scheduler = training_scheduler(objective)
    x0, noise = torch.randn(64, 4, 2, 2), torch.randn(64, 4, 2, 2)
    noisy, t, target, weight = corrupt(config, scheduler, x0, noise, torch.Generator().manual_seed(0))
    abar = scheduler.alphas_cumprod[t.long()].view(-1, 1, 1, 1)
    assert torch.allclose(noisy, abar.sqrt() * x0 + (1 - abar).sqrt() * noise, atol=1e-5)
    expected = noise if objective == "epsilon" else abar.sqrt() * noise - (1 - abar).sqrt() * x0
    assert torch.allclose(target, expected, atol=1e-5)
    snr = (abar / (1 - abar)).flatten()
    min_snr = snr.clamp(max=5.0)
    assert torch.allclose(weight, min_snr / snr if objective == "epsilon" else min_snr / (snr + 1), atol=1e-5)
    assert t.min() >= 0 and t.max() < 1000 and len(t.unique()) > 40


def test_rectified_flow_is_a_straight_line_with_logit_normal_sigmas():
    config = DiTConfig(objective="flow", weighting="logit_normal")
    x0, noise = torch.randn(4000, 1, 1, 1), torch.randn(4000, 1, 1, 1)
    noisy, t, target, weight = corrupt(config, training_scheduler("flow"), x0, noise, torch.Generator().manual_seed(0))
    sigma = (t / 1000).view(-1, 1, 1, 1)
    assert torch.allclose(noisy, (1 - sigma) * x0 + sigma * noise, atol=1e-6)
    assert torch.equal(target, noise - x0) and torch.equal(weight, torch.ones(4000))
    # logit-normal: median 0.5, and far fewer draws near the ends than uniform sigmas (10% in each 0.1 band)
    sigma = sigma.flatten()
    assert abs(sigma.median().item() - 0.5) < 0.03
    assert (sigma < 0.1).float().mean() < 0.03 and (sigma > 0.9).float().mean() < 0.03


def test_caption_dropout_replaces_the_share_asked_for_with_the_empty_caption():
    tokens = torch.randint(2, 40, (2000, 5))
    mask = torch.ones(2000, 5, dtype=torch.bool)
    dropped_tokens, dropped_mask = recipe.drop_captions(tokens, mask, 0.1, generator=torch.Generator().manual_seed(0))
    empty = ~dropped_mask.any(dim=1)
    assert 0.08 < empty.float().mean() < 0.12
    assert (dropped_tokens[empty] == 0).all() and torch.equal(dropped_tokens[~empty], tokens[~empty])
    assert recipe.drop_captions(tokens, mask, 0.0)[0] is tokens


def test_training_on_a_few_captioned_latents_lowers_the_seeded_validation_loss():
    model = tiny_dit()
    generator = torch.Generator().manual_seed(0)
    batch, _ = recipe.example_batch(model, generator)
    dataset = [{key: value[i] for key, value in batch.items()} for i in range(len(batch["mean"]))]
    before = recipe.validation_loss(model, dataset, len(dataset))
    assert recipe.validation_loss(model, dataset, len(dataset)) == before  # seeded: deterministic
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    model.train()
    for _ in range(60):
        loss, _ = recipe.loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert recipe.validation_loss(model, dataset, len(dataset)) < 0.8 * before


def test_config_refuses_inconsistent_settings():
    with pytest.raises(ValueError, match="weighting='min_snr' does not apply to objective 'flow'"):
        DiTConfig(objective="flow", weighting="min_snr")
    with pytest.raises(ValueError, match="objective='x0'; allowed: epsilon, v_prediction, flow"):
        DiTConfig(objective="x0")
    with pytest.raises(ValueError, match="latent_size=6 is not a multiple of patch_size=4"):
        DiTConfig(latent_size=6, patch_size=4)
    with pytest.raises(ValueError, match="context_dim=.* must equal text.dim"):
        zoo.load("dit-shapes", text={"dim": 64})


def test_bad_denoiser_inputs_name_the_problem():
    model = tiny_dit().eval()
    tokens, mask = captions("a small red triangle at the top left on a blue background")
    with pytest.raises(ValueError, match=r"latents of shape \(B, 4, h, w\) with h and w multiples of the patch"):
        model(torch.randn(1, 4, 5, 4), torch.zeros(1), tokens, mask)
    with pytest.raises(ValueError, match=r"one timestep per latent"):
        model(torch.randn(1, 4, 4, 4), torch.zeros(2), tokens, mask)
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 128\)"):
        model(torch.randn(1, 4, 4, 4), torch.zeros(1), tokens + 500, mask)


def test_prepare_data_encodes_the_scenes_once_and_completes_the_config(tmp_path, monkeypatch):
    torch.manual_seed(0)
    vae = zoo.load("vae-shapes", **{**get_family("vae").tiny, "image_size": 16})
    vae.set_scaling_factor(2.0)
    vae.save_pretrained(tmp_path / "vae")
    data_config = recipe.DiTDataConfig(image_size=16, n_train=6, n_val=3, n_test=1, n_test_heldout=1,
                                       vae=str(tmp_path / "vae"))
    data = recipe.prepare_data(DiTConfig(), data_config, cache_dir=tmp_path / "cache")
    factor = vae.factor
    assert data.config.latent_size == 16 // factor and data.config.latent_channels == vae.config.latent_channels
    assert data.config.vocab_size == CaptionTokenizer.build().vocab_size
    assert set(data.frozen) == {"vae"} and data.extras["vae_dir"] == tmp_path / "vae"
    item = data.train[0]
    with torch.no_grad():
        posterior = vae.encode(data_loaded_image(data_config, tmp_path))
    assert torch.allclose(item["mean"], posterior.mean[0] * 2.0, atol=2e-3, rtol=1e-3)  # stored as float16
    assert torch.allclose(item["std"], posterior.std[0] * 2.0, atol=2e-3, rtol=1e-3)
    cached = sorted(p.name for p in (tmp_path / "cache").glob("dit-latents-*"))
    assert len(cached) == 2
    monkeypatch.setattr(recipe, "encode_split", lambda *a, **k: pytest.fail("latents were encoded twice"))
    again = recipe.prepare_data(DiTConfig(), data_config, cache_dir=tmp_path / "cache")
    assert torch.equal(again.train[0]["mean"], item["mean"])


def data_loaded_image(data_config, tmp_path):
    from zoo.diffusion.data import load_split
    from zoo.diffusion.vae import to_model_range

    return to_model_range(load_split(data_config, "train", tmp_path / "cache").images[:1])


def test_prepare_data_refuses_a_missing_vae_and_data_paths(tmp_path):
    config = recipe.DiTDataConfig(image_size=16, n_train=2, n_val=1, vae=str(tmp_path / "none"))
    with pytest.raises(FileNotFoundError, match="data.vae=.* is not a trained model directory"):
        recipe.prepare_data(DiTConfig(), config, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="no vae model: set data.vae=DIR"):
        recipe.prepare_data(DiTConfig(), recipe.DiTDataConfig(image_size=16, n_train=2, n_val=1), cache_dir=tmp_path)
    with pytest.raises(ValueError, match="--data .* is not supported"):
        recipe.prepare_data(DiTConfig(), config, path="images/", cache_dir=tmp_path)


def test_without_a_vae_or_judge_the_recipes_train_them_into_the_run_directory_first(tmp_path, monkeypatch):
    """zoo train dit-... with no data.vae: `zoo train vae-shapes` and `zoo train judge-shapes` run as processes of
    their own into RUN/vae and RUN/judge (here cut to 2 steps of tiny models), then the denoiser's data is built
    on them; a second call finds them there and trains nothing."""
    import subprocess

    real_run, commands = subprocess.run, []
    tiny = {"vae": ["model.block_out_channels=8,16", "model.norm_num_groups=4"],
            "judge": ["model.backbone.widths=8,8,8,8,8", "model.backbone.fc_dims=32,32"]}

    def quick_run(command, **kwargs):
        commands.append(command)
        what = "vae" if "vae-shapes" in command else "judge"
        sets = [*tiny[what], "data.n_train=16", "data.n_val=8", "train.eval_every=0", "train.batch_size=8"]
        return real_run([*command, "--steps", "2", *[arg for s in sets for arg in ("--set", s)]], **kwargs)

    monkeypatch.setattr(recipe.subprocess, "run", quick_run)
    data_config = recipe.DiTDataConfig(image_size=16, n_train=8, n_val=4, n_test=1, n_test_heldout=1, seed=3)
    data = recipe.prepare_data(DiTConfig(), data_config, cache_dir=tmp_path / "cache", run_dir=tmp_path / "run")
    assert [c[c.index("train") + 1] for c in commands] == ["vae-shapes", "judge-shapes"]
    vae_command, judge_command = commands
    assert "data.seed=3" in vae_command and "data.heldout_share=0.125" in vae_command
    assert "data.image_size=16" in judge_command and not any("seed" in arg for arg in judge_command)
    assert data.extras["vae_dir"] == tmp_path / "run" / "vae" and set(data.frozen) == {"vae", "judge"}
    assert data.frozen["vae"].config.scaling_factor is not None  # measured at the VAE's export
    assert data.config.latent_size == 8
    recipe.prepare_data(DiTConfig(), data_config, cache_dir=tmp_path / "cache", run_dir=tmp_path / "run")
    assert len(commands) == 2


def aligned_batch(model, align_dim: int):
    batch, _ = recipe.example_batch(model, torch.Generator().manual_seed(0))
    tokens = model.config.tokens
    batch["features"] = torch.randn(len(batch["mean"]), tokens, align_dim, generator=torch.Generator().manual_seed(1))
    return batch


def test_alignment_projects_the_chosen_blocks_states_and_adds_its_cosine_term():
    """REPA (Yu et al., 2024): the projector reads block align_depth's output (later blocks do not change it, that
    block does), and the training loss is the denoising loss minus align_weight times the mean cosine similarity
    between the projected states and the teacher's features of the same patches."""
    model = with_random_output(tiny_dit(align_dim=8, align_depth=1, align_weight=0.5,
                                        backbone={**TINY["backbone"], "n_layers": 2}))
    batch = aligned_batch(model, 8)
    x, t = torch.randn(4, 4, 4, 4, generator=torch.Generator().manual_seed(2)), torch.full((4,), 300.0)
    with torch.no_grad():
        prediction, projected = model(x, t, batch["tokens"], batch["mask"], align=True)
        assert projected.shape == (4, model.config.tokens, 8)
        assert torch.equal(prediction, model(x, t, batch["tokens"], batch["mask"]))
        torch.nn.init.normal_(model.transformer.blocks[1].attn.qkv.weight, std=0.5)  # after the aligned block
        later_prediction, later_projected = model(x, t, batch["tokens"], batch["mask"], align=True)
        assert torch.equal(later_projected, projected) and not torch.allclose(later_prediction, prediction)
        torch.nn.init.normal_(model.transformer.blocks[0].attn.qkv.weight, std=0.5)  # the aligned block
        assert not torch.allclose(model(x, t, batch["tokens"], batch["mask"], align=True)[1], projected)

    model.eval()  # eval mode: the seeded draws, no caption dropout, so both calls see the same noisy latents
    plain, _ = recipe.denoising_loss(model, batch)
    aligned, metrics = recipe.denoising_loss(model, batch, align=True)
    similarity = metrics["align"]
    assert -1 <= similarity <= 1 and abs(similarity) > 1e-4
    assert torch.allclose(aligned, plain - 0.5 * similarity, atol=1e-6)
    assert "align" not in recipe.loss(with_random_output(tiny_dit()), batch)[1]  # no projector: plain loss


def test_training_with_alignment_raises_the_similarity_to_the_teacher():
    model = tiny_dit(align_dim=8, align_depth=1)
    batch = aligned_batch(model, 8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    model.train()
    first = None
    for _ in range(40):
        loss, metrics = recipe.loss(model, batch)
        first = metrics["align"] if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert metrics["align"] > first + 0.3


def test_prepare_data_with_a_teacher_caches_its_features_on_the_patch_grid(tmp_path, monkeypatch):
    from zoo.diffusion.data import load_split
    from zoo.vision.data import normalize

    torch.manual_seed(0)
    vae = zoo.load("vae-shapes", **{**get_family("vae").tiny, "image_size": 16})
    vae.set_scaling_factor(1.0)
    vae.save_pretrained(tmp_path / "vae")
    zoo.load("judge-shapes", **get_family("judge").tiny).save_pretrained(tmp_path / "judge")
    teacher = zoo.load("alexnet-mini", num_classes=9).eval()
    teacher.save_pretrained(tmp_path / "teacher")
    data_config = recipe.DiTDataConfig(image_size=16, n_train=6, n_val=3, n_test=1, n_test_heldout=1,
                                       vae=str(tmp_path / "vae"), judge=str(tmp_path / "judge"),
                                       teacher=str(tmp_path / "teacher"))
    config = DiTConfig(patch_size=2)
    data = recipe.prepare_data(config, data_config, cache_dir=tmp_path / "cache", run_dir=tmp_path / "run")
    grid = 16 // vae.factor // 2
    assert data.config.align_dim == teacher.config.widths[-1]
    features = data.train[0]["features"]
    assert features.shape == (grid * grid, teacher.config.widths[-1]) and "features" not in data.val[0]
    image = load_split(data_config, "train", tmp_path / "cache").images[:1]
    with torch.no_grad():
        maps = teacher.features[:-1](normalize(image))  # conv5 after its ReLU, before the last pool
    expected = torch.nn.functional.adaptive_avg_pool2d(maps, grid).flatten(2).transpose(1, 2)[0]
    assert torch.allclose(features, expected, atol=1e-2, rtol=1e-2)  # stored as float16
    monkeypatch.setattr(recipe, "teacher_features", lambda *a, **k: pytest.fail("features were computed twice"))
    again = recipe.prepare_data(config, data_config, cache_dir=tmp_path / "cache", run_dir=tmp_path / "run")
    assert torch.equal(again.train[0]["features"], features)
    evaluated = recipe.prepare_data(config, data_config, cache_dir=tmp_path / "cache")  # no run: nothing to align
    assert "features" not in evaluated.train[0] and evaluated.config.align_dim == 0
    monkeypatch.undo()
    (tmp_path / "cache2").mkdir()
    with pytest.raises(ValueError, match="data.teacher must be a trained alexnet classifier"):
        recipe.prepare_data(config, dataclasses.replace(data_config, teacher=str(tmp_path / "judge")),
                            cache_dir=tmp_path / "cache2", run_dir=tmp_path / "run")
    shipped = recipe.prepare_data(config, dataclasses.replace(data_config, teacher="alexnet-mini"),
                                  cache_dir=tmp_path / "cache2", run_dir=tmp_path / "run")  # a name: its weights
    assert shipped.config.align_dim == 64 and shipped.train[0]["features"].shape == (grid * grid, 64)


def test_alignment_settings_are_checked():
    with pytest.raises(ValueError, match=r"align_depth=7; allowed: a block number in 1..6"):
        DiTConfig(align_dim=8, align_depth=7)
    with pytest.raises(ValueError, match=r"align_dim=-1; allowed: an integer >= 0"):
        DiTConfig(align_dim=-1)
    with pytest.raises(ValueError, match="no alignment projector"):
        tiny_dit()(torch.randn(1, 4, 4, 4), torch.zeros(1), *captions("a small red triangle"), align=True)
