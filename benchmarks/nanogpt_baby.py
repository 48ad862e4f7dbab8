"""zoo vs nanoGPT at nanoGPT's CPU "baby" budget on Shakespeare: step time, the whole command, and the race to
nanoGPT's final validation loss.

    python benchmarks/nanogpt_baby.py [--steps 30] [--rounds 5] [--threads 2] [--quick] [--json [PATH]]
    python benchmarks/nanogpt_baby.py --whole [--data benchmarks/data/tinyshakespeare.txt] [--repeats 3]
    python benchmarks/nanogpt_baby.py --race [--data FILE] [--repeats 1] [--json [PATH]] [--zoo-set KEY=VALUE ...]
                                      [--peer-from JSON]

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
the last 10% of the file, scored by the same full-split evaluation (zoo's `zoo eval` metric) for both; zoo runs
the README's baby command.
--race: time to quality. nanoGPT's whole baby command runs first (fresh process); its final model's validation
loss on the whole split is the target. Then zoo trains at the same model shape with its race settings (RACE below,
each lever measured and explained there) as a fresh `zoo train` process in an empty ZOO_HOME, so it prepares its
data as nanoGPT does. zoo's clock starts when its process is launched: the race stamps the moment the run log
(log.jsonl) appears, and every log record carries elapsed_s from then on, so zoo's time to the target is that
stamp plus the elapsed_s of its first evaluation whose loss (whole validation split, the same windows as
nanoGPT's score) is at or below the target. Prints one JSON line with --json: nanoGPT's wall time and final loss,
zoo's time to reach that loss, their ratio (target <= 0.5), and zoo's own wall time and final loss.
--quick: a smoke run (step time: one short round; race: 100 steps each, zoo's warm-up and evaluations scaled).
--json: the figures as JSON, one line on stdout, or in PATH: "cases" holds {"case", "zoo", "peer", "unit",
"ratio", "target"} rows for benchmarks/run_all.py (ratio > 1: zoo ahead).
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
from timing import interleaved  # benchmarks/timing.py: run as scripts, benchmarks/ is on sys.path
from torch import nn

VOCAB, DIM, LAYERS, HEADS, CONTEXT, BATCH = 65, 128, 4, 4, 64, 12
ITERS, LR, MIN_LR, WARMUP, EVAL_INTERVAL, EVAL_ITERS = 2000, 1e-3, 1e-4, 100, 250, 20
DEFAULT_DATA = Path(__file__).resolve().parent / "data" / "tinyshakespeare.txt"  # shipped in the repo
SHAPE = ["--set", "data.tokenizer=char", "--set", "model.backbone.n_layers=4", "--set", "model.backbone.n_heads=4",
         "--set", "model.backbone.dim=128", "--set", "model.backbone.max_seq_len=64",
         "--set", "model.backbone.dropout=0"]
ZOO_COMMAND = ["train", "gpt-nano", "--steps", "2000", *SHAPE, "--set", "train.batch_size=12",
               "--set", "train.lr=1e-3", "--set", "train.min_lr=1e-4", "--set", "train.warmup=100"]

# zoo's race settings: the baby shape (SHAPE) trained to nanoGPT's final loss as fast as possible. Each lever was
# measured with --race on a 2-core machine (README, "nanoGPT's CPU baby budget", has the figures).
RACE = {
    # Muon (Jordan et al., 2024; modded-nanogpt's optimizer since its 2024 records) on the hidden matrices, AdamW on
    # the embedding and gains (zoo.train.trainer.MuonWithAdamW): a schedule of about 420 steps reaches nanoGPT's
    # loss, where AdamW at its best learning rate (2e-3) needs about 610, at 40 ms a step against 32: 11% less time.
    "train.optimizer": "muon",
    "train.lr": 8e-3,  # Muon's best here (4e-3 and 1.6e-2 were worse); AdamW's part shares it
    "train.min_lr": 8e-4,
    "train.warmup": 0,  # Muon wanted none (as in modded-nanogpt): 20 and 50 warm-up steps were worse
    "train.steps": 450,  # the whole cosine schedule, ending at nanoGPT's loss with a small margin
    "train.batch_size": 12,  # nanoGPT's: 24 windows a step were no faster per token on a CPU and learnt less per token
    "train.eval_every": 0,  # one evaluation, the final one: each of the whole split costs about a second
    "data.quick_eval_windows": 1_000_000,  # an evaluation during training (--zoo-set train.eval_every=N) scores the
    # whole split, as the target is
    "data.code_samples": 0,  # gpt-nano's recipe samples 100 Python functions at the end: no use on Shakespeare
    "data.eval_stride": 64,  # the final perplexity over non-overlapping windows: half the default's forward passes
    "train.checkpoint_every": 0,  # one checkpoint, at the end
    "train.tensorboard": "false",
}
QUICK_ITERS = 100  # --race --quick: both run this many steps (zoo's warm-up and evaluations scaled alike)


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


def lr_at(it: int, iters: int = ITERS) -> float:
    """nanoGPT's get_lr: linear warm-up, then cosine from LR to MIN_LR at the last iteration."""
    warmup = min(WARMUP, iters // 2)
    if it < warmup:
        return LR * (it + 1) / (warmup + 1)
    ratio = min(1.0, (it - warmup) / (iters - warmup))
    return MIN_LR + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (LR - MIN_LR)


# ----------------------------------------------------------------------------------------------------------
# nanoGPT's whole baby command (prepare.py, then train.py), run as its own process by --whole


def reference_run(data_path: Path, out: Path, iters: int = ITERS) -> None:
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
    for it in range(iters + 1):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(it, iters)
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


def nanogpt_val_loss(run_dir: Path) -> float:
    """The full-split validation loss of a finished reference run's final model."""
    state = torch.load(run_dir / "final.pt", weights_only=True)["model"]
    model = GPT2(state["wte.weight"].shape[0])
    model.load_state_dict(state)
    return full_val_loss(model, np.fromfile(run_dir / "val.bin", dtype=np.uint16))


def timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def data_file(args) -> Path:
    data = Path(args.data)
    if not data.is_file():
        sys.exit(f"--data {data}: no such file (any UTF-8 text; nanoGPT's baby run uses Shakespeare)")
    return data


def whole(args):
    data = data_file(args)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    zoo_cli = [sys.executable, "-m", "zoo.cli"]
    print(f"whole commands on {data.name}, {args.threads} threads, run one after the other "
          f"(load average {os.getloadavg()[0]:.2f})")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            ref_dir, zoo_dir = Path(tmp) / f"nanogpt{repeat}", Path(tmp) / f"zoo{repeat}"
            ref_s = timed([sys.executable, __file__, "--reference", str(data), str(ref_dir), "--threads",
                            str(args.threads)], env)
            zoo_s = timed(zoo_cli + ZOO_COMMAND + ["--data", str(data), "--out", str(zoo_dir)], env)
            rows.append((ref_s, zoo_s))
            print(f"  run {repeat + 1}: nanoGPT {ref_s:.1f} s   zoo {zoo_s:.1f} s")
        ref_val = nanogpt_val_loss(ref_dir)
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
# the race to nanoGPT's final loss


def race_settings(args) -> dict:
    """RACE (--quick: QUICK_ITERS steps, as nanoGPT runs, its warm-up and evaluations scaled), then --zoo-set."""
    settings = dict(RACE)
    if args.quick:
        scale = QUICK_ITERS / settings["train.steps"]
        for key in ("train.warmup", "train.eval_every"):
            settings[key] = round(settings[key] * scale)
        settings["train.steps"] = QUICK_ITERS
    for item in args.zoo_set:
        key, sep, value = item.partition("=")
        if not sep:
            sys.exit(f"--zoo-set {item!r}: expected section.field=value")
        settings[key] = value
    return settings


def run_zoo(data: Path, out: Path, settings: dict, env: dict) -> dict:
    """One fresh `zoo train` process: its wall time, when its log opened (seconds after launch) and its
    evaluations as (step, seconds since launch, val_loss)."""
    sets = [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]
    command = [sys.executable, "-m", "zoo.cli", "train", "gpt-nano", "--data", str(data), "--out", str(out),
               *SHAPE, *sets]
    log = out / "log.jsonl"
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    opened = None
    while process.poll() is None and opened is None:
        if log.exists():
            opened = time.perf_counter() - start
        else:
            time.sleep(0.01)
    _, stderr = process.communicate()
    wall = time.perf_counter() - start
    if process.returncode != 0:
        sys.exit(f"zoo train failed (exit {process.returncode}):\n{stderr[-3000:]}")
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    evaluations = [(r["step"], opened + r["elapsed_s"], r["val_loss"]) for r in records if "val_loss" in r]
    return {"wall_s": wall, "log_opened_s": opened, "evaluations": evaluations}


def time_to(evaluations: list, target: float) -> tuple[int, float] | tuple[None, None]:
    """(step, seconds since launch) of the first evaluation at or below the target loss."""
    for step, seconds, loss in evaluations:
        if loss <= target:
            return step, seconds
    return None, None


def race(args):
    data = data_file(args)
    settings = race_settings(args)
    iters = QUICK_ITERS if args.quick else ITERS
    load_before = os.getloadavg()[0]
    print(f"race on {data.name}: nanoGPT's baby command ({iters} iterations) vs zoo "
          f"({' '.join(f'{k}={v}' for k, v in settings.items())}), {args.threads} threads, fresh processes one "
          f"after the other (load average {load_before:.2f})", file=sys.stderr)
    pairs = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            home = Path(tmp) / f"home{repeat}"  # an empty ZOO_HOME: zoo prepares its data, as nanoGPT does
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "ZOO_HOME": str(home)}
            if args.peer_from:
                peer = json.loads(Path(args.peer_from).read_text())
                ref_s, target = peer["nanogpt_wall_s"], peer["nanogpt_val_loss"]
            else:
                ref_dir = Path(tmp) / f"nanogpt{repeat}"
                ref_s = timed([sys.executable, __file__, "--reference", str(data), str(ref_dir), str(iters),
                               "--threads", str(args.threads)], env)
                target = nanogpt_val_loss(ref_dir)
            zoo = run_zoo(data, Path(tmp) / f"zoo{repeat}", settings, env)
            step, seconds = time_to(zoo["evaluations"], target)
            pairs.append({"nanogpt_wall_s": ref_s, "nanogpt_val_loss": target, "zoo_time_to_loss_s": seconds,
                          "zoo_step_at_loss": step, "zoo_wall_s": zoo["wall_s"],
                          "zoo_val_loss": zoo["evaluations"][-1][2], "zoo_log_opened_s": zoo["log_opened_s"]})
            reached = f"{seconds:.1f} s (step {step})" if seconds is not None else "never"
            print(f"  run {repeat + 1}: nanoGPT {ref_s:.1f} s to val loss {target:.4f}; zoo reached it at {reached}, "
                  f"ended at {zoo['wall_s']:.1f} s with {zoo['evaluations'][-1][2]:.4f} (log opened at "
                  f"{zoo['log_opened_s']:.1f} s)", file=sys.stderr)
            for eval_step, eval_s, loss in zoo["evaluations"]:
                print(f"      zoo step {eval_step:>5}  {eval_s:6.1f} s  val loss {loss:.4f}", file=sys.stderr)
    result = {key: statistics.median(p[key] for p in pairs) for key in pairs[0]
              if all(isinstance(p[key], (int, float)) for p in pairs)}
    times = [p["zoo_time_to_loss_s"] if p["zoo_time_to_loss_s"] is not None else math.inf for p in pairs]
    median_time = statistics.median(times)
    result["zoo_time_to_loss_s"] = median_time if math.isfinite(median_time) else None
    ratio = median_time / result["nanogpt_wall_s"]
    result.update(time_ratio=ratio if math.isfinite(ratio) else None, target_ratio=0.5, runs=pairs,
                  data=str(data), iterations=iters, threads=args.threads, zoo_settings=settings,
                  peer_reused=bool(args.peer_from), load_average=[load_before, os.getloadavg()[0]])
    result["cases"] = [{"case": "GPT time to nanoGPT's baby val loss (nanoGPT: its whole command)",
                        "zoo": result["zoo_time_to_loss_s"], "peer": result["nanogpt_wall_s"], "unit": "s",
                        "ratio": 1 / ratio if math.isfinite(ratio) else None, "target": 2.0}]
    summary = f"{ratio:.2f}x" if math.isfinite(ratio) else "never reached"
    print(f"zoo time to nanoGPT's loss / nanoGPT's wall time: {summary} (target <= 0.50x)"
          + (f", median of {len(pairs)} pairs" if len(pairs) > 1 else ""), file=sys.stderr)
    emit(args, result)


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
        for _ in range(2 if args.quick else 10):
            step()
    best = interleaved(steps, args.rounds, per_round=args.steps)
    for name, model in models.items():
        params = sum(p.numel() for p in set(model.parameters()))
        print(f"{name:<24} {params:>9,} params  {best[name] * 1e3:6.1f} ms/step")
    ours, peer = best["zoo gpt-nano"], best["nanoGPT (GPT-2 block)"]
    print(f"zoo / nanoGPT step time: {ours / peer:.2f}x  (2000 steps: {2000 * ours:.0f} s vs {2000 * peer:.0f} s)")
    emit(args, {"threads": args.threads, "load_average": os.getloadavg()[0],
                "cases": [{"case": "GPT training step, nanoGPT's baby shape (nanoGPT: GPT-2 block)",
                           "zoo": ours * 1e3, "peer": peer * 1e3, "unit": "ms", "ratio": peer / ours}]})


def emit(args, result: dict):
    """--json: one line on stdout, or the file PATH."""
    if args.json == "-":
        print(json.dumps(result), flush=True)
    elif args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="steps per timing round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--whole", action="store_true", help="time both complete commands")
    parser.add_argument("--race", action="store_true", help="zoo's time to nanoGPT's final loss")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--repeats", type=int, default=1, help="--whole, --race: runs of each (medians reported)")
    parser.add_argument("--zoo-set", action="append", default=[], metavar="KEY=VALUE",
                        help="--race: override or add one of zoo's race settings (a `zoo train --set`)")
    parser.add_argument("--peer-from", metavar="JSON",
                        help="--race: reuse nanoGPT's wall time and loss from an earlier --race --json line on this "
                             "machine instead of running it again (lever sweeps; a quoted race runs both)")
    parser.add_argument("--quick", action="store_true", help="a smoke run (see above)")
    parser.add_argument("--json", nargs="?", const="-", metavar="PATH", help="figures as JSON: stdout or PATH")
    parser.add_argument("--reference", nargs="+", metavar="DATA OUT [ITERS]", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.rounds = 3, 1
    torch.set_num_threads(args.threads)
    if args.reference:
        data, out, *iters = args.reference
        reference_run(Path(data), Path(out), int(iters[0]) if iters else ITERS)
    elif args.race:
        race(args)
    elif args.whole:
        whole(args)
    else:
        step_times(args)


if __name__ == "__main__":
    main()
