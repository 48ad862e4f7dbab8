"""Train the text-to-image recipe (VAE, judge, then the DiT denoiser) and draw a grid of new prompts.

    python examples/diffusion/train.py runs/diffusion [--steps 4000]
    python examples/diffusion/train.py /tmp/diffusion --quick    # tiny models on 16 px scenes, seconds

The same as `zoo train dit-shapes --out DIR` followed by `zoo imagine`: the run directory gets DIR/vae (the
autoencoder, trained first), DIR/judge (the independent classifier that grades the images), log.jsonl, loss.png,
checkpoints/, samples.png (generated above real scenes, for seen and held-out compositions), metrics.json and the
final model (zoo.diffusion.pipeline.TextToImagePipeline.from_pretrained(DIR)). Then it draws prompts.png.
--quick trains tiny versions of all three, 10 steps each (unless --steps says otherwise), on a few dozen 16 px
scenes: every stage runs, nothing is learnt.
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

# --quick: the families' test sizes (their `tiny` in register_family) as --set overrides, and a few 16 px scenes.
# dit-shapes would train its VAE and judge with their full recipes; trained first into DIR/vae and DIR/judge, where
# the denoiser's recipe looks for them, they are tiny too.
QUICK_STEPS = 10
QUICK_DATA = ["data.image_size=16", "data.n_train=32", "data.n_val=8", "train.batch_size=8", "train.eval_every=0"]
QUICK = {
    "vae-shapes": ["model.block_out_channels=8,16", "model.norm_num_groups=4"],
    "judge-shapes": ["model.backbone.widths=8,8,8,8,8", "model.backbone.fc_dims=32,32"],
    "dit-shapes": ["model.patch_size=2", "model.backbone.n_layers=1", "model.backbone.dim=32",
                   "model.backbone.n_heads=2", "model.backbone.context_dim=16", "model.text.n_layers=1",
                   "model.text.dim=16", "model.text.n_heads=2", "data.n_test=4", "data.n_test_heldout=4"],
}

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("out")
parser.add_argument("--steps", type=int)
parser.add_argument("--quick", action="store_true", help="tiny models and data: runs in seconds")
args = parser.parse_args()
if args.quick and args.steps is None:
    args.steps = QUICK_STEPS

if __name__ == "__main__":
    out = Path(args.out)
    if args.quick:
        for helper, folder in (("vae-shapes", "vae"), ("judge-shapes", "judge")):
            train(helper, out=out / folder, steps=args.steps, sets=[*QUICK[helper], *QUICK_DATA])
    sets = [*QUICK["dit-shapes"], *QUICK_DATA] if args.quick else []
    metrics = train("dit-shapes", out=out, steps=args.steps, sets=sets)
    for key in ("gen_joint", "gen_heldout_joint", "vae_joint", "real_joint", "fid", "kid"):
        print(f"{key:>20}: {metrics.get(key, float('nan')):.3f}")
    pipeline = TextToImagePipeline.from_pretrained(out)
    images = pipeline(PROMPTS, num_images_per_prompt=4, generator=torch.Generator().manual_seed(0),
                      output_type="np").images
    path = out / "prompts.png"
    save_grid(torch.from_numpy(images).permute(0, 3, 1, 2), path, nrow=4, n=len(images), scale=4)
    print(f"{len(PROMPTS)} prompts, 4 images each (one prompt per row): {path}")
