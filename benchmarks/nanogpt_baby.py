"""zoo vs nanoGPT at nanoGPT's CPU "baby" budget on Shakespeare: step time, and the whole command.

    python benchmarks/nanogpt_baby.py [--steps 30] [--rounds 5] [--threads 2]
    python benchmarks/nanogpt_baby.py --whole [--data benchmarks/data/tinyshakespeare.txt] [--repeats 3]

The baby budget (nanoGPT README, "I only have a macbook"): 4 layers, 4 heads, width 128, context 64, batch 12,
2000 iterations, lr 1e-3 cosine to 1e-4 after 100 warm-up steps, dropout 0, character level, 90/10 split.

The peer is nanoGPT's own model and training loop for that command, written out here (nothing is
downloaded): the GPT-2 block (learned positions, LayerNorm without bias, fused QKV, exact-GELU MLP 4x, SDPA
causal, tied head, bias=False), GPT-2 init, AdamW(betas 0.9/0.99, weight decay 0.1 on matrices, torch's CPU
default implementation: nanoGPT asks for `fused` only on CUDA), clipping at 1.0, random 12 windows a step
from a memory-mapped uint16 array, `loss.item()` every step (log_interval=1), an estimate of train and val
loss from 20 batches each every 250 steps, a checkpoint whenever val improves, 2001 iterations (its loop
runs iter 0..max_iters).

Default mode: ms per training step of both models (forward, backward, clipping, AdamW as each side runs it:
zoo's trainer uses fused AdamW on CPU), interleaved so machine noise hits both alike.
--whole: runs the two complete commands one after the other as fresh processes (interpreter start-up, data
preparation, evaluation and checkpoints included) and prints each one's wall time and its validation loss on
the last 10% of the file, scored by the same full-split evaluation (zoo's `zoo eval` metric) for both.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

VOCAB, DIM, LAYERS, HEADS, CONTEXT, BATCH = 65, 128, 4, 4, 64, 12
ITERS, LR, MIN_LR, WARMUP, EVAL_INTERVAL, EVAL_ITERS = 2000, 1e-3, 1e-4, 100, 250, 20
DEFAULT_DATA = Path(__file__).resolve().parent / "data" / "tinyshakespeare.txt"  # shipped in the repo
ZOO_COMMAND = ["train", "gpt-nano", "--steps", "2000", "--set", "data.tokenizer=char",
               "--set", "model.backbone.n_layers=4", "--set", "model.backbone.n_heads=4",
               "--set", "model.backbone.dim=128", "--set", "model.backbone.max_seq_len=64",
               "--set", "model.backbone.dropout=0", "--set", "train.batch_size=12", "--set", "train.lr=1e-3",
               "--set", "train.min_lr=1e-4", "--set", "train.warmup=100"]


# ----------------------------------------------------------------------------------------------------------
# nanoGPT's model at the baby size


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (nanoGPT's, since torch's had no bias=False)."""

    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, None, 1e-5)


class GPT2Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = LayerNorm(DIM), LayerNorm(DIM)
        self.qkv, self.proj = nn.Linear(DIM, 3 * DIM, bias=False), nn.Linear(DIM, DIM, bias=False)
        self.up, self.down = nn.Linear(DIM, 4 * DIM, bias=False), nn.Linear(4 * DIM, DIM, bias=False)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, HEADS, C // HEADS).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + self.proj(y)
        return x + self.down(F.gelu(self.up(self.ln2(x))))


class GPT2(nn.Module):
    def __init__(self, vocab: int = VOCAB):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, DIM), nn.Embedding(CONTEXT, DIM)
        self.blocks = nn.ModuleList(GPT2Block() for _ in range(LAYERS))
        self.ln_f = LayerNorm(DIM)
        self.head = nn.Linear(DIM, vocab, bias=False)
        self.head.weight = self.wte.weight
        for name, p in self.named_parameters():  # GPT-2 init, residual projections scaled by 1/sqrt(2L)
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * LAYERS) if name.endswith(("proj.weight", "down.weight")) else 0.02
                nn.init.normal_(p, std=std)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def adamw(model, fused: bool):
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=LR, betas=(0.9, 0.99), **({"fused": True} if fused else {}))


def lr_at(it: int) -> float:
    """nanoGPT's get_lr: linear warm-up, then cosine from LR to MIN_LR at ITERS."""
    if it < WARMUP:
        return LR * (it + 1) / (WARMUP + 1)
    ratio = min(1.0, (it - WARMUP) / (ITERS - WARMUP))
    return MIN_LR + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (LR - MIN_LR)


# ----------------------------------------------------------------------------------------------------------
# nanoGPT's whole baby command (prepare.py, then train.py), run as its own process by --whole


def reference_run(data_path: Path, out: Path) -> None:
    started = time.perf_counter()
    text = data_path.read_text(encoding="utf-8")
    chars = sorted(set(text))  # prepare.py: the character vocabulary, 90/10 split, uint16 .bin files
    stoi = {c: i for i, c in enumerate(chars)}
    split = int(len(text) * 0.9)
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", text[:split]), ("val", text[split:])):
        np.array([stoi[c] for c in part], dtype=np.uint16).tofile(out / f"{name}.bin")

    def get_batch(split_name):  # train.py re-opens the memmap every batch (to avoid a leak) and samples 12
        data = np.memmap(out / f"{split_name}.bin", dtype=np.uint16, mode="r")
        ix = torch.randint(len(data) - CONTEXT, (BATCH,))
        x = torch.stack([torch.from_numpy(data[i:i + CONTEXT].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + CONTEXT].astype(np.int64)) for i in ix])
        return x, y

    torch.manual_seed(1337)
    model = GPT2(len(chars))
    optimizer = adamw(model, fused=False)

    @torch.no_grad()
    def estimate_loss():
        model.eval()
        losses = {}
        for split_name in ("train", "val"):
            values = []
            for _ in range(EVAL_ITERS):
                x, y = get_batch(split_name)
                values.append(F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item())
            losses[split_name] = sum(values) / len(values)
        model.train()
        return losses

    best_val, x, y = 1e9, *get_batch("train")
    for it in range(ITERS + 1):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(it)
        if it % EVAL_INTERVAL == 0:
            losses = estimate_loss()
            print(f"step {it}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}", flush=True)
            if losses["val"] < best_val:
                best_val = losses["val"]
                if it > 0:
                    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "iter": it},
                               out / "ckpt.pt")
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        x, y = get_batch("train")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()  # log_interval=1: nanoGPT prints every iteration
    torch.save({"model": model.state_dict()}, out / "final.pt")
    (out / "result.json").write_text(json.dumps({"seconds_in_process": time.perf_counter() - started,
                                                 "estimate_val_loss": losses["val"]}))


@torch.no_grad()
def full_val_loss(model, tokens: np.ndarray) -> float:
    """Mean next-token loss over non-overlapping 64-token windows of the whole validation split (zoo eval's)."""
    model.eval()
    tokens = torch.from_numpy(tokens.astype(np.int64))
    starts = range(0, len(tokens) - CONTEXT, CONTEXT)
    total, count = 0.0, 0
    for s in range(0, len(starts), 64):
        chunk = torch.stack([tokens[i:i + CONTEXT + 1] for i in starts[s:s + 64]])
        total += F.cross_entropy(model(chunk[:, :-1]).flatten(0, 1), chunk[:, 1:].flatten(), reduction="sum").item()
        count += chunk[:, 1:].numel()
    return total / count


def timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def whole(args):
    data = Path(args.data)
    if not data.is_file():
        sys.exit(f"--data {data}: no such file (the Shakespeare text nanoGPT's baby run uses)")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    zoo_cli = [sys.executable, "-m", "zoo.cli"]
    print(f"whole commands on {data.name}, {args.threads} threads, run one after the other "
          f"(load average {os.getloadavg()[0]:.2f})")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            ref_dir, zoo_dir = Path(tmp) / f"nanogpt{repeat}", Path(tmp) / f"zoo{repeat}"
            ref_s = timed([sys.executable, __file__, "--reference", str(data), str(ref_dir)], env)
            zoo_s = timed(zoo_cli + ZOO_COMMAND + ["--data", str(data), "--out", str(zoo_dir)], env)
            rows.append((ref_s, zoo_s))
            print(f"  run {repeat + 1}: nanoGPT {ref_s:.1f} s   zoo {zoo_s:.1f} s")
        state = torch.load(ref_dir / "final.pt", weights_only=True)["model"]
        model = GPT2(state["wte.weight"].shape[0])
        model.load_state_dict(state)
        ref_val = full_val_loss(model, np.fromfile(ref_dir / "val.bin", dtype=np.uint16))
        ref_estimate = json.loads((ref_dir / "result.json").read_text())["estimate_val_loss"]
        zoo_val = json.loads((zoo_dir / "metrics.json").read_text())["val_loss"]
    ref_s, zoo_s = statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)
    runs = f"median of {len(rows)} runs" if len(rows) > 1 else "one run"
    print(f"nanoGPT: {ref_s:6.1f} s wall ({runs}), val loss {ref_val:.3f} (its own 20-batch estimate "
          f"{ref_estimate:.3f})")
    print(f"zoo:     {zoo_s:6.1f} s wall ({runs}), val loss {zoo_val:.3f}")
    print(f"zoo / nanoGPT wall time: {zoo_s / ref_s:.2f}x  (target <= 1.00x, with a lower val loss); zoo was "
          f"faster in {sum(z < r for r, z in rows)} of {len(rows)} paired runs")


# ----------------------------------------------------------------------------------------------------------
# step time


def make_step(model, fused: bool):
    optimizer = adamw(model, fused)
    x, y = torch.randint(0, VOCAB, (BATCH, CONTEXT)), torch.randint(0, VOCAB, (BATCH, CONTEXT))

    def step():
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def step_times(args):
    import zoo

    torch.manual_seed(0)
    models = {"zoo gpt-nano": zoo.load("gpt-nano", vocab_size=VOCAB, backbone=dict(
                  n_layers=LAYERS, n_heads=HEADS, dim=DIM, max_seq_len=CONTEXT, dropout=0.0)),
              "nanoGPT (GPT-2 block)": GPT2()}
    steps = {"zoo gpt-nano": make_step(models["zoo gpt-nano"].train(), fused=True),
             "nanoGPT (GPT-2 block)": make_step(models["nanoGPT (GPT-2 block)"].train(), fused=False)}
    for step in steps.values():
        for _ in range(10):
            step()
    best = {name: math.inf for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            best[name] = min(best[name], (time.perf_counter() - start) / args.steps)
    for name, model in models.items():
        params = sum(p.numel() for p in set(model.parameters()))
        print(f"{name:<24} {params:>9,} params  {best[name] * 1e3:6.1f} ms/step")
    ours, peer = best["zoo gpt-nano"], best["nanoGPT (GPT-2 block)"]
    print(f"zoo / nanoGPT step time: {ours / peer:.2f}x  (2000 steps: {2000 * ours:.0f} s vs {2000 * peer:.0f} s)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="steps per timing round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--whole", action="store_true", help="time both complete commands")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--repeats", type=int, default=1, help="--whole: runs of each command (medians reported)")
    parser.add_argument("--reference", nargs=2, metavar=("DATA", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.reference:
        reference_run(Path(args.reference[0]), Path(args.reference[1]))
    elif args.whole:
        whole(args)
    else:
        step_times(args)


if __name__ == "__main__":
    main()
