"""zoo.nn: the shared Transformer backbone (no family-specific code lives here)."""

from zoo.nn.attention import Attention, KVCache
from zoo.nn.mlp import GatedMLP, GeluMLP, make_mlp
from zoo.nn.norm import LayerNorm, RMSNorm, make_norm
from zoo.nn.rope import RopeScaling, RotaryEmbedding, apply_rotary, grid_positions
from zoo.nn.transformer import Block, Cache, Transformer, TransformerConfig, transformer_flops_per_token

__all__ = ["Attention", "Block", "Cache", "GatedMLP", "GeluMLP", "KVCache", "LayerNorm", "RMSNorm",
           "RopeScaling", "RotaryEmbedding", "Transformer", "TransformerConfig", "apply_rotary", "grid_positions",
           "make_mlp", "make_norm", "transformer_flops_per_token"]
