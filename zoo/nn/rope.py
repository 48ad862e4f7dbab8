"""Rotary position embeddings (RoPE; Su et al., 2021, "RoFormer"), 1-D and 2-D axial.

RoPE rotates each pair of query/key channels by an angle proportional to the token's position m:
q' = W_m q with W_m block-diagonal 2x2 rotations by m * theta_i, theta_i = base^(-2i/d). Because W_m is
orthogonal, (W_m q)^T (W_n k) = q^T W_(n-m) k: attention scores depend only on the offset n - m, and
norms are preserved (the lecture's identity; tests/test_nn.py checks both).

We pair channel i with channel i + d/2 ("rotate_half", as GPT-NeoX and Hugging Face Llama do) rather than
with channel i+1 as in the paper's matrix: the same rotation up to a fixed permutation of the head
dimensions, and it needs no strided views.

2-D axial RoPE (for image patches, e.g. Heo et al., 2024 "Rotary Position Embedding for ViT") gives half
of the rotation pairs the patch's row and the other half its column, so the score depends on the
(row, column) offset between two patches.

RoPE scaling stretches a trained model's context by slowing the rotations (RopeScaling): "linear" divides
every frequency by `factor` (position interpolation; Chen et al., 2023), "llama3" divides only the low
frequencies, whose wavelengths exceed the original context, keeps the high ones and blends in between (Meta's
Llama 3.1; transformers' `_compute_llama3_parameters`).
"""

import math
from dataclasses import dataclass

import torch
from torch import nn

from zoo.errors import InputError

POSITIONS = ("rope", "rope2d", "none")
ROPE_SCALINGS = ("none", "linear", "llama3")


@dataclass
class RopeScaling:
    kind: str = "none"  # none | linear | llama3
    factor: float = 1.0  # how many times longer than the original context
    low_freq_factor: float = 1.0  # llama3: wavelengths above original_max_seq_len / low_freq_factor are divided
    high_freq_factor: float = 4.0  # llama3: wavelengths below original_max_seq_len / high_freq_factor are kept
    original_max_seq_len: int = 8192  # llama3: the context the model was first trained with

    def __post_init__(self):
        if self.kind not in ROPE_SCALINGS:
            raise InputError(f"RopeScaling.kind={self.kind!r}; allowed: {', '.join(ROPE_SCALINGS)}")
        if not self.factor > 0:
            raise InputError(f"RopeScaling.factor must be > 0, got {self.factor}")
        if self.kind == "llama3" and not (self.high_freq_factor > self.low_freq_factor > 0
                                          and self.original_max_seq_len >= 1):
            raise InputError(f"llama3 RoPE scaling needs high_freq_factor > low_freq_factor > 0 and "
                             f"original_max_seq_len >= 1, got {self.high_freq_factor}, {self.low_freq_factor}, "
                             f"{self.original_max_seq_len}")


def scale_frequencies(inv_freq: torch.Tensor, scaling: RopeScaling) -> torch.Tensor:
    """The rotation frequencies after RoPE scaling (see the module docstring)."""
    if scaling.kind == "linear":
        return inv_freq / scaling.factor
    if scaling.kind == "llama3":
        s = scaling
        wavelength = 2 * math.pi / inv_freq
        # 0 where the wavelength exceeds original / low_freq_factor (divide by factor), 1 below original /
        # high_freq_factor (keep), linear in the original context / wavelength ratio between the two
        keep = ((s.original_max_seq_len / wavelength - s.low_freq_factor)
                / (s.high_freq_factor - s.low_freq_factor)).clamp(0, 1)
        return (1 - keep) * inv_freq / s.factor + keep * inv_freq
    return inv_freq


class RotaryEmbedding(nn.Module):
    """Turns integer positions into the (cos, sin) tables that `apply_rotary` uses."""

    def __init__(self, head_dim: int, theta: float = 10000.0, axes: int = 1, scaling: RopeScaling | None = None):
        super().__init__()
        if head_dim % (2 * axes):
            raise InputError(f"head_dim={head_dim} must be divisible by {2 * axes} for {axes}-D RoPE")
        self.axes = axes
        pairs_per_axis = head_dim // (2 * axes)
        exponent = torch.arange(pairs_per_axis, dtype=torch.float32) / pairs_per_axis
        # Non-persistent: derived from the config, so it never lands in a checkpoint.
        inv_freq = scale_frequencies(theta ** -exponent, scaling or RopeScaling())
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """positions: (..., T) for 1-D or (..., T, 2) as (row, column) for 2-D. Returns cos, sin (..., T, d/2)."""
        if self.axes == 1:
            angles = positions.float()[..., None] * self.inv_freq  # (..., T, d/2)
        else:
            if positions.shape[-1] != 2:
                raise InputError(f"2-D RoPE needs positions of shape (..., T, 2), got {tuple(positions.shape)}")
            angles = torch.cat([positions[..., 0:1].float() * self.inv_freq,
                                positions[..., 1:2].float() * self.inv_freq], dim=-1)  # (..., T, d/2)
        return angles.cos(), angles.sin()  # (..., T, d/2): pair i and i + d/2 share an angle


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The rotation itself, out of place: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin), both halves written
    straight into one output (no cat), four elementwise kernels in all."""
    x1, x2 = x.chunk(2, dim=-1)
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    out1, out2 = out.chunk(2, dim=-1)
    torch.mul(x1, cos, out=out1).addcmul_(x2, sin, value=-1)
    torch.mul(x2, cos, out=out2).addcmul_(x1, sin)
    return out


class _Rotary(torch.autograd.Function):
    """RoPE with a hand-written backward: a rotation's inverse is its transpose, the rotation by -angle, so the
    gradient is rotate(grad, cos, -sin). Autograd of the plain formula would keep x, replay four multiplies
    and a split/cat; this keeps only the (T, d/2) tables."""

    @staticmethod
    def forward(ctx, x, cos, sin):
        ctx.save_for_backward(cos, sin)
        return rotate(x, cos, sin)

    @staticmethod
    def backward(ctx, grad):
        cos, sin = ctx.saved_tensors
        return rotate(grad, cos, -sin), None, None


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x_i, x_{i+d/2}) by its angle. x: (B, T, H, d), token-major as the QKV projection
    leaves it, so queries and keys rotate in one call before the heads are transposed; cos/sin: (T, d/2) or
    (B, T, d/2) from RotaryEmbedding, shared by every head.

    Computed in fp32 (angles of long contexts need it), returned in x's dtype.
    """
    cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)  # (..., T, 1, d/2): broadcast over heads
    if x.dtype in (torch.float32, torch.float64):
        x_, cos, sin = x, cos.to(x.dtype), sin.to(x.dtype)
    else:
        x_ = x.float()
    if torch.compiler.is_compiling():  # the compiler fuses the formula into one kernel by itself
        x1, x2 = x_.chunk(2, dim=-1)
        out = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
    elif torch.is_grad_enabled() and x.requires_grad:
        out = _Rotary.apply(x_, cos, sin)
    else:  # inference: no autograd.Function machinery
        out = rotate(x_, cos, sin)
    return out.to(x.dtype)


def grid_positions(height: int, width: int, device=None) -> torch.Tensor:
    """(height*width, 2) row-major (row, column) positions of a patch grid, for 2-D RoPE."""
    rows, cols = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device),
                                indexing="ij")
    return torch.stack([rows.flatten(), cols.flatten()], dim=-1)
