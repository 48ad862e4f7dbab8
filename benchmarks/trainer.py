"""Trainer step time: one process vs DDP / ZeRO-1 / FSDP2 on 2 gloo ranks (CPU), same global batch.

    python benchmarks/trainer.py [--steps 30] [--dim 256] [--layers 4] [--batch 16] [--quick] [--json PATH]

Each configuration is a real `zoo train` run (under torchrun for 2 ranks); the step throughput is read from
its log.jsonl (samples/s over the logged windows after the first, so start-up is excluded). On a 2-core
machine, 2 ranks at one thread each are compared with 1 process at 2 threads: the same cores.
--quick: 10 steps of a width-64 model (a smoke run). --json PATH: the cases for benchmarks/run_all.py (each
strategy on 2 ranks against one process; ratio > 1: the ranks are faster).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def run(strategy: str, nproc: int, args, corpus: Path, home: Path) -> float:
    out = home / f"run-{strategy}-{nproc}"
    threads = str(max(1, (os.cpu_count() or 2) // nproc))
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] \
        if nproc > 1 else [sys.executable]
    cmd = [*launcher, "-m", "zoo.cli", "train", "gpt-nano", "--data", str(corpus), "--out", str(out),
           "--steps", str(args.steps), "--set", "data.tokenizer=char", "--set", f"model.backbone.dim={args.dim}",
           "--set", f"model.backbone.n_layers={args.layers}", "--set", "model.backbone.max_seq_len=128",
           "--set", f"train.batch_size={args.batch}", "--set", f"train.strategy={strategy}",
           "--set", "train.log_every=5", "--set", "train.eval_every=0", "--set", "train.tensorboard=false"]
    env = {**os.environ, "OMP_NUM_THREADS": threads, "ZOO_HOME": str(home)}
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    rates = [r["samples_per_s"] for r in records if "samples_per_s" in r][1:]  # skip the warm-up window
    return sum(rates) / len(rates)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--json", metavar="PATH", help="write the cases to PATH")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.dim = 10, 64
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        corpus = home / "corpus.txt"
        corpus.write_text("".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(20000)))
        print(f"gpt-nano dim {args.dim} x {args.layers} layers, context 128, global batch {args.batch}, "
              f"{args.steps} steps, CPU")
        single = run("single", 1, args, corpus, home)
        print(f"{'single (1 process)':<22} {single:8.1f} samples/s   1.00x")
        cases = []
        for strategy in ("ddp", "zero1", "fsdp"):
            rate = run(strategy, 2, args, corpus, home)
            print(f"{strategy + ' (2 ranks)':<22} {rate:8.1f} samples/s   {rate / single:.2f}x")
            cases.append({"case": f"trainer, gpt-nano dim {args.dim}: {strategy} on 2 gloo ranks (peer: 1 process, "
                                  f"same cores)", "zoo": rate, "peer": single, "unit": "samples/s",
                          "ratio": rate / single})
    if args.json:
        Path(args.json).write_text(json.dumps(cases, indent=2))


if __name__ == "__main__":
    main()
