"""Train the text-to-image recipe (VAE, judge, then the DiT denoiser) and draw a grid of new prompts.

    python examples/diffusion/train.py runs/diffusion [--steps 4000]

The same as `zoo train dit-shapes --out DIR` followed by `zoo imagine`: the run directory gets DIR/vae (the
autoencoder, trained first), DIR/judge (the independent classifier that grades the images), log.jsonl, loss.png,
checkpoints/, samples.png (generated above real scenes, for seen and held-out compositions), metrics.json and the
final model (zoo.diffusion.pipeline.TextToImagePipeline.from_pretrained(DIR)). Then it draws prompts.png.
"""

import argparse
from pathlib import Path

import torch

from zoo.data.shapes import save_grid
from zoo.diffusion.pipeline import TextToImagePipeline
from zoo.train import train

PROMPTS = [
    "a large red circle in the centre on a white background",
    "a small blue star at the top left on a black background",
    "a medium green heart on the right on a noisy grey background",
    "a large yellow triangle at the bottom on a dark blue background",
    "a medium purple crescent at the top right on a light grey background",
    "a large orange square on the left on a dark green gradient background",
    "a small white cross at the bottom left on a red background",
    "a large black arrow in the centre on a light blue background",
]

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("out")
parser.add_argument("--steps", type=int)
args = parser.parse_args()

if __name__ == "__main__":
    metrics = train("dit-shapes", out=args.out, steps=args.steps)
    for key in ("gen_joint", "gen_heldout_joint", "vae_joint", "real_joint", "fid", "kid"):
        print(f"{key:>20}: {metrics.get(key, float('nan')):.3f}")
    pipeline = TextToImagePipeline.from_pretrained(args.out)
    images = pipeline(PROMPTS, num_images_per_prompt=4, generator=torch.Generator().manual_seed(0),
                      output_type="np").images
    path = Path(args.out) / "prompts.png"
    save_grid(torch.from_numpy(images).permute(0, 3, 1, 2), path, nrow=4, n=len(images), scale=4)
    print(f"{len(PROMPTS)} prompts, 4 images each (one prompt per row): {path}")
