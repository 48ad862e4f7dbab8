"""Train the 2012 CNN and the Transformer side by side on the built-in shapes task, then compare them.

    python examples/vision/train_both.py [--steps N] [--out runs]
    python examples/vision/train_both.py --quick --out /tmp/runs    # seconds: a smoke test

Same recipe (3,000 steps), same data, matched FLOPs per image (README: alexnet-mini 99.55%, vit-nano 81.1%
top-1). Each run directory gets log.jsonl, loss.png, confusion_matrix.png and the model (zoo.load(DIR)).
--quick keeps both models and the recipe but renders 64 training and 32 validation images and trains 10 steps
of 16 (unless --steps says otherwise).
"""

import argparse
from pathlib import Path

from zoo.train import train

# The same --set overrides the tests use: the models are already small, the 22,000 renders are what takes time.
QUICK_STEPS = 10
QUICK = ["data.n_train=64", "data.n_val=32", "train.batch_size=16", "train.eval_every=0"]

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--steps", type=int)
parser.add_argument("--out", default="runs")
parser.add_argument("--data", help="an ImageFolder tree instead of the built-in shapes")
parser.add_argument("--quick", action="store_true", help="tiny data and batches: runs in seconds")
args = parser.parse_args()
if args.quick and args.steps is None:
    args.steps = QUICK_STEPS

results = {}
for name in ("alexnet-mini", "vit-nano"):
    results[name] = train(name, out=Path(args.out) / name, data=args.data, steps=args.steps,
                          sets=QUICK if args.quick else [])

print(f"\n{'model':<14} {'top-1':>7} {'top-5':>7}")
for name, metrics in results.items():
    print(f"{name:<14} {metrics['top1']:>7.2%} {metrics['top5']:>7.2%}")
