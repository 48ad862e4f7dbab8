"""Timing shared by the benchmarks: interleaved rounds, the best round counts."""

import math
import time

import torch


def sync(device):
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize()


def interleaved(fns: dict, rounds: int, per_round: int = 1, device=None, warmup: bool = False) -> dict:
    """Seconds per call of each function: rounds alternate between them, so a busy machine slows all of them
    alike; the best round (least disturbed) counts, as timeit recommends. warmup: one untimed call each first."""
    if warmup:
        for fn in fns.values():
            fn()
    best = dict.fromkeys(fns, math.inf)
    for _ in range(rounds):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            for _ in range(per_round):
                fn()
            sync(device)
            best[name] = min(best[name], (time.perf_counter() - start) / per_round)
    return best
