"""Multi-head attention through `scaled_dot_product_attention`, with GQA and a preallocated KV cache.

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V        (Vaswani et al., 2017, eq. 1)

PyTorch's SDPA dispatches to fused kernels (FlashAttention-2 / memory-efficient on GPU, a fused
flash-style kernel on CPU) that never hold the N x N score matrix: they tile Q, K, V and keep a running
max and sum for the softmax (Dao et al., 2022), the lecture's "Flash Attention" slide.

Grouped-query attention (Ainslie et al., 2023): n_kv_heads < n_heads key/value heads, each shared by a
group of query heads; n_kv_heads = 1 is multi-query attention (Shazeer, 2019). SDPA's `enable_gqa`
handles the sharing without copying K/V per query head.
"""

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import InputError
from zoo.nn.rope import apply_rotary


class KVCache:
    """Preallocated keys/values of one layer (gpt-fast style): decoding writes in place, never concatenates.

    `cross_kv` holds the cross-attention keys/values, computed once from the context (Whisper's
    audio features, a text prompt) and reused for every generated token.
    """

    def __init__(self, batch: int, max_len: int, n_kv_heads: int, head_dim: int, dtype, device):
        self.k = torch.zeros(batch, n_kv_heads, max_len, head_dim, dtype=dtype, device=device)
        self.v = torch.zeros_like(self.k)
        self.cross_kv: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(self, start: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        end = start + k.shape[2]
        if end > self.k.shape[2]:
            raise InputError(f"KV cache overflow: {end} positions needed, cache holds {self.k.shape[2]}")
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]


class Attention(nn.Module):
    """Self-attention (fused QKV projection) or cross-attention (queries from x, keys/values from context)."""

    def __init__(self, dim: int, n_heads: int, n_kv_heads: int, head_dim: int, bias: bool = False,
                 dropout: float = 0.0, cross: bool = False, context_dim: int | None = None,
                 qkv_bias: bool | None = None):
        """bias: on every projection; qkv_bias (None: as bias) overrides it for the query/key/value ones."""
        super().__init__()
        if n_heads % n_kv_heads:
            raise InputError(f"n_heads={n_heads} must be a multiple of n_kv_heads={n_kv_heads}")
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        self.cross = cross
        self.dropout = dropout
        q_dim, kv_dim = n_heads * head_dim, n_kv_heads * head_dim
        qkv_bias = bias if qkv_bias is None else qkv_bias
        if cross:
            self.q = nn.Linear(dim, q_dim, bias=qkv_bias)
            self.kv = nn.Linear(context_dim or dim, 2 * kv_dim, bias=qkv_bias)
        else:
            self.qkv = nn.Linear(dim, q_dim + 2 * kv_dim, bias=qkv_bias)
        self.proj = nn.Linear(q_dim, dim, bias=bias)

    def _heads(self, x: torch.Tensor, n_heads: int) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, n_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                mask: torch.Tensor | None = None, is_causal: bool = False, cache: KVCache | None = None,
                start: int = 0, context: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, T, dim). mask: boolean, True = may attend, broadcastable to (B, nh, T, S).

        Self-attention with `cache` writes this chunk's K/V at positions [start, start + T) and attends
        over everything cached so far. Cross-attention with `cache` computes the context K/V once.
        """
        B, T, _ = x.shape
        q_dim, kv_dim = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        if self.cross:
            q = self._heads(self.q(x), self.n_heads)
            if cache is not None and cache.cross_kv is not None:
                k, v = cache.cross_kv
            else:
                k, v = self.kv(context).split([kv_dim, kv_dim], dim=-1)
                k, v = self._heads(k, self.n_kv_heads), self._heads(v, self.n_kv_heads)
                if cache is not None:
                    cache.cross_kv = (k, v)
        else:
            qk, v = self.qkv(x).split([q_dim + kv_dim, kv_dim], dim=-1)
            qk = qk.view(B, T, self.n_heads + self.n_kv_heads, self.head_dim)
            if rope is not None:
                qk = apply_rotary(qk, *rope)  # queries and keys in one call, before the head transpose
            q, k = qk.split([self.n_heads, self.n_kv_heads], dim=2)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), self._heads(v, self.n_kv_heads)  # (B, nh, T, hs)
            if cache is not None:
                k, v = cache.update(start, k, v)

        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=is_causal, dropout_p=self.dropout if self.training else 0.0,
            enable_gqa=self.n_kv_heads != self.n_heads)  # (B, nh, T, hs)
        return self.proj(y.transpose(1, 2).reshape(B, T, q_dim))
