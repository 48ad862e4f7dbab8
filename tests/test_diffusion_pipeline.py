"""Text-to-image sampling (zoo/diffusion/pipeline.py) and `zoo imagine` (zoo/diffusion/commands.py): seeds fix the
image, guidance batches conditional and unconditional in one forward and equals the two-pass formula, every
scheduler samples the process its model was trained on (checked against the exact denoiser of a Gaussian), bad
arguments raise ValueErrors that say what is allowed, and the command writes the pipeline's image.
Tiny DiT and VAE with random weights (perturbed away from DiT's zero init, so the text matters): seconds."""

import re

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo.cli import main
from zoo.diffusion.data import CaptionTokenizer
from zoo.diffusion.objectives import training_scheduler
from zoo.diffusion.pipeline import (
    DDPM_SCHEDULERS,
    FLOW_SCHEDULERS,
    SCHEDULERS,
    ImagePipelineOutput,
    TextToImagePipeline,
)
from zoo.errors import InputError
from zoo.registry import get_family

PROMPT = "a small red triangle at the top left on a blue background"
OTHER = "a large green ring in the centre on a noisy white background"
NEGATIVE = "a medium white heart"


def tiny_dit(objective: str = "flow", seed: int = 0):
    """The tiny DiT (latents 4x4x4, patch 2) with every parameter perturbed: the zero-initialised gates and output
    layer of a fresh DiT would make every prediction 0 and the text irrelevant."""
    weighting = "logit_normal" if objective == "flow" else "none"
    dit = zoo.load("dit-shapes", **{**get_family("dit").tiny, "objective": objective, "weighting": weighting})
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in dit.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=generator))
    dit.tokenizer = CaptionTokenizer.build()
    return dit


def tiny_vae():
    vae = zoo.load("vae-shapes", **get_family("vae").tiny)  # factor 2, 4 latent channels
    vae.set_scaling_factor(1.0)
    return vae


def make_pipeline(objective: str = "flow", **kwargs) -> TextToImagePipeline:
    torch.manual_seed(0)
    return TextToImagePipeline(tiny_dit(objective), tiny_vae(), **kwargs)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def pipe() -> TextToImagePipeline:
    return make_pipeline("flow")


def run(pipeline, prompt=PROMPT, **kwargs):
    kwargs = {"num_inference_steps": 2, "progress": False, "generator": seeded(0), **kwargs}
    return pipeline(prompt, **kwargs).images


# ---------------------------------------------------------------------------------------- seeds


@pytest.mark.parametrize("objective, scheduler", [("flow", "flow-euler"), ("epsilon", "ddpm"), ("epsilon", "dpm++")])
def test_same_seed_same_image_different_seed_different(objective, scheduler):
    pipeline = make_pipeline(objective)
    kwargs = dict(scheduler=scheduler, output_type="np", num_inference_steps=3, num_images_per_prompt=2)
    a = run(pipeline, generator=seeded(7), **kwargs)
    b = run(pipeline, generator=seeded(7), **kwargs)
    c = run(pipeline, generator=seeded(8), **kwargs)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3
    assert np.abs(a[0] - a[1]).max() > 1e-3  # the images of one prompt get different noise


def test_ddpm_step_noise_comes_from_the_generator():
    """DDPM draws fresh noise at every step: the same initial latents with different generators differ."""
    pipeline = make_pipeline("epsilon")
    latents = torch.randn(1, 4, 4, 4, generator=seeded(0))
    a = run(pipeline, latents=latents, scheduler="ddpm", generator=seeded(1), output_type="latent")
    b = run(pipeline, latents=latents, scheduler="ddpm", generator=seeded(2), output_type="latent")
    assert (a - b).abs().max() > 1e-3


def test_one_generator_per_image_fixes_each_image_whatever_the_batch(pipe):
    both = run(pipe, [PROMPT, OTHER], generator=[seeded(5), seeded(6)], output_type="latent")
    alone = run(pipe, PROMPT, generator=seeded(5), output_type="latent")
    other = run(pipe, OTHER, generator=seeded(6), output_type="latent")
    torch.testing.assert_close(both, torch.cat([alone, other]), atol=1e-5, rtol=1e-5)


def test_sampling_multiplies_by_packed_weights_with_the_same_images(pipe, monkeypatch):
    """prepack (the default on a CPU): every denoiser step runs with the linears on oneDNN-packed weights
    (zoo.nn.packed: an instance-level forward), restored after; the images equal the unpacked ones to rounding."""
    linears = [m for m in pipe.dit.modules() if isinstance(m, torch.nn.Linear)]
    packed_at_step = []
    denoise = pipe.dit.denoise
    monkeypatch.setattr(pipe.dit, "denoise", lambda *args: packed_at_step.append(
        all("forward" in m.__dict__ for m in linears)) or denoise(*args))
    packed = run(pipe, [PROMPT, OTHER], output_type="np", guidance_scale=3.0)
    assert packed_at_step == [True, True] and not any("forward" in m.__dict__ for m in linears)
    packed_at_step.clear()
    plain = run(pipe, [PROMPT, OTHER], output_type="np", guidance_scale=3.0, prepack=False)
    assert packed_at_step == [False, False]
    np.testing.assert_allclose(packed, plain, atol=1e-5)
    with pytest.raises(InputError, match="prepack must be True or False"):
        run(pipe, prepack="yes")


def test_noise_is_drawn_on_cpu_from_the_generator_and_scaled_by_init_noise_sigma():
    pipeline = make_pipeline("epsilon")
    noise = torch.randn(1, 4, 4, 4, generator=seeded(3))
    drawn = run(pipeline, generator=seeded(3), scheduler="euler", output_type="latent")
    given = run(pipeline, latents=noise, generator=seeded(99), scheduler="euler", output_type="latent")
    torch.testing.assert_close(drawn, given)


# ---------------------------------------------------------------------------------------- guidance


class Recorder:
    """Wraps dit.encode_text and dit.denoise, counting calls and recording batch sizes and modes."""

    def __init__(self, dit):
        self.encode_batches, self.denoise_batches, self.training = [], [], []
        encode, denoise = dit.encode_text, dit.denoise

        def encode_text(tokens, mask):
            self.encode_batches.append(len(tokens))
            return encode(tokens, mask)

        def denoise_(latents, timesteps, *text):
            self.denoise_batches.append(len(latents))
            self.training.append(dit.training)
            return denoise(latents, timesteps, *text)

        dit.encode_text, dit.denoise = encode_text, denoise_


@pytest.mark.parametrize("negative", [None, NEGATIVE])
def test_guidance_is_one_batched_forward_equal_to_the_two_pass_formula(pipe, negative):
    """One flow-Euler step from sigma 1 to 0 is x - v; v must be u + g (c - u) with c and u computed separately."""
    dit, g = pipe.dit, 3.0
    x = torch.randn(2, 4, 4, 4, generator=seeded(0))
    prompts = [PROMPT, OTHER]
    with torch.no_grad():
        t = torch.full((2,), 1000.0)
        cond = dit.denoise(x, t, *dit.encode_text(*pipe.tokenizer.encode_batch(prompts)))
        uncond = dit.denoise(x, t, *dit.encode_text(*pipe.tokenizer.encode_batch([negative or ""] * 2)))
    assert (cond - uncond).abs().max() > 1e-2  # the text matters, so the test can tell the branches apart
    recorder = Recorder(dit)
    out = run(pipe, prompts, negative_prompt=negative, latents=x, guidance_scale=g, num_inference_steps=1,
              scheduler="flow-euler", output_type="latent", guidance_interval=None)
    torch.testing.assert_close(out, x - (uncond + g * (cond - uncond)), atol=1e-5, rtol=1e-5)
    assert recorder.denoise_batches == [4]  # one forward, both branches
    assert recorder.encode_batches == [4]  # prompts and negatives encoded together, once


def test_text_encoded_once_and_one_forward_per_step():
    pipeline = make_pipeline("epsilon")
    recorder = Recorder(pipeline.dit)
    run(pipeline, [PROMPT, OTHER], num_inference_steps=5, guidance_scale=4.0, num_images_per_prompt=3,
        scheduler="dpm++", guidance_interval=None)
    assert recorder.encode_batches == [4]  # 2 prompts + 2 empty captions, before the loop
    assert recorder.denoise_batches == [12] * 5  # 2 prompts x 3 images x (cond, uncond), one call per step


@pytest.mark.parametrize("scale", [1.0, 0.5, 0])
def test_guidance_scale_at_most_one_is_one_conditional_pass(pipe, scale):
    recorder = Recorder(pipe.dit)
    out = run(pipe, num_inference_steps=4, guidance_scale=scale, output_type="latent")
    assert recorder.encode_batches == [1]  # no unconditional caption encoded
    assert recorder.denoise_batches == [1] * 4
    guided = run(pipe, num_inference_steps=4, guidance_scale=2.0, output_type="latent")
    reference = run(pipe, num_inference_steps=4, guidance_scale=1.0, output_type="latent")
    torch.testing.assert_close(out, reference)  # any scale <= 1 is the plain conditional model
    assert (guided - reference).abs().max() > 1e-3


def test_noise_level_is_the_karras_sigma_of_either_process():
    """The DDPM family's sigma is what diffusers' Euler scheduler (Karras et al.'s parametrisation) steps through,
    at its own fractional timesteps; the flow path's is s / (1 - s) at FlowMatchEuler's sigmas s."""
    from diffusers import EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler

    from zoo.diffusion.pipeline import noise_level

    dit = tiny_dit("epsilon")
    euler = EulerDiscreteScheduler.from_config(training_scheduler("epsilon").config, timestep_spacing="linspace")
    euler.set_timesteps(25)
    assert any(float(t) != int(t) for t in euler.timesteps)  # interpolated between the training steps
    ours = [noise_level(dit.config, float(t)) for t in euler.timesteps]
    np.testing.assert_allclose(ours, euler.sigmas[:-1].double().numpy(), rtol=1e-4)
    flow = FlowMatchEulerDiscreteScheduler.from_config(training_scheduler("flow").config)
    flow.set_timesteps(25)
    config = tiny_dit("flow").config
    s = flow.sigmas[:-1].double().numpy()
    np.testing.assert_allclose([noise_level(config, float(t)) for t in flow.timesteps], s / (1 - s), rtol=1e-5)


def flow_sigmas(steps: int) -> np.ndarray:
    from diffusers import FlowMatchEulerDiscreteScheduler

    flow = FlowMatchEulerDiscreteScheduler.from_config(training_scheduler("flow").config)
    flow.set_timesteps(steps)
    s = flow.sigmas[:-1].double().numpy()
    return s / (1 - s)


def test_guidance_interval_guides_exactly_the_steps_inside_it(pipe):
    """Inside (lo, hi] a step is one forward on the latents twice; outside it one on the conditional half."""
    steps, interval = 10, (0.25, 4.0)
    inside = [bool(interval[0] < sigma <= interval[1]) for sigma in flow_sigmas(steps)]
    assert 0 < sum(inside) < steps
    recorder = Recorder(pipe.dit)
    partial = run(pipe, [PROMPT, OTHER], guidance_scale=4.0, guidance_interval=interval, num_inference_steps=steps,
                  output_type="latent", generator=[seeded(0), seeded(1)])
    assert recorder.denoise_batches == [4 if guided else 2 for guided in inside]
    everywhere = run(pipe, [PROMPT, OTHER], guidance_scale=4.0, guidance_interval=(0, float("inf")),
                     num_inference_steps=steps, output_type="latent", generator=[seeded(0), seeded(1)])
    every_step = run(pipe, [PROMPT, OTHER], guidance_scale=4.0, guidance_interval=None, num_inference_steps=steps,
                     output_type="latent", generator=[seeded(0), seeded(1)])
    nowhere = run(pipe, [PROMPT, OTHER], guidance_scale=4.0, guidance_interval=(1e3, 1e4), num_inference_steps=steps,
                  output_type="latent", generator=[seeded(0), seeded(1)])
    plain = run(pipe, [PROMPT, OTHER], guidance_scale=1.0, num_inference_steps=steps, output_type="latent",
                generator=[seeded(0), seeded(1)])
    torch.testing.assert_close(everywhere, every_step)  # an interval holding every sigma is plain guidance
    torch.testing.assert_close(nowhere, plain, atol=1e-5, rtol=1e-5)  # one holding none is no guidance
    assert (partial - every_step).abs().max() > 1e-3 and (partial - plain).abs().max() > 1e-3
    assert run(pipe, [PROMPT, OTHER], guidance_scale=4.0, num_inference_steps=steps, output_type="latent",
               generator=[seeded(0), seeded(1)]).shape == partial.shape
    with_default = Recorder(pipe.dit)  # the default interval: the guided steps are those inside (0.28, 2.9]
    run(pipe, guidance_scale=4.0, num_inference_steps=steps, output_type="latent")
    assert with_default.denoise_batches == [2 if 0.28 < sigma <= 2.9 else 1 for sigma in flow_sigmas(steps)]


def test_guidance_interval_keeps_the_negative_prompt_out_of_unguided_steps(pipe):
    """The conditional half of the encoded text is the prompt's rows, not the negative prompt's."""
    kwargs = dict(guidance_scale=4.0, guidance_interval=(1e3, 1e4), output_type="latent", num_inference_steps=3,
                  num_images_per_prompt=2)
    negative = run(pipe, negative_prompt=NEGATIVE, **kwargs)
    plain = run(pipe, guidance_scale=1.0, output_type="latent", num_inference_steps=3, num_images_per_prompt=2)
    torch.testing.assert_close(negative, plain, atol=1e-5, rtol=1e-5)


def test_empty_prompt_is_unconditional_so_guidance_changes_nothing(pipe):
    """With prompt "" the conditional and unconditional inputs are the same null caption."""
    guided = run(pipe, "", guidance_scale=5.0, output_type="latent", num_inference_steps=3)
    plain = run(pipe, "", guidance_scale=1.0, output_type="latent", num_inference_steps=3)
    torch.testing.assert_close(guided, plain, atol=1e-5, rtol=1e-5)
    images = run(pipe, "", output_type="np")
    assert images.shape == (1, 8, 8, 3) and np.isfinite(images).all()


def test_negative_prompt_replaces_the_empty_caption(pipe):
    steps = 5  # flow sigmas 1, 0.75, 0.5, 0.25, 0.001: two of them inside the default guidance interval
    plain = run(pipe, guidance_scale=4.0, output_type="latent", num_inference_steps=steps)
    empty = run(pipe, guidance_scale=4.0, negative_prompt="", output_type="latent", num_inference_steps=steps)
    negative = run(pipe, guidance_scale=4.0, negative_prompt=NEGATIVE, output_type="latent", num_inference_steps=steps)
    per_prompt = run(pipe, [PROMPT, OTHER], guidance_scale=4.0, negative_prompt=[NEGATIVE, ""], output_type="latent",
                     generator=[seeded(0), seeded(1)], num_inference_steps=steps)
    torch.testing.assert_close(plain, empty)
    assert (negative - plain).abs().max() > 1e-3
    torch.testing.assert_close(per_prompt[:1], negative, atol=1e-5, rtol=1e-5)


def test_runs_in_eval_mode_and_restores_the_mode(pipe):
    pipe.dit.train()
    recorder = Recorder(pipe.dit)
    run(pipe)
    assert recorder.training and not any(recorder.training)
    assert pipe.dit.training  # as it was: evaluation during training must not switch training off


# ---------------------------------------------------------------------------------------- schedulers

M, TAU = 0.5, 0.3  # the "data": every latent element ~ N(M, TAU^2)


def exact_denoiser(objective: str, T: int = 1000):
    """The Bayes-optimal prediction for Gaussian data N(M, TAU^2), read off the timestep the DiT is given: the
    probability-flow ODE then maps noise z exactly to M + TAU * z, so a sampler that pairs the model with the
    wrong process (prediction type, timestep convention, sigmas) lands elsewhere."""
    if objective != "flow":
        abar = training_scheduler(objective, T, "scaled_linear").alphas_cumprod.double()
        vp_sigma = ((1 - abar) / abar).sqrt()

    def denoise(x, t, *text):
        x, t = x.double(), t.double().view(-1, 1, 1, 1)
        if objective == "flow":  # x = (1 - s) x0 + s eps, t = s * T
            s = t / T
            var = (1 - s) ** 2 * TAU ** 2 + s ** 2
            x0 = M + (1 - s) * TAU ** 2 * (x - (1 - s) * M) / var
            eps = s * (x - (1 - s) * M) / var
            return (eps - x0).float()
        lo = t.floor().long().clamp(0, T - 1)  # Euler's timesteps are fractional: sigma interpolated as diffusers
        hi, w = (lo + 1).clamp(max=T - 1), t - t.floor()
        a = 1 / (1 + ((1 - w) * vp_sigma[lo] + w * vp_sigma[hi]) ** 2)
        var = a * TAU ** 2 + 1 - a
        eps = (1 - a).sqrt() * (x - a.sqrt() * M) / var
        if objective == "epsilon":
            return eps.float()
        x0 = M + a.sqrt() * TAU ** 2 * (x - a.sqrt() * M) / var
        return (a.sqrt() * eps - (1 - a).sqrt() * x0).float()

    return denoise


PAIRS = [(o, s) for o in ("epsilon", "v_prediction") for s in DDPM_SCHEDULERS] + [("flow", s) for s in FLOW_SCHEDULERS]


@pytest.mark.parametrize("objective, scheduler", PAIRS)
def test_each_scheduler_samples_the_process_its_model_was_trained_on(objective, scheduler):
    pipeline = make_pipeline(objective)
    pipeline.dit.denoise = exact_denoiser(objective)
    steps = 100 if scheduler == "ddpm" else 25
    z = run(pipeline, "", scheduler=scheduler, num_inference_steps=steps, guidance_scale=1.0, height=32, width=32,
            num_images_per_prompt=16, output_type="latent")
    assert z.shape == (16, 4, 16, 16)
    if scheduler == "ddpm":  # stochastic: the distribution, not the map
        assert abs(z.mean().item() - M) < 0.02 and abs(z.std().item() - TAU) < 0.03
    else:  # deterministic ODE solvers: noise z -> M + TAU z; DPM-Solver++ is 2nd order, the others 1st
        noise = torch.randn(z.shape, generator=seeded(0))
        error = (z - (M + TAU * noise)).abs().mean().item()
        assert error < (0.01 if scheduler == "dpm++" else 0.03), error


@pytest.mark.parametrize("objective, scheduler", PAIRS)
def test_each_scheduler_runs_the_real_denoiser(objective, scheduler):
    images = run(make_pipeline(objective), [PROMPT, ""], scheduler=scheduler, num_inference_steps=3,
                 output_type="np")
    assert images.shape == (2, 8, 8, 3) and np.isfinite(images).all()
    assert images.min() >= 0 and images.max() <= 1


@pytest.mark.parametrize("objective, scheduler", [("flow", "ddim"), ("flow", "euler"), ("flow", "ddpm"),
                                                  ("epsilon", "flow-euler"), ("v_prediction", "flow-euler")])
def test_incompatible_scheduler_raises_naming_the_allowed_ones(objective, scheduler):
    pipeline = make_pipeline(objective)
    allowed = re.escape(", ".join(FLOW_SCHEDULERS if objective == "flow" else DDPM_SCHEDULERS))
    with pytest.raises(ValueError, match=rf"{scheduler}.*{objective}.*allowed for it: {allowed}"):
        run(pipeline, scheduler=scheduler)
    with pytest.raises(ValueError, match=allowed):
        TextToImagePipeline(pipeline.dit, pipeline.vae, scheduler=scheduler)


@pytest.mark.parametrize("objective, default", [("flow", "flow-euler"), ("epsilon", "dpm++"),
                                                ("v_prediction", "dpm++")])
def test_default_scheduler_per_objective(objective, default):
    assert make_pipeline(objective).scheduler == default


def test_flow_dpm_solver_feeds_the_exact_sigma_timesteps(pipe):
    """diffusers truncates DPM-Solver++'s flow timesteps to integers; the DiT is given sigma * T, as in training."""
    seen = []
    denoise = pipe.dit.denoise
    pipe.dit.denoise = lambda x, t, *text: seen.append(t[0].item()) or denoise(x, t, *text)
    run(pipe, scheduler="dpm++", num_inference_steps=4)
    assert seen == pytest.approx([999.0, 749.25, 499.5, 249.75], abs=1e-3)


# ---------------------------------------------------------------------------------------- outputs


def test_output_types_and_shapes(pipe):
    output = pipe(PROMPT, num_inference_steps=2, num_images_per_prompt=2, height=8, width=16, progress=False,
                  generator=seeded(0))
    assert isinstance(output, ImagePipelineOutput)
    assert len(output.images) == 2 and all(isinstance(im, Image.Image) for im in output.images)
    assert output.images[0].size == (16, 8) and output.images[0].mode == "RGB"
    array = run(pipe, num_images_per_prompt=2, height=8, width=16, output_type="np")
    assert array.shape == (2, 8, 16, 3) and array.dtype == np.float32 and 0 <= array.min() <= array.max() <= 1
    np.testing.assert_array_equal(np.asarray(output.images[1]), (array[1] * 255).round().astype(np.uint8))
    latents = run(pipe, num_images_per_prompt=2, height=8, width=16, output_type="latent")
    assert isinstance(latents, torch.Tensor) and latents.shape == (2, 4, 4, 8)
    decoded = pipe.vae.decode(latents).detach()
    np.testing.assert_allclose(array, ((decoded + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).numpy(), atol=1e-6)


def test_default_size_is_the_training_size(pipe):
    assert pipe.default_size() == pipe.dit.config.latent_size * pipe.vae.factor == 8
    assert run(pipe, output_type="np").shape == (1, 8, 8, 3)


def test_progress_bar(pipe, capsys):
    pipe(PROMPT, num_inference_steps=3, generator=seeded(0))
    assert "3/3" in capsys.readouterr().err
    pipe(PROMPT, num_inference_steps=3, generator=seeded(0), progress=False)
    assert "3/3" not in capsys.readouterr().err


def test_non_finite_results_raise_instead_of_a_black_image(pipe, monkeypatch):
    monkeypatch.setattr(pipe.vae, "decode", lambda z: torch.full((len(z), 3, 8, 8), float("nan")))
    with pytest.raises(ValueError, match="NaN/inf pixels"):
        run(pipe)
    pipe.dit.denoise = lambda x, t, *text: torch.full_like(x, float("inf"))
    with pytest.raises(ValueError, match="diverged"):
        run(pipe, output_type="latent")


# ---------------------------------------------------------------------------------------- bad input

NAN_LATENTS = torch.full((1, 4, 4, 4), float("nan"))
BAD = [
    (dict(prompt=[]), "empty list"),
    (dict(prompt=3), "must be a str or a list of str, got int"),
    (dict(prompt=[PROMPT, None]), "list holds NoneType"),
    (dict(prompt="a huge red triangle"), "does not know: huge; it knows the caption words: a an arrow"),
    (dict(prompt=f"{PROMPT} {PROMPT}"), "has 24 words; this model takes at most 17"),
    (dict(height=6), "height=6; allowed: a positive multiple of 4"),
    (dict(width=0), "width=0; allowed: a positive multiple of 4"),
    (dict(height=8.0), "height=8.0"),
    (dict(num_inference_steps=0), r"num_inference_steps=0; allowed: an integer in \[1, 1000\]"),
    (dict(num_inference_steps=2.5), "num_inference_steps=2.5"),
    (dict(num_inference_steps=True), "num_inference_steps=True"),
    (dict(num_inference_steps=1001), "num_inference_steps=1001"),
    (dict(scheduler="heun"), "unknown scheduler 'heun'; allowed: " + re.escape(", ".join(SCHEDULERS))),
    (dict(num_images_per_prompt=0), "num_images_per_prompt=0; allowed: an integer >= 1"),
    (dict(output_type="jpeg"), "output_type='jpeg'; allowed: pil, np, latent"),
    (dict(latents=NAN_LATENTS), "NaN/inf"),
    (dict(latents=torch.zeros(2, 4, 4, 4)), r"latents have shape \(2, 4, 4, 4\); allowed: \(1, 4, 4, 4\)"),
    (dict(latents=np.zeros((1, 4, 4, 4))), "latents must be a torch.Tensor"),
    (dict(prompt=[PROMPT, OTHER], negative_prompt=[NEGATIVE]), "negative_prompt has 1 entries for 2 prompt"),
    (dict(negative_prompt="a huge square"), "negative_prompt 'a huge square' has word"),
    (dict(negative_prompt=NEGATIVE, guidance_scale=1.0), "negative_prompt is used only by guidance"),
    (dict(guidance_scale=float("nan")), "guidance_scale=nan; allowed: a finite number"),
    (dict(guidance_scale="4"), "guidance_scale='4'"),
    (dict(guidance_interval=(4.0, 0.25)), r"guidance_interval=\(4.0, 0.25\); allowed: None .* 0 <= lo < hi"),
    (dict(guidance_interval=(-1, 2)), r"guidance_interval=\(-1, 2\)"),
    (dict(guidance_interval=0.5), "guidance_interval=0.5"),
    (dict(guidance_interval=(0.2, float("nan"))), "guidance_interval=.*nan"),
    (dict(guidance_interval=(0.8, 0.2), guidance_scale=1.0), r"guidance_interval=\(0.8, 0.2\)"),
    (dict(generator=[seeded(0), seeded(1)]), "list of 2 generators for 1 images"),
    (dict(generator=0), "generator must be a torch.Generator"),
]


@pytest.mark.parametrize("kwargs, message", BAD, ids=[f"{next(iter(k))}-{i}" for i, (k, _) in enumerate(BAD)])
def test_bad_input_raises_a_useful_value_error(pipe, kwargs, message):
    recorder = Recorder(pipe.dit)
    with pytest.raises(ValueError, match=message):
        pipe(**{"prompt": PROMPT, "num_inference_steps": 2, "progress": False, **kwargs})
    assert recorder.denoise_batches == []  # refused before any sampling


def test_pipeline_needs_a_tokenizer_and_a_matching_vae():
    dit = tiny_dit()
    del dit.tokenizer
    with pytest.raises(ValueError, match="no caption tokenizer"):
        TextToImagePipeline(dit, tiny_vae())
    vae = zoo.load("vae-shapes", **{**get_family("vae").tiny, "latent_channels": 3})
    with pytest.raises(ValueError, match="3 latent channels, the DiT 4"):
        TextToImagePipeline(dit, vae, tokenizer=CaptionTokenizer.build())
    unscaled = zoo.load("vae-shapes", **get_family("vae").tiny)
    with pytest.raises(ValueError, match="scaling_factor is not measured"):
        run(TextToImagePipeline(dit, unscaled, tokenizer=CaptionTokenizer.build()))


# ---------------------------------------------------------------------------------------- saved model, CLI


@pytest.fixture
def model_dir(tmp_path):
    """A saved tiny DiT directory: config, weights, tokenizer.json and the VAE copied into vae/."""
    torch.manual_seed(0)
    vae = tiny_vae()
    vae.save_pretrained(tmp_path / "vae-run")
    dit = tiny_dit("flow")
    dit.vae_dir = tmp_path / "vae-run"
    dit.save_pretrained(tmp_path / "dit")
    assert (tmp_path / "dit" / "vae" / "model.safetensors").is_file()
    assert (tmp_path / "dit" / "tokenizer.json").is_file()
    return tmp_path / "dit", dit, vae


def test_saved_dit_carries_the_judge_it_was_examined_by(tmp_path):
    """A run given data.judge=DIR exports a copy into RUN/judge, so `zoo eval RUN` and shipping judge it alone."""
    torch.manual_seed(0)
    judge = zoo.load("judge-shapes", **get_family("judge").tiny)
    judge.save_pretrained(tmp_path / "judge-run")
    vae = tiny_vae()
    vae.save_pretrained(tmp_path / "vae-run")
    dit = tiny_dit("flow")
    dit.vae_dir, dit.judge_dir = tmp_path / "vae-run", tmp_path / "judge-run"
    dit.save_pretrained(tmp_path / "dit")
    loaded = zoo.load(tmp_path / "dit")
    assert loaded.judge_dir == tmp_path / "dit" / "judge"
    copied = zoo.load(loaded.judge_dir).state_dict()
    assert all(torch.equal(copied[key], value) for key, value in judge.state_dict().items())


def test_from_pretrained_round_trip(model_dir):
    directory, dit, vae = model_dir
    loaded = TextToImagePipeline.from_pretrained(directory, device="cpu")
    assert loaded.scheduler == "flow-euler" and loaded.vae.config.scaling_factor == 1.0
    expected = run(TextToImagePipeline(dit, vae), output_type="np")
    np.testing.assert_array_equal(run(loaded, output_type="np"), expected)


def test_from_pretrained_errors(model_dir, tmp_path):
    directory, _, _ = model_dir
    with pytest.raises(ValueError, match="not a text-to-image DiT"):
        TextToImagePipeline.from_pretrained(tmp_path / "vae-run")
    import shutil

    shutil.rmtree(directory / "vae")
    with pytest.raises(FileNotFoundError, match="vae"):
        TextToImagePipeline.from_pretrained(directory)


def test_zoo_imagine_writes_the_pipeline_image(model_dir, tmp_path, capsys):
    directory, dit, vae = model_dir
    out = tmp_path / "out" / "image.png"
    assert main(["imagine", str(directory), PROMPT, "--steps", "3", "--seed", "4", "--guidance", "2.5",
                 "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    image = Image.open(out)
    assert image.size == (128, 128)  # 8 px enlarged 16x for viewing
    expected = TextToImagePipeline(dit, vae)(PROMPT, num_inference_steps=3, guidance_scale=2.5,
                                             generator=seeded(4), progress=False).images[0]
    np.testing.assert_array_equal(np.asarray(image)[::16, ::16], np.asarray(expected))
    assert main(["imagine", str(directory), PROMPT, "--steps", "3", "--seed", "4", "--guidance", "2.5",
                 "--guidance-interval", "0", "inf", "--out", str(out)]) == 0
    every_step = TextToImagePipeline(dit, vae)(PROMPT, num_inference_steps=3, guidance_scale=2.5,
                                               guidance_interval=None, generator=seeded(4), progress=False).images[0]
    assert not np.array_equal(np.asarray(every_step), np.asarray(expected))  # sigma = inf: guided only now
    np.testing.assert_array_equal(np.asarray(Image.open(out))[::16, ::16], np.asarray(every_step))


def test_zoo_imagine_grid_and_empty_prompt(model_dir, tmp_path):
    directory, _, _ = model_dir
    out = tmp_path / "grid.png"
    assert main(["imagine", str(directory), "", "--steps", "2", "--num-images", "3", "--scheduler", "dpm++",
                 "--height", "8", "--width", "16", "--negative-prompt", NEGATIVE, "--out", str(out)]) == 0
    # torchvision's grid: 2 per row (ceil(sqrt(3))), 2 px padding around 8x16 images enlarged 8x
    assert Image.open(out).size == (2 * (128 + 2) + 2, 2 * (64 + 2) + 2)


@pytest.mark.parametrize("args, message", [
    (["a huge red triangle"], "does not know: huge"),
    ([PROMPT, "--scheduler", "ddim"], "allowed for it: flow-euler, dpm++"),  # a substring, not a regex
    ([PROMPT, "--steps", "0"], "num_inference_steps=0"),
    ([PROMPT, "--num-images", "0"], "--num-images 0"),
    ([PROMPT, "--height", "10"], "height=10"),
    ([PROMPT, "--guidance-interval", "3", "1"], "guidance_interval=(3.0, 1.0); allowed: None"),
])
def test_zoo_imagine_errors_are_one_line_with_status_2(model_dir, tmp_path, capsys, args, message):
    directory, _, _ = model_dir
    out = tmp_path / "x.png"
    assert main(["imagine", str(directory), *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("zoo imagine: error:") and message in err and "\n" not in err
    assert not out.exists()


def test_zoo_imagine_refuses_an_unknown_image_format(model_dir, tmp_path, capsys):
    directory, _, _ = model_dir
    assert main(["imagine", str(directory), PROMPT, "--out", str(tmp_path / "image.txt")]) == 2
    assert "cannot tell an image format" in capsys.readouterr().err
