"""Normalisation layers: RMSNorm (Zhang & Sennrich, 2019) and LayerNorm (Ba et al., 2016).

RMSNorm drops LayerNorm's mean-centring and bias: y = x / sqrt(mean(x^2) + eps) * g. It is what
Llama, Gemma and most post-2022 LLMs use; LayerNorm stays for GPT-2/Whisper-style models.
"""

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import InputError

NORMS = ("rmsnorm", "layernorm")


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6, affine: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in fp32 even under autocast: the mean of squares overflows/underflows in fp16.
        y = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype)
        return y * self.weight if self.weight is not None else y


class LayerNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5, affine: bool = True, bias: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None
        self.bias = nn.Parameter(torch.zeros(dim)) if affine and bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)


def make_norm(kind: str, dim: int, eps: float, bias: bool = False, affine: bool = True) -> nn.Module:
    if kind == "rmsnorm":
        return RMSNorm(dim, eps, affine)
    if kind == "layernorm":
        return LayerNorm(dim, eps, affine, bias)
    raise InputError(f"unknown norm {kind!r}; allowed: {', '.join(NORMS)}")
