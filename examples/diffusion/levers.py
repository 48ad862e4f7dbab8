"""The measurements behind the diffusion section's account of where the joint accuracy is lost (README "Diffusion").

    python examples/diffusion/levers.py sampler MODEL [--prompts 200] [--splits val] [--setting "shift=3" ...]
    python examples/diffusion/levers.py shapes MODEL [--prompts 400] [--out DIR]
    python examples/diffusion/levers.py renoise MODEL [--prompts 400] [--levels 0.1 0.3 0.5 0.7 0.9]
    python examples/diffusion/levers.py vaes MODEL VAE... [--prompts 200]

MODEL is a trained dit directory (`zoo train dit-shapes --out DIR`) or a shipped name such as dit-shapes; its judge
is the one it was trained beside (DIR/judge), its prompts those of `zoo eval`: the captions of the first --prompts
scenes of the test split (and, for sampler, of the held-out-pairs split), one image each, seeds as in
zoo.diffusion.evaluation, so the setting "" (the evaluation's sampler) reproduces `zoo eval`'s gen_joint and
gen_heldout_joint. sampler --splits val draws from the validation split's captions instead: the split to choose a
sampler on, so that the test figures stay unseen by the choice.

sampler: the same denoiser sampled once per --setting, each a space-separated list of key=value changes to the
evaluation's sampler (zoo.diffusion.evaluation: the model's default scheduler, its steps, guidance and guidance
interval):
  scheduler=NAME     one of zoo.diffusion.pipeline.SCHEDULERS that samples the model's objective (dpm++)
  steps=N            sampling steps
  guidance=G         classifier-free guidance scale (<= 1: none; the interval is then dropped)
  shift=S            the timestep shift of SD3's flow sampler (Esser et al., 2024, section 5.3.2: on the flow
                     path's s, s' = S s / (1 + (S - 1) s); S > 1 spends more steps at high noise); flow-euler only
  interval=LO-HI     guide only while the noise level sigma of Karras et al. is in (LO, HI], the plain
                     conditional prediction elsewhere (the pipeline's guidance_interval; Kynkaanniemi et al., 2024);
                     interval=all guides every step. Flow s = sigma / (1 + sigma): 0.25-4 is s in (0.2, 0.8]
  skip=K             skip-layer guidance (as Stable Diffusion 3.5 ships it; Hyung et al., 2024, "Spatiotemporal
                     Skip Guidance"): add skip_scale * (conditional - the conditional prediction with block K,
                     1-based, replaced by the identity) at every step
  weak=DIR           autoguidance (Karras et al., 2024, "Guiding a Diffusion Model with a Bad Version of Itself"):
                     add weak_scale * (conditional - DIR's conditional prediction) at every step, DIR a smaller or
                     shorter-trained dit on the same VAE
  skip_scale=S, weak_scale=W   their scales (default 1)
For each it prints the judge's shape, colour and joint accuracy on each split and the seconds it took.

renoise: where along the path the shape is lost. The real scenes of the first --prompts validation captions,
encoded by the VAE and noised to each flow level s of --levels (x = (1 - s) x0 + s eps), are denoised from there
by Euler steps on the evaluation's grid (25 steps over the whole path) with the evaluation's guidance, and the judge
reads the result: at a small s the input still shows the shape, so a shape lost there is lost by the denoiser.
--guidance 1 denoises without guidance.

vaes: the ceiling each VAE sets in its latent space: MODEL's judge reads each VAE's reconstructions (posterior
mean) of the first --prompts scenes of the test and held-out-pairs splits, as `zoo eval`'s vae_* figures do for
the test split; also their mean PSNR, as the VAE's own evaluation measures it. VAE is a trained vae directory or a
shipped name.

shapes: the default sampler on the test split; for each shape, how often the judge sees the shape the caption
asked for, and the commonest confusions; --out DIR also saves DIR/generated_shape_confusion.png (rows: the shape
asked for, columns: the shape the judge saw).
"""

import argparse
import contextlib
import re
import time
from collections import Counter
from pathlib import Path

import torch

from zoo.checkpoint import load_pretrained
from zoo.diffusion.data import SHAPES, load_split
from zoo.diffusion.evaluation import BATCH, GUIDANCE, GUIDANCE_INTERVAL, SEED, STEPS, reconstruct
from zoo.diffusion.judge import predict, score
from zoo.diffusion.pipeline import TextToImagePipeline, build_scheduler, check_scheduler, noise_level
from zoo.diffusion.vae import psnr, to_model_range
from zoo.evaluation import load_for_eval
from zoo.models import trained_dir
from zoo.plots import save_confusion_matrix
from zoo.registry import zoo_home

SETTING_KEYS = {"scheduler": str, "steps": int, "guidance": float, "shift": float, "interval": str, "skip": int,
                "skip_scale": float, "weak": str, "weak_scale": float}


def parse_setting(text: str) -> dict:
    """'shift=3 guidance=6' -> {"shift": 3.0, "guidance": 6.0}; a clear error for anything else."""
    setting = {}
    for item in text.split():
        key, sep, value = item.partition("=")
        if not sep or key not in SETTING_KEYS:
            raise SystemExit(f"--setting {text!r}: {item!r} is not KEY=VALUE with KEY one of {', '.join(SETTING_KEYS)}")
        try:
            setting[key] = SETTING_KEYS[key](value)
            if key == "interval":
                setting[key] = None if value == "all" else tuple(
                    map(float, re.fullmatch(r"([\d.]+)-([\d.]+|inf)", value).groups()))
        except (ValueError, AttributeError):
            raise SystemExit(f"--setting {text!r}: {item!r} has a bad value (interval: LO-HI, e.g. 0.25-4, or all)") \
                from None
    return setting


def make_scheduler(dit_config, name: str, shift: float | None):
    scheduler = build_scheduler(name, dit_config)
    if shift is None:
        return scheduler
    if name != "flow-euler":
        raise SystemExit(f"shift={shift}: only the flow-euler scheduler takes a shift here, not {name}")
    return type(scheduler).from_config(scheduler.config, shift=shift)


@contextlib.contextmanager
def skipped_block(dit, number: int):
    """Block `number` (1-based) of the denoiser's trunk is the identity inside the block."""
    blocks = dit.transformer.blocks
    if not 1 <= number <= len(blocks):
        raise SystemExit(f"skip={number}: the denoiser has blocks 1..{len(blocks)}")
    blocks[number - 1].forward = lambda x, *args, **kwargs: x
    try:
        yield
    finally:
        del blocks[number - 1].forward


@contextlib.contextmanager
def guided_away(pipeline: TextToImagePipeline, bad, scale: float):
    """Inside the block every prediction of the pipeline gets scale * (conditional - bad(x, timestep, conditional
    text)) added: guidance away from a worse prediction of the same caption (skip-layer guidance, autoguidance)."""
    plain = pipeline.predict

    def predict(x, timestep, text, guidance_scale):
        prediction = plain(x, timestep, text, guidance_scale)
        conditional = tuple(part[len(part) // 2:] for part in text) if guidance_scale > 1 else text
        good = plain(x, timestep, conditional, 1.0) if guidance_scale > 1 else prediction
        return prediction + scale * (good - bad(x, timestep, conditional))

    pipeline.predict = predict
    try:
        yield
    finally:
        del pipeline.predict


def extra_guidance(pipeline: TextToImagePipeline, setting: dict, prompts: list[str]):
    """The setting's skip-layer guidance or autoguidance for this batch of prompts (a null context without)."""
    if "skip" in setting:
        def without_block(x, timestep, conditional):
            with skipped_block(pipeline.dit, setting["skip"]):
                return TextToImagePipeline.predict(pipeline, x, timestep, conditional, 1.0)
        return guided_away(pipeline, without_block, setting.get("skip_scale", 1.0))
    if "weak" in setting:
        weak = setting["weak"]
        tokens, mask = weak.tokenizer.encode_batch(prompts)
        weak_text = weak.encode_text(tokens, mask)

        def weak_prediction(x, timestep, conditional):
            return weak.denoise(x, timestep.expand(len(x)), *weak_text).float()
        return guided_away(pipeline, weak_prediction, setting.get("weak_scale", 1.0))
    return contextlib.nullcontext()


@torch.no_grad()
def draw(pipeline: TextToImagePipeline, prompts: list[str], setting: dict) -> torch.Tensor:
    """Images (N, 3, H, W) in [-1, 1], one per prompt: zoo.diffusion.evaluation.generate's batches and seeds, through
    the pipeline's own steps (encode, noise, sample, decode) so the scheduler can be any diffusers config."""
    name = check_scheduler(setting.get("scheduler", pipeline.scheduler), pipeline.dit.config.objective)
    steps, guidance = setting.get("steps", STEPS), setting.get("guidance", GUIDANCE)
    interval = setting.get("interval", GUIDANCE_INTERVAL)  # the pipeline drops it when guidance <= 1
    c, factor, images = pipeline.dit.config, pipeline.vae.factor, []
    for start in range(0, len(prompts), BATCH):
        batch = prompts[start:start + BATCH]
        scheduler = make_scheduler(c, name, setting.get("shift"))
        scheduler.set_timesteps(steps, device=pipeline.device)
        generator = torch.Generator().manual_seed(SEED + start)
        text = pipeline.encode_prompts(batch, [""] * len(batch) if guidance > 1 else None, 1)
        side = pipeline.default_size() // factor
        latents = pipeline.prepare_latents((len(batch), c.latent_channels, side, side), generator, None, scheduler)
        with extra_guidance(pipeline, setting, batch):
            latents = pipeline.sample(latents, text, scheduler, guidance, generator, progress=False,
                                      guidance_interval=interval)
        out = torch.from_numpy(pipeline.decode(latents, "np")).permute(0, 3, 1, 2).float()
        images.append(out * 2 - 1)
    return torch.cat(images)


def load(model: str):
    """The DiT (eval mode), its VAE and judge, and its data settings (which name the test splits)."""
    # n_train=1: the prompts come from the test splits, so the training scenes need not be rendered and encoded
    dit, _, _, data_config = load_for_eval(trained_dir(model), data_overrides={"n_train": 1})
    if dit.judge_dir is None:
        raise SystemExit(f"{model} has no judge/ beside it: train it with `zoo train dit-shapes --out DIR`")
    return dit.eval(), load_pretrained(dit.vae_dir).eval(), load_pretrained(dit.judge_dir).eval(), data_config


def load_weak(model: str, dit):
    """The guiding model of autoguidance: a dit in the same latent space (eval mode)."""
    weak = load_pretrained(trained_dir(model)).eval()
    same_space = getattr(weak.config, "latent_channels", None) == dit.config.latent_channels
    if not same_space or getattr(weak, "tokenizer", None) is None:
        raise SystemExit(f"weak={model}: not a trained dit with a tokenizer in this model's latent space")
    return weak


def split_prompts(data_config, split: str, n: int) -> tuple[list[str], list]:
    scenes = load_split(data_config, split, zoo_home() / "cache")
    n = min(n, len(scenes))
    return scenes.captions[:n], [scenes.attributes(i) for i in range(n)]


def sampler(args):
    dit, vae, judge, data_config = load(args.model)
    splits = {split: split_prompts(data_config, split, args.prompts) for split in args.splits}
    pipeline = TextToImagePipeline(dit, vae)
    for text in args.setting:
        setting = parse_setting(text)
        if "weak" in setting:
            setting["weak"] = load_weak(setting["weak"], dit)
        began, figures = time.perf_counter(), []
        for split, (prompts, attributes) in splits.items():
            right = score(judge, draw(pipeline, prompts, setting), attributes)
            figures.append(f"{split} ({len(prompts)}): shape {right['shape'].float().mean():.3f} colour "
                           f"{right['colour'].float().mean():.3f} joint {right['joint'].float().mean():.3f}")
        print(f"setting {text!r}: {'; '.join(figures)} ({time.perf_counter() - began:.0f} s)", flush=True)


@torch.no_grad()
def renoised(pipeline: TextToImagePipeline, latents: torch.Tensor, prompts: list[str], level: float,
             guidance: float, generator: torch.Generator) -> torch.Tensor:
    """Clean scaled latents noised to flow level `level` and denoised by Euler steps from there to 0, as many as the
    evaluation's STEPS-step grid spends on that stretch, guided as the evaluation guides; decoded to [-1, 1]."""
    dit, T = pipeline.dit, pipeline.dit.config.num_train_timesteps
    conditional = pipeline.encode_prompts(prompts, None, 1)
    text = pipeline.encode_prompts(prompts, [""] * len(prompts), 1) if guidance > 1 else conditional
    x = (1 - level) * latents + level * torch.randn(latents.shape, generator=generator)
    levels = torch.linspace(level, 0, max(1, round(STEPS * level)) + 1)
    for s, next_s in zip(levels[:-1], levels[1:]):
        timestep = s * T
        lo, hi = GUIDANCE_INTERVAL
        guided = guidance > 1 and lo < noise_level(dit.config, float(timestep)) <= hi
        velocity = pipeline.predict(x, timestep, text, guidance) if guided else pipeline.predict(x, timestep,
                                                                                                 conditional, 1.0)
        x = x + (next_s - s) * velocity
    return torch.from_numpy(pipeline.decode(x, "np")).permute(0, 3, 1, 2).float() * 2 - 1


def renoise(args):
    dit, vae, judge, data_config = load(args.model)
    pipeline = TextToImagePipeline(dit, vae)
    scenes = load_split(data_config, "val", zoo_home() / "cache")
    n = min(args.prompts, len(scenes))
    real, prompts = to_model_range(scenes.images[:n]), scenes.captions[:n]
    attributes = [scenes.attributes(i) for i in range(n)]
    with torch.no_grad():
        latents = torch.cat([vae.latents(real[i:i + BATCH], sample=False) for i in range(0, n, BATCH)])
    right = score(judge, real, attributes)
    print(f"val, {n} real scenes: shape {right['shape'].float().mean():.3f} joint {right['joint'].float().mean():.3f}")
    for level in args.levels:
        generator, began = torch.Generator().manual_seed(SEED), time.perf_counter()
        images = torch.cat([renoised(pipeline, latents[i:i + BATCH], prompts[i:i + BATCH], level, args.guidance,
                                     generator) for i in range(0, n, BATCH)])
        right = score(judge, images, attributes)
        print(f"from s={level:g} (sigma {level / (1 - level):.2f}): shape {right['shape'].float().mean():.3f} "
              f"colour {right['colour'].float().mean():.3f} joint {right['joint'].float().mean():.3f} "
              f"({time.perf_counter() - began:.0f} s)", flush=True)


def shapes(args):
    dit, vae, judge, data_config = load(args.model)
    prompts, attributes = split_prompts(data_config, "test", args.prompts)
    seen = predict(judge, draw(TextToImagePipeline(dit, vae), prompts, {}))["shape"].tolist()
    asked = [SHAPES.index(a.shape) for a in attributes]
    confusion = torch.zeros(len(SHAPES), len(SHAPES), dtype=torch.long)
    for a, s in zip(asked, seen):
        confusion[a, s] += 1
    print(f"test split, {len(prompts)} prompts: the shape the judge sees, by the shape asked for")
    for i in sorted(range(len(SHAPES)), key=lambda i: confusion[i, i] / max(1, confusion[i].sum())):
        if confusion[i].sum():
            print(f"{SHAPES[i]:>9}: {confusion[i, i]}/{confusion[i].sum()}")
    mistakes = Counter({(SHAPES[i], SHAPES[j]): int(confusion[i, j]) for i in range(len(SHAPES))
                        for j in range(len(SHAPES)) if i != j and confusion[i, j]})
    print("commonest confusions (asked -> seen):",
          ", ".join(f"{a} -> {s} {n}" for (a, s), n in mistakes.most_common(args.confusions)) or "none")
    if args.out is not None:
        save_confusion_matrix(confusion, list(SHAPES), args.out / "generated_shape_confusion.png")
        print(f"saved {args.out / 'generated_shape_confusion.png'}")


def vaes(args):
    _, _, judge, data_config = load(args.model)
    models = {directory: load_pretrained(trained_dir(directory)).eval() for directory in args.vaes}
    for split in ("test", "test_heldout"):
        scenes = load_split(data_config, split, zoo_home() / "cache")
        n = min(args.prompts, len(scenes))
        real, attributes = to_model_range(scenes.images[:n]), [scenes.attributes(i) for i in range(n)]
        for directory, vae in models.items():
            rebuilt = reconstruct(vae, real)
            right = score(judge, rebuilt, attributes)
            print(f"{directory} on {split} ({n}): shape {right['shape'].float().mean():.3f} colour "
                  f"{right['colour'].float().mean():.3f} joint {right['joint'].float().mean():.3f} PSNR "
                  f"{psnr(rebuilt, real).mean():.2f} dB", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("sampler")
    p.add_argument("model", help="a trained dit run directory, or a shipped name such as dit-shapes")
    p.add_argument("--prompts", type=int, default=200, help="prompts of each split")
    p.add_argument("--splits", nargs="+", choices=("val", "test", "test_heldout"), default=["test", "test_heldout"],
                   help="whose captions to draw (val: to choose a sampler on)")
    p.add_argument("--setting", nargs="+", metavar="'KEY=VALUE ...'",
                   default=["", "shift=3", "shift=0.5", "scheduler=dpm++", "steps=100", "guidance=1",
                            "interval=all", "guidance=6 interval=0.25-4"])
    p = sub.add_parser("renoise")
    p.add_argument("model", help="a trained dit run directory, or a shipped name such as dit-shapes")
    p.add_argument("--prompts", type=int, default=400, help="validation scenes")
    p.add_argument("--levels", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.5, 0.7, 0.9],
                   help="flow noise levels s in (0, 1) to start from")
    p.add_argument("--guidance", type=float, default=GUIDANCE, help="<= 1: none (the interval is the evaluation's)")
    p = sub.add_parser("shapes")
    p.add_argument("model", help="a trained dit run directory, or a shipped name such as dit-shapes")
    p.add_argument("--prompts", type=int, default=400)
    p.add_argument("--confusions", type=int, default=6, help="how many of the commonest confusions to print")
    p.add_argument("--out", type=Path, help="where to save generated_shape_confusion.png")
    p = sub.add_parser("vaes")
    p.add_argument("model", help="the dit whose judge and test splits to use, e.g. dit-shapes")
    p.add_argument("vaes", nargs="+", metavar="VAE", help="trained vae directories or shipped names")
    p.add_argument("--prompts", type=int, default=200, help="scenes of each split")
    args = parser.parse_args()
    if args.what == "renoise" and not all(0 < level < 1 for level in args.levels):
        parser.error(f"--levels {args.levels}: each must be in (0, 1)")
    {"sampler": sampler, "renoise": renoise, "shapes": shapes, "vaes": vaes}[args.what](args)
