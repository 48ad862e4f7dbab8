"""zoo AlexNet vs torchvision's AlexNet, and alexnet-mini vs vit-nano: training throughput (images/s).

    python benchmarks/vision.py [--threads 2] [--batch 32] [--mini-batch 128] [--rounds 5] [--only alexnet|mini]
                                [--quick] [--json PATH]

  alexnet  forward + backward + SGD step at 224 px, zoo `alexnet` (lrn=False: torchvision's exact layers, with
           channels_last, the default, and without; with lrn=True: the paper's LRN, whose cost it prints) vs
           torchvision.models.alexnet(weights=None); the ratio zoo/torchvision is what to quote (target >= 1.0).
           Then inference (eval mode, torch.inference_mode, the same batch) of the same models.
  mini     the same at 32 px for `alexnet-mini` and `vit-nano` (9 classes, the shapes task), side by side with
           their parameter counts and training FLOPs per image (torch.utils.flop_counter). Accuracy figures come
           from training runs (`zoo train alexnet-mini`), not from this benchmark.

Everything runs in one process at one thread count, fp32, random weights (nothing is downloaded). Timing
rounds alternate between the contestants and the best round counts, so a machine that other jobs keep busy
slows all alike; the load average is printed (ratios from a quiet machine are the ones to quote). On a
shared 2-core machine prefer --threads 1: OpenMP threads that wait on each other at barriers while another
process holds a core can make 2 threads several times slower than 1.
--quick: one timing round of one step (a smoke run). --json PATH: the AlexNet cases for benchmarks/run_all.py
(zoo's default, lrn=True, and lrn=False against torchvision; ratio > 1: zoo ahead).
"""

import argparse
import json
import os
from functools import partial

import torch
import torch.nn.functional as F
import torchvision
from timing import interleaved  # benchmarks/timing.py: run as scripts, benchmarks/ is on sys.path
from torch.utils.flop_counter import FlopCounterMode

import zoo


def train_step(model, optimizer, x, y):
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    optimizer.step()


def images_per_second(contestants: dict, batch: int, size: int, classes: int, rounds: int, steps: int) -> dict:
    """Best-of-rounds training throughput of each model, rounds interleaved across the models."""
    torch.manual_seed(0)
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, classes, (batch,))
    steps_of = {}
    for name, model in contestants.items():
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
        steps_of[name] = partial(train_step, model, optimizer, x, y)
        for _ in range(2):  # warm-up: oneDNN primitive creation, allocator
            steps_of[name]()
    seconds = interleaved(steps_of, rounds, per_round=steps)
    return {name: batch / s for name, s in seconds.items()}


def inference_images_per_second(contestants: dict, batch: int, size: int, rounds: int, steps: int) -> dict:
    """The same for a forward pass in eval mode under torch.inference_mode."""
    torch.manual_seed(0)
    x = torch.randn(batch, 3, size, size)

    def forward(model):
        with torch.inference_mode():
            model(x)

    calls = {name: partial(forward, model.eval()) for name, model in contestants.items()}
    seconds = interleaved(calls, rounds, per_round=steps, warmup=True)
    return {name: batch / s for name, s in seconds.items()}


def train_flops_per_image(model, size: int, classes: int) -> float:
    x, y = torch.randn(1, 3, size, size), torch.randint(0, classes, (1,))
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def bench_alexnet(args) -> list[dict]:
    torch.manual_seed(0)
    contestants = {
        "torchvision alexnet": torchvision.models.alexnet(weights=None),
        "zoo alexnet (lrn=False, channels_last=False)": zoo.load("alexnet", lrn=False, channels_last=False),
        "zoo alexnet (lrn=False, channels_last)": zoo.load("alexnet", lrn=False),
        "zoo alexnet (lrn=True, channels_last)": zoo.load("alexnet"),
    }
    cases = []
    for mode, rates in (("training", images_per_second(contestants, args.batch, 224, 1000, args.rounds, args.steps)),
                        ("inference", inference_images_per_second(contestants, args.batch, 224, args.rounds,
                                                                  args.steps))):
        reference = rates["torchvision alexnet"]
        what = "forward + backward + SGD step" if mode == "training" else "forward, inference_mode"
        print(f"\nAlexNet at 224 px, batch {args.batch}, {what}, {args.threads} thread(s)")
        for name, rate in rates.items():
            print(f"  {name:<46} {rate:8.1f} img/s   {rate / reference:5.2f}x torchvision")
        for name, label in (("zoo alexnet (lrn=False, channels_last)", "no LRN, as torchvision"),
                            ("zoo alexnet (lrn=True, channels_last)", "the paper's LRN")):
            cases.append({"case": f"AlexNet 224 px, batch {args.batch}, {mode}, {label} (peer: torchvision)",
                          "zoo": rates[name], "peer": reference, "unit": "img/s", "ratio": rates[name] / reference,
                          "target": 1.0 if label.startswith("no LRN") else None})
    return cases


def bench_mini(args):
    torch.manual_seed(0)
    contestants = {
        "alexnet-mini (channels_last, as registered)": zoo.load("alexnet-mini", num_classes=9),
        "alexnet-mini (channels_last=False)": zoo.load("alexnet-mini", num_classes=9, channels_last=False),
        "alexnet-mini (lrn=False)": zoo.load("alexnet-mini", num_classes=9, lrn=False),
        "vit-nano": zoo.load("vit-nano", num_classes=9),
    }
    rates = images_per_second(contestants, args.mini_batch, 32, 9, args.rounds, args.steps)
    reference = rates["alexnet-mini (channels_last, as registered)"]
    print(f"\n32 px, 9 classes, batch {args.mini_batch}, forward + backward + SGD step, {args.threads} thread(s)")
    for name, rate in rates.items():
        model = contestants[name]
        params = sum(p.numel() for p in model.parameters())
        flops = train_flops_per_image(model, 32, 9)
        print(f"  {name:<46} {rate:8.1f} img/s ({1e3 / rate:5.2f} ms/img)   {rate / reference:5.2f}x alexnet-mini   "
              f"{params / 1e3:6.1f}k params   {flops / 1e6:6.1f} MFLOP/img (fwd+bwd)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32, help="batch of the 224 px AlexNet comparison")
    parser.add_argument("--mini-batch", type=int, default=128, help="batch of the 32 px comparison")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2, help="training steps per timing round")
    parser.add_argument("--only", choices=["alexnet", "mini"])
    parser.add_argument("--quick", action="store_true", help="a smoke run: one round of one step")
    parser.add_argument("--json", metavar="PATH", help="write the AlexNet cases to PATH")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.steps = 1, 1
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, {args.threads} thread(s), "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    cases = bench_alexnet(args) if args.only in (None, "alexnet") else []
    if args.only in (None, "mini"):
        bench_mini(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(cases, f, indent=2)


if __name__ == "__main__":
    main()
