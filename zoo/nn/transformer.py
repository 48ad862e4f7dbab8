"""The shared Transformer backbone: TransformerConfig -> Block -> Transformer.

One pre-norm block (Xiong et al., 2020) serves every family, as Whisper's ResidualAttentionBlock does:
    x = x + SelfAttention(Norm(x))           causal (GPT, Whisper decoder) or bidirectional
    x = x + CrossAttention(Norm(x), context) optional (Whisper decoder, text-conditioned DiT)
    x = x + MLP(Norm(x))                      GeGLU by default
With adaLN-Zero (Peebles & Xie, 2023, "DiT", sec. 3.2) a conditioning vector c regresses a shift, scale
and gate per branch: x = x + gate * Branch(Norm(x) * (1 + scale) + shift); the regression is initialised
to zero so every block starts as the identity.

`Transformer.forward` maps (B, T, dim) -> (B, T, dim); embeddings and heads belong to the families.
"""

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from zoo.errors import InputError
from zoo.nn.attention import Attention, KVCache
from zoo.nn.mlp import MLPS, make_mlp
from zoo.nn.norm import NORMS, make_norm
from zoo.nn.rope import POSITIONS, RopeScaling, RotaryEmbedding


@dataclass
class TransformerConfig:
    dim: int = 256
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int | None = None  # None = n_heads (MHA); 1 = MQA; in between = GQA
    head_dim: int | None = None  # None = dim // n_heads
    mlp: str = "geglu"  # geglu | swiglu | gelu
    hidden_dim: int | None = None  # None = mlp_ratio * dim
    mlp_ratio: float | None = None  # None = 4 for gelu; 8/3 rounded up to a multiple of 64 for gated MLPs
    gelu_approximate: str = "tanh"  # "tanh" (the lecture's formula, GPT-2, Gemma) or "none" (exact erf)
    norm: str = "rmsnorm"  # rmsnorm | layernorm
    norm_eps: float = 1e-6
    bias: bool = False
    qkv_bias: bool | None = None  # None = bias; True with bias=False: Qwen2's biased q/k/v, unbiased output
    dropout: float = 0.0  # on the embeddings' sum and each branch's output (residual dropout)
    attention_dropout: float | None = None  # on the attention probabilities; None = dropout. 0 keeps SDPA on its
    # fused CPU kernel, which takes no dropout (README: what attention dropout costs a step)
    positions: str = "rope"  # rope | rope2d | none
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling = field(default_factory=RopeScaling)  # context extension (zoo/nn/rope.py)
    causal: bool = True
    cross_attention: bool = False
    context_dim: int | None = None  # None = dim
    adaln: bool = False  # adaLN-Zero conditioning (DiT)
    cond_dim: int | None = None  # None = dim
    final_norm: bool = True
    max_seq_len: int = 1024

    def __post_init__(self):
        for name, value, allowed in (("mlp", self.mlp, MLPS), ("norm", self.norm, NORMS),
                                     ("positions", self.positions, POSITIONS)):
            if value not in allowed:
                raise InputError(f"TransformerConfig.{name}={value!r}; allowed: {', '.join(allowed)}")
        for name in ("dim", "n_layers", "n_heads", "max_seq_len"):
            if getattr(self, name) < 1:
                raise InputError(f"TransformerConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.head_dim is None and self.dim % self.n_heads:
            raise InputError(f"dim={self.dim} is not divisible by n_heads={self.n_heads}; set head_dim")
        if self.n_heads % self.kv_heads:
            raise InputError(f"n_heads={self.n_heads} must be a multiple of n_kv_heads={self.n_kv_heads}")
        if self.hidden_dim is not None and self.hidden_dim < 1 or self.mlp_ratio is not None and self.mlp_ratio <= 0:
            raise InputError(f"TransformerConfig.hidden_dim must be None or >= 1 and mlp_ratio None or > 0, got "
                             f"hidden_dim={self.hidden_dim}, mlp_ratio={self.mlp_ratio}")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"TransformerConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.attention_dropout is not None and not 0.0 <= self.attention_dropout < 1.0:
            raise InputError(f"TransformerConfig.attention_dropout must be in [0, 1) or None (= dropout), got "
                             f"{self.attention_dropout}")

    @property
    def attn_dropout(self) -> float:
        return self.dropout if self.attention_dropout is None else self.attention_dropout

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def head_size(self) -> int:
        return self.head_dim or self.dim // self.n_heads

    @property
    def mlp_hidden(self) -> int:
        if self.hidden_dim:
            return self.hidden_dim
        if self.mlp_ratio:
            return max(1, round(self.mlp_ratio * self.dim))
        if self.mlp == "gelu":
            return 4 * self.dim
        return 64 * math.ceil(8 * self.dim / 3 / 64)  # parameter-matched to 4*dim (Shazeer, 2020)


def transformer_flops_per_token(n_params: int, n_layers: int, dim: int, seq_len: int) -> float:
    """Training FLOPs per token (Chowdhery et al., 2022, "PaLM", appendix B): 6N for the weights (forward 2N,
    backward 4N) plus 12 * L * d * T for the attention scores over a context of T tokens."""
    return 6 * n_params + 12 * n_layers * dim * seq_len


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class Block(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        c = config
        self.attn_norm = make_norm(c.norm, c.dim, c.norm_eps, c.bias)
        self.attn = Attention(c.dim, c.n_heads, c.kv_heads, c.head_size, c.bias, c.attn_dropout, qkv_bias=c.qkv_bias)
        if c.cross_attention:
            self.cross_norm = make_norm(c.norm, c.dim, c.norm_eps, c.bias)
            self.cross_attn = Attention(c.dim, c.n_heads, c.kv_heads, c.head_size, c.bias, c.attn_dropout,
                                        cross=True, context_dim=c.context_dim or c.dim, qkv_bias=c.qkv_bias)
        self.mlp_norm = make_norm(c.norm, c.dim, c.norm_eps, c.bias)
        self.mlp = make_mlp(c.mlp, c.dim, c.mlp_hidden, c.bias, c.gelu_approximate)
        self.dropout = nn.Dropout(c.dropout)
        # adaLN-Zero: shift, scale, gate for the attention and the MLP branches.
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(c.cond_dim or c.dim, 6 * c.dim)) if c.adaln else None

    def forward(self, x: torch.Tensor, rope=None, mask=None, is_causal=False, cache: KVCache | None = None,
                start: int = 0, context=None, context_mask=None, cond=None) -> torch.Tensor:
        if self.modulation is not None:
            shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.modulation(cond).chunk(6, dim=-1)
            h = modulate(self.attn_norm(x), shift_a, scale_a)
            x = x + gate_a[:, None] * self.dropout(self.attn(h, rope, mask, is_causal, cache, start))
        else:
            x = x + self.dropout(self.attn(self.attn_norm(x), rope, mask, is_causal, cache, start))
        if hasattr(self, "cross_attn"):
            x = x + self.dropout(self.cross_attn(self.cross_norm(x), mask=context_mask, cache=cache, context=context))
        if self.modulation is not None:
            x = x + gate_m[:, None] * self.dropout(self.mlp(modulate(self.mlp_norm(x), shift_m, scale_m)))
        else:
            x = x + self.dropout(self.mlp(self.mlp_norm(x)))
        return x


class Cache:
    """KV caches of every layer plus what incremental decoding must remember between calls:
    how many positions are filled, which of them are real tokens (left padding), each row's next
    RoPE position (rows with different amounts of padding sit at different positions), and the padding
    mask of the cross-attention context (kept from the call that gave the context, as its keys/values are)."""

    def __init__(self, config: TransformerConfig, batch: int, max_len: int, dtype, device):
        self.layers = [KVCache(batch, max_len, config.kv_heads, config.head_size, dtype, device)
                       for _ in range(config.n_layers)]
        self.length = 0
        self.valid = torch.ones(batch, max_len, dtype=torch.bool, device=device)
        self.has_padding = False
        self.next_position = torch.zeros(batch, dtype=torch.long, device=device)
        self.context_mask: torch.Tensor | None = None  # (B, S) True for real context positions

    @property
    def max_len(self) -> int:
        return self.valid.shape[1]

    def reorder(self, indices: torch.Tensor, same_context: bool = False):
        """Row i of the cache becomes old row indices[i], in every layer's keys/values, cross-attention
        keys/values, padding mask and RoPE positions: beam search keeps the caches of the beams it selects
        (rows may repeat or vanish, and len(indices) may differ from the batch, e.g. to give each prompt
        beam_size rows after one prefill). same_context: the caller knows that every row's source has the
        row's own context (a beam moves only among its prompt's beams), so the cross-attention keys/values,
        the largest part of a speech decoder's cache, stay where they are instead of being copied."""
        indices = indices.to(self.valid.device)
        same_batch = len(indices) == self.valid.shape[0]
        if same_context and not same_batch:
            raise InputError(f"reorder(same_context=True) keeps the rows' contexts, so it needs one index per row "
                             f"({self.valid.shape[0]}), got {len(indices)}")
        for layer in self.layers:
            if same_batch:  # the per-step case: copy only the filled prefix, in place (later positions are
                # rewritten before they are read)
                for t in (layer.k, layer.v):
                    t[:, :, :self.length] = t[:, :, :self.length].index_select(0, indices)
            else:
                layer.k, layer.v = layer.k.index_select(0, indices), layer.v.index_select(0, indices)
            if layer.cross_kv is not None and not same_context:
                layer.cross_kv = tuple(t.index_select(0, indices) for t in layer.cross_kv)
        self.valid = self.valid.index_select(0, indices)
        self.next_position = self.next_position.index_select(0, indices)
        if self.context_mask is not None and not same_context:
            self.context_mask = self.context_mask.index_select(0, indices)


class Transformer(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = make_norm(config.norm, config.dim, config.norm_eps, config.bias) if config.final_norm else None
        self.rope = None
        if config.positions != "none":
            axes = 2 if config.positions == "rope2d" else 1
            self.rope = RotaryEmbedding(config.head_size, config.rope_theta, axes, config.rope_scaling)
        self.init_weights()

    def init_weights(self):
        """GPT-2 init: N(0, 0.02), residual output projections scaled by 1/sqrt(2 * n_layers); adaLN-Zero."""
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layers)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                is_residual = name.endswith(("attn.proj", "mlp.down"))
                nn.init.normal_(module.weight, std=residual_std if is_residual else 0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for block in self.blocks:
            if block.modulation is not None:
                nn.init.zeros_(block.modulation[-1].weight)
                nn.init.zeros_(block.modulation[-1].bias)

    def make_cache(self, batch: int, max_len: int | None = None, dtype=None, device=None) -> Cache:
        param = next(self.parameters())
        return Cache(self.config, batch, max_len or self.config.max_seq_len, dtype or param.dtype,
                     device or param.device)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, positions: torch.Tensor | None = None,
                cache: Cache | None = None, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None, cond: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, T, dim) -> (B, T, dim).

        mask: (B, T) bool, True for real tokens, False for padding (keys that must not be attended).
        positions: (B, T) or (T,) RoPE positions; (T, 2) / (B, T, 2) for rope2d. By default each row
            counts its real tokens, so a left-padded row gets the same positions as the unpadded one.
        cache: decode incrementally; x holds only the new tokens, `mask` only their padding.
        context, context_mask: (B, S, context_dim) and (B, S) for cross-attention. With a cache, both are given
            once (at prefill): the cache keeps the context's keys/values and its mask for the later steps.
        cond: (B, cond_dim) for adaLN conditioning.
        """
        B, T, _ = x.shape
        c = self.config
        start = cache.length if cache is not None else 0
        if start + T > (cache.max_len if cache is not None else c.max_seq_len):
            raise InputError(f"sequence of {start + T} positions exceeds the limit of "
                             f"{cache.max_len if cache is not None else c.max_seq_len} (max_seq_len)")
        if c.cross_attention and context is None and not (cache is not None and cache.layers[0].cross_kv):
            raise InputError("this Transformer has cross-attention: pass context=(B, S, context_dim)")
        if c.adaln and cond is None:
            raise InputError("this Transformer uses adaLN conditioning: pass cond=(B, cond_dim)")

        if mask is not None and mask.shape != (B, T):
            raise InputError(f"mask must have shape (B, T) = {(B, T)}, got {tuple(mask.shape)}")
        valid = mask if mask is not None else None
        if cache is not None:
            if mask is not None:
                cache.valid[:, start:start + T] = mask
                cache.has_padding = cache.has_padding or not bool(mask.all())
            valid = cache.valid[:, :start + T] if cache.has_padding else None

        rope = None
        if self.rope is not None:
            if positions is None:
                if c.positions == "rope2d":
                    raise InputError("rope2d needs explicit positions of shape (T, 2); see zoo.nn.grid_positions")
                positions = self.default_positions(B, T, mask, cache, x.device)
            rope = self.rope(positions)

        attn_mask, is_causal = self._attention_mask(T, start, valid, x.device)
        if cache is not None:  # the context's mask comes with the context, then serves every later step
            if context is not None:
                cache.context_mask = context_mask
            elif context_mask is None:
                context_mask = cache.context_mask
        if context_mask is not None:
            context_mask = context_mask[:, None, None, :]  # (B, 1, 1, S): broadcast over heads and queries
        for i, block in enumerate(self.blocks):
            x = block(x, rope, attn_mask, is_causal, cache.layers[i] if cache is not None else None, start,
                      context, context_mask, cond)
        if cache is not None:
            cache.length += T
        return self.norm(x) if self.norm is not None else x

    def default_positions(self, B: int, T: int, mask: torch.Tensor | None, cache: Cache | None,
                          device) -> torch.Tensor:
        """Each row's positions for T new tokens: a left-padded row counts only its real tokens, so it gets the
        positions of the unpadded prompt; with a cache, each row continues from its own next position (and this
        call advances it, so call it once per forward)."""
        if cache is None and mask is None:
            return torch.arange(T, device=device)
        real = mask.long() if mask is not None else torch.ones(B, T, dtype=torch.long, device=device)
        offset = cache.next_position[:, None] if cache is not None else 0
        positions = (offset + real.cumsum(dim=1) - 1).clamp(min=0)
        if cache is not None:
            cache.next_position += real.sum(dim=1)
        return positions

    def _attention_mask(self, T: int, start: int, valid: torch.Tensor | None, device):
        """Boolean (B, 1, T, start+T) mask, or None with is_causal, choosing SDPA's fastest legal path."""
        causal = self.config.causal
        if valid is None:
            if not causal or (start > 0 and T == 1):
                return None, False  # attend to everything (a single new token sees all of the past)
            if start == 0:
                return None, True  # SDPA's built-in causal mask: no mask tensor at all
        q_pos = torch.arange(start, start + T, device=device)[:, None]
        k_pos = torch.arange(start + T, device=device)[None, :]
        allowed = (k_pos <= q_pos) if causal else torch.ones(T, start + T, dtype=torch.bool, device=device)
        allowed = allowed[None, None]
        if valid is not None:
            # A query always sees itself, so a row of pure padding never becomes an all -inf softmax (NaN).
            allowed = (allowed & valid[:, None, None, :]) | (k_pos == q_pos)[None, None]
        return allowed, False
