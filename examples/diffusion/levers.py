"""Two measurements behind the diffusion section's account of where the joint accuracy is lost (README "Diffusion").

    python examples/diffusion/levers.py sampler MODEL [--prompts 200] [--splits val] [--setting "shift=3" ...]
    python examples/diffusion/levers.py shapes MODEL [--prompts 400] [--out DIR]

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
For each it prints the judge's shape, colour and joint accuracy on each split and the seconds it took.

shapes: the default sampler on the test split; for each shape, how often the judge sees the shape the caption
asked for, and the commonest confusions; --out DIR also saves DIR/generated_shape_confusion.png (rows: the shape
asked for, columns: the shape the judge saw).
"""

import argparse
import re
import time
from collections import Counter
from pathlib import Path

import torch

from zoo.checkpoint import load_pretrained
from zoo.diffusion.data import SHAPES, load_split
from zoo.diffusion.evaluation import BATCH, GUIDANCE, GUIDANCE_INTERVAL, SEED, STEPS
from zoo.diffusion.judge import predict, score
from zoo.diffusion.pipeline import TextToImagePipeline, build_scheduler, check_scheduler
from zoo.evaluation import load_for_eval
from zoo.models import trained_dir
from zoo.plots import save_confusion_matrix
from zoo.registry import zoo_home

SETTING_KEYS = {"scheduler": str, "steps": int, "guidance": float, "shift": float, "interval": str}


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
        began, figures = time.perf_counter(), []
        for split, (prompts, attributes) in splits.items():
            right = score(judge, draw(pipeline, prompts, setting), attributes)
            figures.append(f"{split} ({len(prompts)}): shape {right['shape'].float().mean():.3f} colour "
                           f"{right['colour'].float().mean():.3f} joint {right['joint'].float().mean():.3f}")
        print(f"setting {text!r}: {'; '.join(figures)} ({time.perf_counter() - began:.0f} s)", flush=True)


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
    p = sub.add_parser("shapes")
    p.add_argument("model", help="a trained dit run directory, or a shipped name such as dit-shapes")
    p.add_argument("--prompts", type=int, default=400)
    p.add_argument("--confusions", type=int, default=6, help="how many of the commonest confusions to print")
    p.add_argument("--out", type=Path, help="where to save generated_shape_confusion.png")
    args = parser.parse_args()
    {"sampler": sampler, "shapes": shapes}[args.what](args)
