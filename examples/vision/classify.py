"""Classify an image file with a trained vision model (any size, grayscale/RGBA/palette are converted).

    python examples/vision/classify.py runs/alexnet-mini path/to/image.png
    python examples/vision/classify.py runs/alexnet-mini --shape 7    # draw a test image from the generator
"""

import argparse
import tempfile

import zoo
from zoo.data.shapes import ShapesDataset
from zoo.vision.data import classify

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("model_dir")
parser.add_argument("image", nargs="?")
parser.add_argument("--shape", type=int, help="render item N of a fresh shapes set (seed 12345) instead")
args = parser.parse_args()

model = zoo.load(args.model_dir).eval()
path = args.image
if path is None:
    dataset = ShapesDataset(n=(args.shape or 0) + 1, seed=12345)
    path = tempfile.mktemp(suffix=".png")
    dataset.pil(args.shape or 0).save(path)
    print(f"drew: {dataset.caption(args.shape or 0)}  ({path})")
for name, prob in classify(model, path, top_k=5):
    print(f"{name:<12} {prob:6.1%}")
