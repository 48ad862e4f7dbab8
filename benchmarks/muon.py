"""Muon's optimizer step on the dit-shapes denoiser: Newton-Schulz iterations in bf16 vs in fp32, CPU.

    python benchmarks/muon.py [--threads 2] [--rounds 5] [--quick] [--json PATH]

`train.optimizer=muon` (zoo.train.trainer.MuonWithAdamW) orthogonalises each hidden matrix's momentum by five
quintic Newton-Schulz iterations (Jordan et al., 2024). On a device with bf16 units zoo runs them in bf16, torch's
own `Muon`, as the reference implementation does; on one without them, in fp32 (`Fp32Muon`), since bf16 matrix
products there fall back to reference kernels. This times one step of the Muon half of the optimizer built for the
9.1M dit-shapes denoiser (its 2-D weights outside the embeddings and heads, random gradients) both ways, and one
fused AdamW step over the same weights, the cost Muon adds to. zoo's figure is the variant MuonWithAdamW picks on
this machine; the peer is the other one. Interleaved rounds, the best counts (benchmarks/timing.py).
--quick: one round (a smoke run). --json PATH: the case for benchmarks/run_all.py (ratio > 1: zoo ahead).
"""

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import interleaved  # noqa: E402

from zoo.models import build_model  # noqa: E402
from zoo.registry import split_decay  # noqa: E402
from zoo.train.strategy import has_bf16_units  # noqa: E402
from zoo.train.trainer import Fp32Muon, MuonWithAdamW  # noqa: E402


def hidden_matrices() -> list[torch.nn.Parameter]:
    """The parameters MuonWithAdamW gives Muon for the dit-shapes denoiser, each with a random gradient."""
    torch.manual_seed(0)
    model = build_model("dit-shapes")
    named = list(model.named_parameters())
    optimizer, _ = MuonWithAdamW.build(split_decay(named, 0.0), [1.0, 1.0], named, model, lr=1e-3,
                                       betas=(0.9, 0.95))
    params = [p for group in optimizer.optimizers["muon"].param_groups for p in group["params"]]
    for p in params:
        p.grad = torch.randn_like(p)
    return params


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one round (a smoke run)")
    parser.add_argument("--json", metavar="PATH", help="write the case to PATH")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rounds = 1 if args.quick else args.rounds

    params = hidden_matrices()
    shapes = {tuple(p.shape) for p in params}
    bf16_units = has_bf16_units(torch.device("cpu"))
    print(f"torch {torch.__version__}, {args.threads} thread(s), bf16 units: {bf16_units}; dit-shapes: "
          f"{len(params)} hidden matrices ({sum(p.numel() for p in params) / 1e6:.2f}M weights), "
          f"shapes {sorted(shapes)}")
    steppers = {
        "bf16 (torch.optim.Muon)": torch.optim.Muon(params, lr=1e-3, adjust_lr_fn="match_rms_adamw"),
        "fp32 (zoo Fp32Muon)": Fp32Muon(params, lr=1e-3, adjust_lr_fn="match_rms_adamw"),
        "AdamW (fused), for scale": torch.optim.AdamW(params, lr=1e-3, fused=True),
    }
    with torch.no_grad():
        seconds = interleaved({name: opt.step for name, opt in steppers.items()}, rounds=rounds, warmup=True)
    for name, s in seconds.items():
        print(f"{name:<28} {s * 1e3:8.1f} ms a step")
    zoo_name, peer_name = ("bf16 (torch.optim.Muon)", "fp32 (zoo Fp32Muon)")[::1 if bf16_units else -1]
    ratio = seconds[peer_name] / seconds[zoo_name]
    print(f"zoo's choice here, {zoo_name}: {ratio:.2f}x the other ({peer_name}); a Muon step costs "
          f"{seconds[zoo_name] / seconds['AdamW (fused), for scale']:.1f}x an AdamW step")
    if args.json:
        case = {"case": f"Muon step, dit-shapes' {len(params)} hidden matrices: Newton-Schulz in "
                        f"{zoo_name.split()[0]} (zoo's choice, bf16 units: {bf16_units}; peer: "
                        f"{peer_name.split()[0]})",
                "zoo": seconds[zoo_name] * 1e3, "peer": seconds[peer_name] * 1e3, "unit": "ms", "ratio": ratio}
        Path(args.json).write_text(json.dumps([case], indent=2))


if __name__ == "__main__":
    main()
