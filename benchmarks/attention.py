"""zoo attention (SDPA, fused) vs naive softmax(QK^T/sqrt(d))V: time and peak memory, CPU, causal.

    python benchmarks/attention.py [--lengths 512 1024 2048 4096 8192] [--heads 8] [--head-dim 64]

Each (implementation, length) runs in its own process so peak RSS is clean; peak memory is reported as
the growth over the inputs. The naive path holds the N x N scores per head; the fused path must not.
"""

import argparse
import json
import math
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F


def naive(q, k, v):
    N = q.shape[-2]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, N, N): the matrix FlashAttention avoids
    causal = torch.ones(N, N, dtype=torch.bool).tril()
    return scores.masked_fill(~causal, float("-inf")).softmax(dim=-1) @ v


def fused(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)  # what zoo.nn.Attention calls


def run_one(impl: str, n: int, heads: int, head_dim: int, repeats: int) -> dict:
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, heads, n, head_dim) for _ in range(3))
    fn = fused if impl == "zoo" else naive
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
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 1024, 2048, 4096, 8192])
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", nargs=2, metavar=("IMPL", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], int(args.one[1]), args.heads, args.head_dim, args.repeats)))
        return

    print(f"causal attention, batch 1, {args.heads} heads x {args.head_dim}, fp32, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'N':>6} {'zoo ms':>9} {'naive ms':>9} {'speed-up':>9} {'zoo MiB':>9} {'naive MiB':>10} "
          f"{'scores MiB':>10} {'mem ratio':>9}  NxN allocated by zoo?")
    for n in args.lengths:
        results = {}
        for impl in ("zoo", "naive"):
            out = subprocess.run([sys.executable, __file__, "--one", impl, str(n), "--heads", str(args.heads),
                                  "--head-dim", str(args.head_dim), "--repeats", str(args.repeats)],
                                 capture_output=True, text=True, check=True)
            results[impl] = json.loads(out.stdout.strip().splitlines()[-1])
        z, r = results["zoo"], results["naive"]
        nxn = args.heads * n * n * 4 / 2**20  # the (1, H, N, N) fp32 score matrix naive attention holds
        print(f"{n:>6} {z['seconds'] * 1e3:>9.1f} {r['seconds'] * 1e3:>9.1f} {r['seconds'] / z['seconds']:>8.2f}x "
              f"{z['peak_mib']:>9.1f} {r['peak_mib']:>10.1f} {nxn:>10.1f} "
              f"{r['peak_mib'] / max(z['peak_mib'], 0.1):>8.1f}x"
              f"  {'yes' if z['peak_mib'] >= nxn else 'no'}")


if __name__ == "__main__":
    main()
