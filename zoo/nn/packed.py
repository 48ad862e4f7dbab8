"""CPU inference on prepacked weights: every nn.Linear multiplies through oneDNN with its weight reordered once.

Decoding feeds one token per sequence through every weight matrix per step, so the matmuls are matrix-vector
products bound by reading the weights. torch's default CPU path (MKL sgemm on the row-major (out, in)
weight) streams them at about 10 GB/s on the 2-core machines this project targets, a third of what memory
delivers; oneDNN's blocked layout, reordered once, streams them at about 30 GB/s (`python
benchmarks/text.py --only generate` prints both). torch.compile's CPU backend does the same reordering when
it freezes weights; `prepacked_linears` does it in eager mode, for the length of a `with` block.

Inference only: the packed op has no autograd formula, so the block must run under torch.inference_mode()
or no_grad, and the weights must not change inside it (the packs are copies taken on entry, as much memory
again as the packed weights, for as long as the block lasts).
"""

import contextlib
import functools

import torch
from torch import nn


def can_prepack(module: nn.Module) -> bool:
    """A plain nn.Linear with a plain (not sharded) fp32/bf16 weight on the CPU, in a torch built with oneDNN
    (the x86 and Arm wheels)."""
    return (type(module) is nn.Linear and type(module.weight.data) is torch.Tensor
            and module.weight.device.type == "cpu" and module.weight.dtype in (torch.float32, torch.bfloat16)
            and torch.backends.mkldnn.is_available())


def _packed_linear(packed: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


@contextlib.contextmanager
def prepacked_linears(model: nn.Module, rows: int = 1):
    """Inside the block, the model's CPU nn.Linear layers multiply by oneDNN-packed copies of their weights.

    rows: the number of rows a call will usually carry (the batch size when decoding), oneDNN's layout hint.
    Modules that cannot be packed (GPU, other dtypes, sharded weights, subclasses such as quantized layers) are
    left as they are, and so is everything under CPU autocast (the packed op does not take part in it).
    """
    autocast = torch.is_autocast_enabled("cpu")
    packed = [module for module in model.modules() if can_prepack(module) and not autocast]
    try:
        with torch.no_grad():
            for module in packed:
                weight = torch.ops.mkldnn._reorder_linear_weight(module.weight.detach(), rows)
                # an instance attribute shadows the class's forward; deleting it restores nn.Linear.forward
                module.forward = functools.partial(_packed_linear, weight, module.bias)
        yield model
    finally:
        for module in packed:
            module.__dict__.pop("forward", None)
