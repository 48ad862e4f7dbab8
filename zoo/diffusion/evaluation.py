"""Grading a text-to-image model with the independent judge: what `zoo eval DIR` and the end of training report.

    metrics = evaluate_generation(dit, vae, judge, data_config, out_dir="runs/dit")

The prompts are the captions of the first `prompts_per_split` scenes of two splits the denoiser never trained on:
`test` (fresh scenes of the (shape, colour) pairs seen in training) and `test_heldout` (pairs never seen together,
each shape and each colour seen with others: compositional generalisation). One image per prompt, drawn with a
fixed seed, `steps` sampling steps, `guidance` and `guidance_interval` (the pipeline's defaults: 25 steps, guidance
8 for noise levels in (0.28, 2.9]); the judge reads each image and is scored against the caption's shape, colour,
size and position (joint: shape and colour both right). The same judge grades the VAE's
reconstructions of the real test images (the ceiling any denoiser in that latent space can reach) and the real
images themselves (the judge's own accuracy on this split).

Distribution distance: FID (Heusel et al., 2017) and KID (Binkowski et al., 2018) between the generated test-split
images and the real ones, in the judge's penultimate feature space rather than Inception's: the judge is the
network trained on this domain, and Inception-v3 weights cannot be downloaded here. Figures are comparable only
between runs graded by the same judge.
"""

from pathlib import Path

import torch

from zoo.diffusion.data import CaptionedImages, DiffusionDataConfig, load_split
from zoo.diffusion.pipeline import DEFAULT_GUIDANCE as GUIDANCE
from zoo.diffusion.pipeline import DEFAULT_GUIDANCE_INTERVAL as GUIDANCE_INTERVAL
from zoo.diffusion.pipeline import DEFAULT_STEPS as STEPS
from zoo.diffusion.pipeline import TextToImagePipeline
from zoo.diffusion.vae import to_model_range
from zoo.utils import eval_mode, model_device

PROMPTS_PER_SPLIT = 200
SEED = 0
BATCH = 100
GRID_PER_SPLIT = 8  # samples.png: this many prompts of each split, generated above real


def _images_of_split(split: CaptionedImages, n: int) -> tuple[torch.Tensor, list[str], list]:
    n = min(n, len(split))
    return to_model_range(split.images[:n]), split.captions[:n], [split.attributes(i) for i in range(n)]


@torch.no_grad()
def generate(pipeline, prompts: list[str], steps: int, guidance: float, seed: int,
             guidance_interval: tuple[float, float] | None = GUIDANCE_INTERVAL) -> torch.Tensor:
    """Images (N, 3, H, W) in [-1, 1], one per prompt, in batches of BATCH with seeds seed, seed + 1, ..."""
    images = []
    for start in range(0, len(prompts), BATCH):
        generator = torch.Generator().manual_seed(seed + start)
        out = pipeline(prompts[start:start + BATCH], num_inference_steps=steps, guidance_scale=guidance,
                       guidance_interval=guidance_interval, generator=generator, output_type="np",
                       progress=False).images
        images.append(torch.from_numpy(out).permute(0, 3, 1, 2).float() * 2 - 1)
    return torch.cat(images)


@torch.no_grad()
def reconstruct(vae, images: torch.Tensor) -> torch.Tensor:
    """The VAE's reconstructions (posterior mean) of images in [-1, 1], clamped there."""
    device, out = model_device(vae), []
    with eval_mode(vae):
        for start in range(0, len(images), BATCH):
            batch = images[start:start + BATCH].to(device)
            out.append(vae.decode(vae.latents(batch, sample=False)).clamp(-1, 1).cpu())
    return torch.cat(out)


def accuracies(judge, images: torch.Tensor, attributes: list, prefix: str) -> dict[str, float]:
    from zoo.diffusion.judge import score

    correct = score(judge, images, attributes)
    return {f"{prefix}_{name}": float(ok.float().mean()) for name, ok in correct.items()}


def evaluate_generation(dit, vae, judge, data_config: DiffusionDataConfig, out_dir=None,
                        prompts_per_split: int = PROMPTS_PER_SPLIT, steps: int = STEPS, guidance: float = GUIDANCE,
                        seed: int = SEED, guidance_interval: tuple[float, float] | None = GUIDANCE_INTERVAL
                        ) -> dict[str, float]:
    """The judge's verdicts on generated images, VAE reconstructions and real images (module docstring); with
    out_dir also samples.png (prompts of both splits: generated row above the real scene's row)."""
    from zoo.diffusion.judge import features, frechet_distance, kernel_distance
    from zoo.registry import zoo_home

    pipeline = TextToImagePipeline(dit, vae)
    cache_dir = zoo_home() / "cache"  # where the trainer rendered the splits
    metrics, grid = {}, []
    for split, prefix in (("test", "gen"), ("test_heldout", "gen_heldout")):
        real, prompts, attributes = _images_of_split(load_split(data_config, split, cache_dir), prompts_per_split)
        generated = generate(pipeline, prompts, steps, guidance, seed, guidance_interval)
        metrics.update(accuracies(judge, generated, attributes, prefix))
        if split == "test":
            metrics.update(accuracies(judge, reconstruct(vae, real), attributes, "vae"))
            metrics.update(accuracies(judge, real, attributes, "real"))
            real_features, generated_features = features(judge, real), features(judge, generated)
            metrics["fid"] = frechet_distance(generated_features, real_features)
            metrics["kid"] = kernel_distance(generated_features, real_features)
        grid.append((generated[:GRID_PER_SPLIT], real[:GRID_PER_SPLIT], prompts[:GRID_PER_SPLIT]))
    if out_dir is not None:
        save_samples(grid, Path(out_dir) / "samples.png")
    return metrics


def save_samples(rows: list[tuple[torch.Tensor, torch.Tensor, list[str]]], path: Path) -> None:
    """A figure per split: each prompt's generated image above the real scene of that caption, captions wrapped."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(prompts) for _, _, prompts in rows)
    fig, axes = plt.subplots(2 * len(rows), n, figsize=(1.9 * n, 4.4 * len(rows)), squeeze=False)
    for r, (generated, real, prompts) in enumerate(rows):
        for j in range(n):
            for k, images in enumerate((generated, real)):
                ax = axes[2 * r + k, j]
                ax.axis("off")
                if j < len(prompts):
                    ax.imshow(((images[j].permute(1, 2, 0) + 1) / 2).clamp(0, 1).numpy(), interpolation="nearest")
                    if k == 0:
                        ax.set_title(textwrap.fill(prompts[j], 22), fontsize=6)
        axes[2 * r, 0].text(-0.1, 0.5, "generated" if r == 0 else "generated\n(held-out pairs)", fontsize=7,
                            ha="right", va="center", transform=axes[2 * r, 0].transAxes)
        axes[2 * r + 1, 0].text(-0.1, 0.5, "real", fontsize=7, ha="right", va="center",
                                transform=axes[2 * r + 1, 0].transAxes)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
