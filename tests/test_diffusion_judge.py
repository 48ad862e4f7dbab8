"""The judge family (zoo/diffusion/judge.py): heads split from one AlexNet trunk, the loss (sum of the heads'
cross-entropies), the blur and noise augmentation (training only; the blur is torchvision's, one sigma per image),
learning on a tiny problem, predict / features / score, FID and KID against closed forms and a brute-force
estimator, config validation (the nested AlexNet config included), data and evaluation. Tiny models on 16 px
scenes: each test takes seconds at most."""

import math

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import zoo
from zoo.config import config_from_dict, config_to_dict, parse_sets, replace_config
from zoo.data.shapes import SHAPES
from zoo.diffusion.data import (
    COLOUR_NAMES,
    LABELS,
    POSITIONS,
    SIZE_WORDS,
    Attributes,
    DiffusionDataConfig,
    DiffusionScenes,
)
from zoo.diffusion.judge import (
    ATTRIBUTES,
    CLASS_NAMES,
    NUM_LOGITS,
    Judge,
    JudgeConfig,
    augment,
    evaluate,
    features,
    frechet_distance,
    gaussian_blur,
    judge_backbone,
    kernel_distance,
    loss,
    predict,
    prepare_data,
    score,
)
from zoo.diffusion.vae import to_model_range
from zoo.registry import get_family, get_model_entry
from zoo.vision.alexnet import alexnet_mini

TINY_BACKBONE = {"widths": (8, 8, 8, 8, 8), "fc_dims": (32, 32)}
DATA = DiffusionDataConfig(image_size=16, n_train=16, n_val=8, n_test=0, n_test_heldout=0)


def tiny_config(**overrides) -> JudgeConfig:
    backbone = judge_backbone(**{**TINY_BACKBONE, **overrides.pop("backbone", {})})
    return JudgeConfig(**{"image_size": 16, "backbone": backbone, **overrides})


def tiny_judge(seed: int = 0, **overrides) -> Judge:
    torch.manual_seed(seed)
    return Judge(tiny_config(**overrides))


def scenes(n: int = 8, size: int = 16, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor, list[Attributes]]:
    """n rendered training scenes: images float (n, 3, size, size) in [-1, 1], labels (n, 4), their Attributes."""
    data = DiffusionScenes(DiffusionDataConfig(image_size=size, n_train=n, seed=seed), "train")
    items = [data[i] for i in range(n)]
    columns = [LABELS.index(name) for name in ATTRIBUTES]
    images = to_model_range(torch.stack([image for image, _, _ in items]))
    return images, torch.stack([labels[columns] for _, labels, _ in items]), [data.attributes(i) for i in range(n)]


# ---------------------------------------------------------------------------------------- model


def test_heads_are_the_alexnet_trunks_logits_split_by_attribute():
    assert ATTRIBUTES == ("shape", "colour", "size", "cell") == LABELS[:4]
    assert [len(CLASS_NAMES[a]) for a in ATTRIBUTES] == [len(SHAPES), len(COLOUR_NAMES), len(SIZE_WORDS),
                                                         len(POSITIONS)] == [9, 8, 3, 9]
    assert NUM_LOGITS == 29
    judge = tiny_judge().eval()
    images, _, _ = scenes(5)
    with torch.no_grad():
        heads = judge(images)
        whole = judge.trunk(images)  # zoo.vision.alexnet.AlexNet's own forward, the same weights
    assert list(heads) == list(ATTRIBUTES)
    assert {a: tuple(v.shape) for a, v in heads.items()} == {"shape": (5, 9), "colour": (5, 8), "size": (5, 3),
                                                             "cell": (5, 9)}
    torch.testing.assert_close(torch.cat(list(heads.values()), dim=1), whole, rtol=0, atol=0)


def test_features_are_fc7_after_its_relu():
    judge = tiny_judge().eval()
    images, _, _ = scenes(6)
    captured = []
    judge.trunk.classifier.relu7.register_forward_hook(lambda module, inputs, output: captured.append(output.clone()))
    with torch.no_grad():
        judge.trunk(images)
    got = features(judge, images, batch_size=4)  # two batches
    assert got.shape == (6, 32) and got.dtype == torch.float32 and got.min() >= 0
    torch.testing.assert_close(got, captured[0])
    assert got.abs().sum() > 0


def test_the_default_trunk_is_alexnet_mini_without_lrn_and_dropout():
    config = JudgeConfig()
    mini = alexnet_mini()
    assert config.image_size == config.backbone.image_size == 32
    for name in ("widths", "kernels", "strides", "paddings", "pooled_size", "fc_dims"):
        assert getattr(config.backbone, name) == getattr(mini, name), name
    assert config.backbone.num_classes == NUM_LOGITS and not config.backbone.lrn and config.backbone.dropout == 0.0
    judge = Judge(config)
    assert not any(name.startswith("norm") for name, _ in judge.trunk.features.named_children())


# ---------------------------------------------------------------------------------------- loss


def test_loss_is_the_sum_of_the_heads_cross_entropies_with_accuracies():
    judge = tiny_judge().eval()
    images, labels, _ = scenes(8)
    with torch.no_grad():
        total, metrics = loss(judge, {"image": images, "labels": labels})
        heads = judge(images)
    expected = sum(F.cross_entropy(heads[a], labels[:, j]) for j, a in enumerate(ATTRIBUTES))
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert total.item() == pytest.approx(sum(math.log(len(CLASS_NAMES[a])) for a in ATTRIBUTES), rel=0.1)  # ~uniform
    assert set(metrics) == {"acc_shape", "acc_colour", "acc_size", "acc_cell"}
    for j, a in enumerate(ATTRIBUTES):
        assert metrics[f"acc_{a}"].item() == (heads[a].argmax(-1) == labels[:, j]).float().mean().item()


def test_augmentation_applies_in_training_mode_only():
    images, labels, _ = scenes(8)
    batch = {"image": images, "labels": labels}
    judge = tiny_judge()  # no dropout: training and eval mode differ only by the augmentation
    with torch.no_grad():
        judge.eval()
        clean = loss(judge, batch)[0]
        assert torch.equal(loss(judge, batch)[0], clean)
        judge.train()
        torch.manual_seed(0)
        noisy = loss(judge, batch)[0]
        assert noisy.item() != pytest.approx(clean.item(), abs=1e-6)
        torch.manual_seed(1)
        assert loss(judge, batch)[0].item() != pytest.approx(noisy.item(), abs=1e-6)  # fresh draws each call
    off = tiny_judge(blur_share=0.0, noise_share=0.0).train()
    off.load_state_dict(judge.state_dict())
    with torch.no_grad():
        assert torch.equal(loss(off, batch)[0], clean)  # nothing left to differ


def test_augment_blurs_and_noises_the_chosen_share_and_stays_in_range():
    images, _, _ = scenes(8)
    images = images.repeat(50, 1, 1, 1)  # 400 images
    config = tiny_config()

    def changed(out: torch.Tensor) -> torch.Tensor:
        return (out - images).flatten(1).abs().amax(dim=1) > 1e-6

    out = augment(images, config, torch.Generator().manual_seed(0))
    assert out.min() >= -1 and out.max() <= 1
    assert torch.equal(out, augment(images, config, torch.Generator().manual_seed(0)))  # seeded
    # shares 0.5 each, independent: 1 - 0.5 * 0.5 of the images change
    assert 0.65 < changed(out).float().mean().item() < 0.85
    # blur only, every image: all but those that drew a sigma too small to move a pixel (below ~0.17 px: the
    # neighbours' weight exp(-1 / (2 sigma^2)) is then under 1e-8), about 1 - 0.17 / 1.2 of them
    blurred = augment(images, tiny_config(blur_share=1.0, noise_share=0.0), torch.Generator().manual_seed(0))
    assert 0.78 < changed(blurred).float().mean().item() < 0.92
    assert torch.equal(augment(images, tiny_config(blur_share=0.0, noise_share=0.0)), images)
    # noise only: the per-image std of the added noise is uniform in [0, max_noise_std] (within clamping)
    only_noise = augment(images, tiny_config(blur_share=0.0, noise_share=1.0, max_noise_std=0.05),
                         torch.Generator().manual_seed(1))
    stds = (only_noise - images).flatten(1).std(dim=1)
    assert stds.max() < 0.055 and stds.mean().item() == pytest.approx(0.025, abs=0.005)


@pytest.mark.parametrize("sigma", [0.4, 0.8, 1.2])
def test_gaussian_blur_is_torchvisions_with_one_sigma_per_image(sigma):
    from torchvision.transforms.v2.functional import gaussian_blur as torchvision_blur

    images, _, _ = scenes(4)
    radius = math.ceil(3 * sigma)
    same = gaussian_blur(images, torch.full((4,), sigma), radius)
    torch.testing.assert_close(same, torchvision_blur(images, [2 * radius + 1] * 2, [sigma, sigma]),
                               rtol=1e-5, atol=1e-5)
    sigmas = torch.tensor([0.0, sigma, sigma / 2, 1.0])
    mixed = gaussian_blur(images, sigmas, radius=4)
    assert torch.equal(mixed[0], images[0])  # sigma 0: unchanged
    for i in (1, 2, 3):
        torch.testing.assert_close(mixed[i:i + 1], torchvision_blur(images[i:i + 1], [9, 9], [sigmas[i].item()] * 2),
                                   rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"one sigma per image: shape \(4,\)"):
        gaussian_blur(images, torch.ones(3))


def test_a_few_steps_on_a_tiny_problem_learn_the_colours():
    images, labels, _ = scenes(32, seed=5)
    judge = tiny_judge()
    batch = {"image": images, "labels": labels}
    with torch.no_grad():
        before = loss(judge.eval(), batch)
    optimizer = torch.optim.AdamW(judge.parameters(), lr=3e-3)
    judge.train()
    torch.manual_seed(0)
    for _ in range(60):
        total, _ = loss(judge, batch)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    with torch.no_grad():
        after = loss(judge.eval(), batch)
    # measured for model seeds 0, 1, 2: the loss falls to 0.11, 0.08, 0.07 of its start, colour 0.97, 0.97, 0.94
    assert after[0] < 0.3 * before[0], (before[0], after[0])
    assert before[1]["acc_colour"] < 0.5 and after[1]["acc_colour"] >= 0.85, (before[1], after[1])


# ---------------------------------------------------------------------------------------- predict and score


def test_predict_takes_float_or_uint8_in_batches_and_is_the_heads_argmax():
    judge = tiny_judge().train()  # predict switches to eval mode and back
    images, _, _ = scenes(7)
    as_uint8 = ((images + 1) * 127.5).round().to(torch.uint8)
    got = predict(judge, images, batch_size=3)
    assert judge.training
    assert list(got) == list(ATTRIBUTES)
    with torch.no_grad():
        heads = judge.eval()(images)
    for a in ATTRIBUTES:
        assert got[a].shape == (7,) and got[a].dtype == torch.int64
        assert torch.equal(got[a], heads[a].argmax(-1))
        assert torch.equal(predict(judge, as_uint8)[a], got[a])
    # float images beyond [-1, 1] are clamped, as a saved image would be
    assert torch.equal(features(judge, images * 3), features(judge, (images * 3).clamp(-1, 1)))


def test_score_compares_predictions_with_the_captions_attributes():
    judge = tiny_judge()
    images, _, attributes = scenes(6)
    predicted = predict(judge, images)
    # attributes that agree with the predictions everywhere, then with the shape wrong for image 0
    agreeing = [Attributes(SHAPES[predicted["shape"][i]], COLOUR_NAMES[predicted["colour"][i]],
                           SIZE_WORDS[predicted["size"][i]], POSITIONS[predicted["cell"][i]], a.background,
                           a.background_colours) for i, a in enumerate(attributes)]
    result = score(judge, images, agreeing)
    assert list(result) == [*ATTRIBUTES, "joint"]
    assert all(v.dtype == torch.bool and v.shape == (6,) and v.all() for v in result.values())
    other = SHAPES[(int(predicted["shape"][0]) + 1) % len(SHAPES)]
    agreeing[0] = Attributes(other, *[getattr(agreeing[0], f) for f in ("colour", "size", "position", "background",
                                                                        "background_colours")])
    result = score(judge, images, agreeing)
    assert result["shape"].tolist() == [False] + [True] * 5 and result["joint"].tolist() == [False] + [True] * 5
    assert result["colour"].all() and result["size"].all() and result["cell"].all()
    # joint is shape and colour both right
    truth = score(judge, images, attributes)
    assert torch.equal(truth["joint"], truth["shape"] & truth["colour"])
    with pytest.raises(ValueError, match="one Attributes per image: 6 images, 5 attributes"):
        score(judge, images, attributes[:5])


@pytest.mark.parametrize("shape", [(3, 16, 16), (2, 1, 16, 16), (2, 4, 16, 16), (2, 3, 8, 16)])
def test_bad_images_raise_naming_the_allowed_shape(shape):
    judge = tiny_judge()
    pattern = r"Judge expects images of shape \(B, 3, H, W\) with H and W >= 15"
    with pytest.raises(ValueError, match=pattern):
        judge(torch.zeros(shape))
    with pytest.raises(ValueError, match=pattern):
        predict(judge, torch.zeros(shape))
    with pytest.raises(ValueError, match=pattern):
        loss(judge, {"image": torch.zeros(shape), "labels": torch.zeros(2, 4, dtype=torch.long)})


def test_bad_dtypes_labels_and_empty_batches_raise():
    judge = tiny_judge()
    with pytest.raises(ValueError, match="uint8 or float tensor"):
        predict(judge, torch.zeros(2, 3, 16, 16, dtype=torch.int32))
    with pytest.raises(ValueError, match="at least one image"):
        features(judge, torch.zeros(0, 3, 16, 16))
    with pytest.raises(ValueError, match=r"Judge expects labels of shape \(B, 4\) \(shape, colour, size, cell\)"):
        loss(judge, {"image": torch.zeros(2, 3, 16, 16), "labels": torch.zeros(2, 7, dtype=torch.long)})


# ---------------------------------------------------------------------------------------- FID and KID


def with_moments(n: int, mean: torch.Tensor, cov: torch.Tensor, seed: int) -> torch.Tensor:
    """n samples (float64) whose empirical mean and unbiased covariance are exactly `mean` and `cov`."""
    x = torch.randn(n, len(mean), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x = x - x.mean(0)
    x = x @ torch.linalg.inv(torch.linalg.cholesky(torch.cov(x.T).reshape(len(mean), -1))).T  # covariance I
    return x @ torch.linalg.cholesky(cov.double()).T + mean.double()


def test_frechet_distance_matches_the_closed_form_of_two_gaussians():
    # 1-D: (m_a - m_b)^2 + (s_a - s_b)^2
    a = with_moments(300, torch.tensor([1.0]), torch.tensor([[4.0]]), 0)
    b = with_moments(200, torch.tensor([-2.0]), torch.tensor([[0.25]]), 1)
    assert frechet_distance(a, b) == pytest.approx(3.0 ** 2 + (2.0 - 0.5) ** 2, rel=1e-9)
    # 2-D, covariances that do not commute: for 2x2 PSD M, tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)), with
    # M = S_a^1/2 S_b S_a^1/2: tr M = tr(S_a S_b), det M = det S_a det S_b
    cov_a = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    cov_b = torch.tensor([[1.0, -0.3], [-0.3, 0.5]], dtype=torch.float64)
    mean_a, mean_b = torch.tensor([0.0, 0.0], dtype=torch.float64), torch.tensor([1.0, 2.0], dtype=torch.float64)
    cross = math.sqrt((cov_a @ cov_b).trace() + 2 * math.sqrt(cov_a.det() * cov_b.det()))
    expected = (mean_a - mean_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross
    a, b = with_moments(500, mean_a, cov_a, 2), with_moments(400, mean_b, cov_b, 3)
    assert frechet_distance(a, b) == pytest.approx(float(expected), rel=1e-9)
    assert frechet_distance(b, a) == pytest.approx(float(expected), rel=1e-9)  # symmetric
    assert frechet_distance(a.float(), b.float()) == pytest.approx(float(expected), rel=1e-4)  # float32 input


def test_frechet_distance_of_a_set_with_itself_is_zero():
    feats = torch.randn(400, 16, generator=torch.Generator().manual_seed(0)).relu()  # rank-deficient like fc7
    assert abs(frechet_distance(feats, feats)) < 1e-6
    assert frechet_distance(feats, feats + 0.5) == pytest.approx(16 * 0.25, rel=1e-6)  # a shift: its squared norm


def brute_force_mmd(x: torch.Tensor, y: torch.Tensor) -> float:
    """Binkowski et al.'s unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, written out term by term."""
    m, d = x.shape

    def k(a, b):
        return (float(a @ b) / d + 1) ** 3

    same = sum(k(x[i], x[j]) + k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    return same - 2 * sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)


def test_kernel_distance_is_the_unbiased_polynomial_mmd():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(12, 3, generator=g, dtype=torch.float64), torch.randn(12, 3, generator=g, dtype=torch.float64)
    y = y + 0.7
    # one subset of every vector: the estimate of the whole sets (the order of a subset does not matter)
    assert kernel_distance(x, y, subsets=1, subset_size=12) == pytest.approx(brute_force_mmd(x, y), rel=1e-9)
    # subsets of 6: the mean over the subsets, seeded
    got = kernel_distance(x, y, subsets=5, subset_size=6, seed=3)
    assert got == kernel_distance(x, y, subsets=5, subset_size=6, seed=3)
    assert got != kernel_distance(x, y, subsets=5, subset_size=6, seed=4)
    generator, draws = torch.Generator().manual_seed(3), []
    for _ in range(5):
        a = x[torch.randperm(12, generator=generator)[:6]]
        draws.append(brute_force_mmd(a, y[torch.randperm(12, generator=generator)[:6]]))
    assert got == pytest.approx(sum(draws) / 5, rel=1e-9)


def test_kernel_distance_is_about_zero_for_one_distribution_and_grows_with_a_shift():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(600, 8, generator=g), torch.randn(600, 8, generator=g)
    same = kernel_distance(a, b, subsets=20, subset_size=300)
    small = kernel_distance(a, b + 0.25, subsets=20, subset_size=300)
    large = kernel_distance(a, b + 1.0, subsets=20, subset_size=300)
    assert abs(same) < 0.01 and small > 0.05 and large > 5 * small, (same, small, large)


def test_distances_reject_mismatched_or_too_small_sets():
    a = torch.randn(10, 4)
    for distance in (frechet_distance, kernel_distance):
        with pytest.raises(ValueError, match=r"\(N, F\) and \(M, F\) with the same F"):
            distance(a, torch.randn(10, 5))
        with pytest.raises(ValueError, match="at least 2 vectors in each set"):
            distance(a, a[:1])
    with pytest.raises(ValueError, match="subset_size >= 2"):
        kernel_distance(a, a, subset_size=1)


# ---------------------------------------------------------------------------------------- config


def test_nested_config_round_trips_and_takes_dotted_overrides():
    config = tiny_config()
    assert config_from_dict(JudgeConfig, config_to_dict(config)) == config
    sets = parse_sets(["model.backbone.widths=16,16,24,16,16", "model.image_size=24", "model.blur_share=0.25"])
    changed = replace_config(config, sets["model"], "model")
    assert changed.backbone.widths == (16, 16, 24, 16, 16) and changed.blur_share == 0.25
    assert changed.image_size == changed.backbone.image_size == 24  # the trunk follows image_size
    assert changed.backbone.fc_dims == (32, 32)  # fields not named keep their values
    with pytest.raises(ValueError, match=r"unknown field 'model.backbone.width'"):
        replace_config(config, {"backbone.width": "8"}, "model")


@pytest.mark.parametrize("overrides, message", [
    ({"backbone": {"num_classes": 10}}, r"backbone\.num_classes=10; allowed: 29 \(the logits of every head: shape 9"),
    ({"backbone": {"in_channels": 1}}, r"backbone\.in_channels=1; allowed: 3"),
    ({"image_size": 8}, r"JudgeConfig\.image_size=8; allowed: an integer >= 15"),
    ({"blur_share": 1.5}, r"JudgeConfig\.blur_share=1\.5; allowed: a number in \[0, 1\]"),
    ({"noise_share": -0.1}, r"JudgeConfig\.noise_share=-0\.1; allowed: a number in \[0, 1\]"),
    ({"max_blur_sigma": -1.0}, r"JudgeConfig\.max_blur_sigma=-1\.0; allowed: a finite number >= 0"),
    ({"max_noise_std": math.inf}, r"JudgeConfig\.max_noise_std=inf; allowed: a finite number >= 0"),
    ({"max_blur_sigma": 5.5}, r"JudgeConfig\.max_blur_sigma=5\.5; allowed: a number <= 5 for 16 px images"),
])
def test_config_validation_names_the_field_and_what_is_allowed(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def test_judge_shapes_is_registered_at_32_px_on_its_own_scenes():
    entry = get_model_entry("judge-shapes")
    assert entry.family == "judge" and {"steps", "batch_size", "lr"} <= set(entry.train)
    assert entry.data["image_size"] == 32 and entry.data["heldout_share"] == 0.0 and entry.data["seed"] != 0
    config = entry.make_config()
    assert config.image_size == 32 and config.backbone.num_classes == NUM_LOGITS


# ---------------------------------------------------------------------------------------- data and evaluation


def test_prepare_data_gives_images_and_the_four_labels(tmp_path):
    data = prepare_data(tiny_config(image_size=32), DATA, cache_dir=tmp_path / "cache")
    assert data.config.image_size == data.config.backbone.image_size == 16
    assert len(data.train) == 16 and len(data.val) == 8
    item = data.train[3]
    assert set(item) == {"image", "labels"} and item["image"].shape == (3, 16, 16) and -1 <= item["image"].min() < 0
    scene = DiffusionScenes(DATA, "train")[3]
    assert torch.equal(item["image"], to_model_range(scene[0]))
    assert item["labels"].tolist() == scene[1][:4].tolist() and item["labels"].dtype == torch.int64
    with pytest.raises(ValueError, match="--data some/folder is not supported"):
        prepare_data(tiny_config(), DATA, path="some/folder")


def test_evaluate_reports_each_attribute_joint_and_val_loss_and_saves_confusion_matrices(tmp_path):
    data = prepare_data(tiny_config(), DATA, cache_dir=tmp_path / "cache")
    judge = tiny_judge(seed=2)
    metrics = evaluate(judge, data, DATA, out_dir=tmp_path / "run")
    assert set(metrics) == {"acc_shape", "acc_colour", "acc_size", "acc_cell", "joint", "val_loss"}
    images = torch.stack([data.val[i]["image"] for i in range(8)])
    labels = torch.stack([data.val[i]["labels"] for i in range(8)])
    attributes = data.val.labels  # (8, 4)
    assert torch.equal(labels, attributes)
    predicted = predict(judge, images)
    for j, a in enumerate(ATTRIBUTES):
        assert metrics[f"acc_{a}"] == (predicted[a] == labels[:, j]).float().mean().item()
    joint = ((predicted["shape"] == labels[:, 0]) & (predicted["colour"] == labels[:, 1])).float().mean().item()
    assert metrics["joint"] == joint
    with torch.no_grad():
        assert metrics["val_loss"] == pytest.approx(loss(judge.eval(), {"image": images, "labels": labels})[0].item(),
                                                    rel=1e-5)
    for name in ("shape", "colour"):
        with Image.open(tmp_path / "run" / f"confusion_{name}.png") as png:
            assert png.size[0] > 100
    assert evaluate(judge, data, DATA, quick=True) == metrics  # 8 images < QUICK_EVAL_IMAGES: the same ones


def test_training_through_the_trainer_logs_the_accuracies(tmp_path):
    import json

    from zoo.train import TrainConfig, Trainer

    config = TrainConfig(steps=2, batch_size=4, warmup=1, eval_every=0, log_every=1, tensorboard=False)
    trainer = Trainer(get_family("judge"), tiny_config(), DATA, config, tmp_path / "run", name="judge-tiny")
    metrics = trainer.fit()
    assert {"acc_shape", "acc_colour", "acc_size", "acc_cell", "joint", "val_loss"} <= set(metrics)
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all({"acc_shape", "acc_cell"} <= set(r) for r in records if "loss" in r)
    loaded = zoo.load(tmp_path / "run")
    assert isinstance(loaded, Judge) and loaded.config == trainer.raw_model.config
    assert (tmp_path / "run" / "confusion_shape.png").exists()
