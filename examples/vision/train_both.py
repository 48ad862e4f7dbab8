"""Train the 2012 CNN and the Transformer side by side on the built-in shapes task, then compare them.

    python examples/vision/train_both.py [--steps N] [--out runs]

Same recipe (3,000 steps), same data, matched FLOPs per image (README: alexnet-mini 99.55%, vit-nano 81.1%
top-1). Each run directory gets log.jsonl, loss.png, confusion_matrix.png and the model (zoo.load(DIR)).
"""

import argparse
from pathlib import Path

from zoo.train import train

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--steps", type=int)
parser.add_argument("--out", default="runs")
parser.add_argument("--data", help="an ImageFolder tree instead of the built-in shapes")
args = parser.parse_args()

results = {}
for name in ("alexnet-mini", "vit-nano"):
    results[name] = train(name, out=Path(args.out) / name, data=args.data, steps=args.steps)

print(f"\n{'model':<14} {'top-1':>7} {'top-5':>7}")
for name, metrics in results.items():
    print(f"{name:<14} {metrics['top1']:>7.2%} {metrics['top5']:>7.2%}")
