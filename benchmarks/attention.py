"""zoo attention (SDPA, fused) vs naive softmax(QK^T/sqrt(d))V: time and peak memory, CPU, causal.

    python benchmarks/attention.py [--lengths 512 2048 4096 8192 16384] [--heads 8] [--head-dim 64] [--quick]
                                   [--json PATH]

Each (implementation, length) runs in its own process so peak RSS is clean; peak memory is reported as
the growth over the inputs. The naive path holds the N x N scores per head; the fused path must not.
The naive path holds three N x N matrices per head at its peak (scores, masked scores, softmax): for all 8
heads at 16,384 tokens that is 24 GiB, more than a small machine has, so it takes the heads in groups whose
matrices fit in --naive-budget-gib (8 GiB: all 8 heads at once up to 8,192 tokens, 2 at a time at 16,384). A
group holds less than all heads would, so the memory ratio at such a length understates zoo's advantage.
--quick: 512 and 1024 tokens, one repeat. --json PATH: the cases for benchmarks/run_all.py (ratio > 1: zoo ahead).
"""

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

MEMORY_TARGET_LENGTH, MEMORY_TARGET = 16384, 20.0  # the issue: at most 1/20 of the naive peak at 16,384 tokens


def naive(q, k, v):
    N = q.shape[-2]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, N, N): the matrix FlashAttention avoids
    causal = torch.ones(N, N, dtype=torch.bool).tril()
    return scores.masked_fill(~causal, float("-inf")).softmax(dim=-1) @ v


def naive_in_groups(group: int):
    def run(q, k, v):
        return torch.cat([naive(q[:, h:h + group], k[:, h:h + group], v[:, h:h + group])
                          for h in range(0, q.shape[1], group)], dim=1)

    return run


def fused(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)  # what zoo.nn.Attention calls


def naive_group(n: int, heads: int, budget_gib: float) -> int:
    """Heads the naive path takes at once: the most (a divisor of heads) whose 3 N x N fp32 matrices fit."""
    per_head = 3 * n * n * 4 / 2**30
    return max([g for g in range(1, heads + 1) if heads % g == 0 and g * per_head <= budget_gib] or [1])


def run_one(impl: str, n: int, heads: int, head_dim: int, repeats: int, group: int) -> dict:
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, heads, n, head_dim) for _ in range(3))
    fn = fused if impl == "zoo" else naive_in_groups(group)
    with torch.no_grad():
        fn(q[:, :, :64], k[:, :, :64], v[:, :, :64])  # warm-up on a small slice: RSS stays at the inputs
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn(q, k, v)
            times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base  # KiB on Linux
    return {"seconds": min(times), "peak_mib": peak / 1024}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", help="default 512 2048 4096 8192 16384; --quick 512 1024")
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, help="timed calls per process, the best counts (default 3; --quick 1)")
    parser.add_argument("--naive-budget-gib", type=float, default=8.0, help="memory the naive path may hold at once")
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--json", metavar="PATH", help="write the cases to PATH")
    parser.add_argument("--one", nargs=3, metavar=("IMPL", "N", "GROUP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.lengths = args.lengths or ([512, 1024] if args.quick else [512, 2048, 4096, 8192, 16384])
    args.repeats = args.repeats or (1 if args.quick else 3)
    if args.one:
        impl, n, group = args.one[0], int(args.one[1]), int(args.one[2])
        print(json.dumps(run_one(impl, n, args.heads, args.head_dim, args.repeats, group)))
        return

    print(f"causal attention, batch 1, {args.heads} heads x {args.head_dim}, fp32, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, load average {os.getloadavg()[0]:.2f}")
    print(f"{'N':>6} {'zoo ms':>9} {'naive ms':>9} {'speed-up':>9} {'zoo MiB':>9} {'naive MiB':>10} "
          f"{'scores MiB':>10} {'mem ratio':>9}  NxN allocated by zoo?  naive heads at once")
    cases = []
    for n in args.lengths:
        group = naive_group(n, args.heads, args.naive_budget_gib)
        results = {}
        for impl in ("zoo", "naive"):
            out = subprocess.run([sys.executable, __file__, "--one", impl, str(n), str(group), "--heads",
                                  str(args.heads), "--head-dim", str(args.head_dim), "--repeats", str(args.repeats)],
                                 capture_output=True, text=True, check=True)
            results[impl] = json.loads(out.stdout.strip().splitlines()[-1])
        z, r = results["zoo"], results["naive"]
        nxn = args.heads * n * n * 4 / 2**20  # the (1, H, N, N) fp32 score matrix naive attention holds
        memory_ratio = r["peak_mib"] / max(z["peak_mib"], 0.1)
        print(f"{n:>6} {z['seconds'] * 1e3:>9.1f} {r['seconds'] * 1e3:>9.1f} {r['seconds'] / z['seconds']:>8.2f}x "
              f"{z['peak_mib']:>9.1f} {r['peak_mib']:>10.1f} {nxn:>10.1f} {memory_ratio:>8.1f}x"
              f"  {'yes' if z['peak_mib'] >= nxn else 'no':<21} {group}")
        shape = f"causal attention, N={n:,}, {args.heads} heads x {args.head_dim}"
        naive_note = "" if group == args.heads else f" (naive: {group} heads at a time)"
        cases.append({"case": f"{shape}: time", "zoo": z["seconds"] * 1e3, "peer": r["seconds"] * 1e3,
                      "unit": "ms", "ratio": r["seconds"] / z["seconds"]})
        cases.append({"case": f"{shape}: peak memory{naive_note}", "zoo": z["peak_mib"], "peer": r["peak_mib"],
                      "unit": "MiB", "ratio": memory_ratio,
                      "target": MEMORY_TARGET if n == MEMORY_TARGET_LENGTH else None})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(cases, f, indent=2)


if __name__ == "__main__":
    main()
