"""`zoo imagine`: the text-to-image family's command (registered with the dit family in zoo/diffusion/dit.py).

    zoo imagine runs/dit-shapes "a large red circle in the centre on a blue background" --out circle.png
    zoo imagine DIR "a small green star" --num-images 8 --seed 1 --guidance 6 --scheduler ddim --out stars.png

One image is written as it is, several as a grid (a prompt's images in rows of ceil(sqrt(K))); images smaller
than 128 px are enlarged by an integer factor, nearest neighbour, as the VAE's reconstruction grids are, so 32 px
scenes can be looked at. diffusers is imported only when the command runs (zoo.diffusion.pipeline imports it inside
the functions that build schedulers): it costs seconds at import, and the family module registering this command
must stay cheap.
"""

import argparse
import math
from pathlib import Path

from zoo.diffusion.pipeline import DEFAULT_GUIDANCE, DEFAULT_GUIDANCE_INTERVAL
from zoo.errors import InputError
from zoo.registry import Command


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("dir", help="a trained text-to-image model directory (config.json, tokenizer.json, vae/), or a "
                               "model name with trained weights (dit-shapes: the shipped one)")
    p.add_argument("prompt", help='a caption in the training grammar, e.g. "a small red triangle at the top left on '
                                  'a blue background"; "" draws unconditionally')
    p.add_argument("--out", required=True, help="image file to write (.png, .jpg, ...)")
    p.add_argument("--steps", type=int, help="sampling steps (default 25)")
    p.add_argument("--guidance", type=float,
                   help=f"classifier-free guidance scale (default {DEFAULT_GUIDANCE}; <= 1 turns guidance off)")
    p.add_argument("--guidance-interval", type=float, nargs=2, metavar=("LO", "HI"),
                   help=f"guide only the steps whose noise level sigma (Karras et al.) is in (LO, HI] (default "
                        f"{DEFAULT_GUIDANCE_INTERVAL[0]} {DEFAULT_GUIDANCE_INTERVAL[1]}; 0 inf guides every step)")
    p.add_argument("--seed", type=int, default=0, help="the noise seed: the same seed draws the same image (default 0)")
    p.add_argument("--num-images", type=int, default=1, help="images of the prompt; more than 1 writes a grid")
    p.add_argument("--scheduler", help="dpm++ | ddim | euler | ddpm | flow-euler (default: dpm++ for epsilon and v "
                                       "models, flow-euler for flow models)")
    p.add_argument("--negative-prompt", help="what to steer away from (replaces the empty caption in guidance)")
    p.add_argument("--height", type=int, help="pixels (default: the training size)")
    p.add_argument("--width", type=int, help="pixels (default: the training size)")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")


def image_format(path: Path) -> str | None:
    """The PIL format that writes files named like `path` (None: none does)."""
    from PIL import Image

    fmt = Image.registered_extensions().get(path.suffix.lower())
    return fmt if fmt in Image.SAVE else None


def check_image_path(path: Path) -> Path:
    """A file name whose extension PIL can write; a ValueError before any sampling otherwise."""
    if path.is_dir():
        raise InputError(f"--out {path} is a directory; allowed: an image file name")
    if image_format(path) is None:
        raise InputError(f"--out {path}: cannot tell an image format from {path.suffix or 'no extension'!r}; "
                         f"allowed: a name ending in .png, .jpg, .bmp, .webp, ...")
    return path


def save_images(images, path: Path) -> int:
    """float (N, H, W, 3) in [0, 1] -> one image, or a grid of N (rows of ceil(sqrt(N)), as save_grid draws
    them); returns the enlargement factor used. The file appears whole or not at all."""
    import numpy as np
    import torch
    from PIL import Image
    from torchvision.utils import make_grid

    from zoo.diffusion.vae import viewing_scale
    from zoo.utils import written_atomically

    n, h, w, _ = images.shape
    scale = viewing_scale(max(h, w))
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).repeat_interleave(scale, -1).repeat_interleave(scale, -2)
    picture = batch[0] if n == 1 else make_grid(batch, nrow=math.ceil(math.sqrt(n)), padding=2, pad_value=0.5)
    pixels = (picture.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
    with written_atomically(path) as tmp:
        Image.fromarray(pixels).save(tmp, format=image_format(path))
    return scale


def run(args: argparse.Namespace):
    import torch

    from zoo.diffusion.pipeline import TextToImagePipeline
    from zoo.models import trained_dir

    out = check_image_path(Path(args.out))
    if args.num_images < 1:  # before loading the model; the pipeline checks everything else
        raise InputError(f"--num-images {args.num_images}; allowed: an integer >= 1")
    pipeline = TextToImagePipeline.from_pretrained(trained_dir(args.dir), device=args.device)
    options = {"negative_prompt": args.negative_prompt, "height": args.height, "width": args.width,
               "num_images_per_prompt": args.num_images, "scheduler": args.scheduler}
    if args.steps is not None:
        options["num_inference_steps"] = args.steps
    if args.guidance is not None:
        options["guidance_scale"] = args.guidance
    if args.guidance_interval is not None:
        options["guidance_interval"] = tuple(args.guidance_interval)
    generator = torch.Generator().manual_seed(args.seed)
    images = pipeline(args.prompt, generator=generator, output_type="np", **options).images
    scale = save_images(images, out)
    n, h, w, _ = images.shape
    shown = f", shown {scale}x" if scale > 1 else ""
    print(f"wrote {out}: {n} image{'s' if n > 1 else ''} of {w}x{h} px{shown}, prompt {args.prompt!r}, seed "
          f"{args.seed}, scheduler {args.scheduler or pipeline.scheduler}")


IMAGINE = Command("imagine", "draw images from a caption with a trained text-to-image model", add_arguments, run)
COMMANDS = (IMAGINE,)
