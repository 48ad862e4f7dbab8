"""Position-wise feed-forward networks.

GeGLU (Shazeer, 2020, "GLU Variants Improve Transformer", eq. 6), the lecture's
    FFN_GeGLU(x; W1, V, W2) = (GELU(x W1) * x V) W2,
SwiGLU (same paper; Llama) with SiLU in place of GELU, and the classic GELU MLP of GPT-2/BERT.
The gated variants keep parameters equal to a 4*dim GELU MLP when hidden = 8/3 * dim.
"""

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import InputError

MLPS = ("geglu", "swiglu", "gelu")


class GatedMLP(nn.Module):
    """(act(x W1) * x V) W2. W1 and V are fused into one matmul (`gate_up`) for speed."""

    def __init__(self, dim: int, hidden_dim: int, activation: str, bias: bool = False,
                 gelu_approximate: str = "tanh"):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.gate_up = nn.Linear(dim, 2 * hidden_dim, bias=bias)  # rows [0:h] = W1 (gate), [h:2h] = V
        self.down = nn.Linear(hidden_dim, dim, bias=bias)  # W2
        if activation == "gelu":
            # The lecture's GELU is the tanh approximation (Hendrycks & Gimpel, 2016); so is Gemma's.
            self.act = lambda t: F.gelu(t, approximate=gelu_approximate)
        elif activation == "silu":
            self.act = F.silu
        else:
            raise InputError(f"unknown gate activation {activation!r}; allowed: gelu, silu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(self.act(gate) * up)


class GeluMLP(nn.Module):
    """GPT-2's MLP: Linear -> GELU -> Linear."""

    def __init__(self, dim: int, hidden_dim: int, bias: bool = True, gelu_approximate: str = "tanh"):
        super().__init__()
        self.up = nn.Linear(dim, hidden_dim, bias=bias)
        self.down = nn.Linear(hidden_dim, dim, bias=bias)
        self.gelu_approximate = gelu_approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x), approximate=self.gelu_approximate))


def make_mlp(kind: str, dim: int, hidden_dim: int, bias: bool, gelu_approximate: str = "tanh") -> nn.Module:
    if kind == "geglu":
        return GatedMLP(dim, hidden_dim, "gelu", bias, gelu_approximate)
    if kind == "swiglu":
        return GatedMLP(dim, hidden_dim, "silu", bias)
    if kind == "gelu":
        return GeluMLP(dim, hidden_dim, bias, gelu_approximate)
    raise InputError(f"unknown mlp {kind!r}; allowed: {', '.join(MLPS)}")
