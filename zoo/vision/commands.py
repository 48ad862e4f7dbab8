"""`zoo classify`: the vision families' command (registered with the alexnet family; it serves any
classifier with class names in its config, the ViT too)."""

import argparse

from zoo.registry import Command


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("dir", help="a trained image classifier directory, or a model name with trained weights")
    p.add_argument("image")
    p.add_argument("--top-k", type=int, default=5)


def run(args: argparse.Namespace):
    from zoo.checkpoint import load_pretrained
    from zoo.models import trained_dir
    from zoo.vision.data import classify

    model = load_pretrained(trained_dir(args.dir)).eval()
    for name, prob in classify(model, args.image, top_k=args.top_k):
        print(f"{name:<16} {prob:6.1%}")


CLASSIFY = Command("classify", "classify an image with a trained vision model", add_arguments, run)
