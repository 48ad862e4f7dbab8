"""zoo.nn against Hugging Face `transformers` reference models, random weights, no download.

A tiny Llama (RoPE, SwiGLU, RMSNorm, GQA) and a tiny Gemma (GeGLU with tanh-GELU, (1 + w) RMSNorm,
sqrt(dim)-scaled embeddings, tied head) are built from configs; their weights are mapped onto a zoo.nn
stack plus an embedding and a head, and the logits must agree to 1e-4 in fp32.
"""

import math

import torch
from torch import nn
from transformers import GemmaConfig, GemmaForCausalLM, LlamaConfig, LlamaForCausalLM

from zoo.nn import Transformer, TransformerConfig


class LM(nn.Module):
    """Embedding + zoo.nn.Transformer + head: the smallest causal LM on the backbone."""

    def __init__(self, config: TransformerConfig, vocab_size: int, embed_scale: float = 1.0):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, config.dim)
        self.backbone = Transformer(config)
        self.head = nn.Linear(config.dim, vocab_size, bias=False)
        self.embed_scale = embed_scale

    def forward(self, idx, mask=None):
        return self.head(self.backbone(self.embed(idx) * self.embed_scale, mask=mask))


def load_hf_weights(lm: LM, hf_model, norm_offset: float = 0.0):
    """Map HF Llama-style names onto zoo.nn: q/k/v fuse into qkv, gate/up fuse into gate_up."""
    sd = hf_model.state_dict()
    ours = {"embed.weight": sd["model.embed_tokens.weight"],
            "backbone.norm.weight": sd["model.norm.weight"] + norm_offset,
            "head.weight": sd.get("lm_head.weight", sd["model.embed_tokens.weight"])}
    for i in range(len(lm.backbone.blocks)):
        p, q = f"model.layers.{i}.", f"backbone.blocks.{i}."
        a = p + "self_attn."
        ours[q + "attn.qkv.weight"] = torch.cat([sd[a + "q_proj.weight"], sd[a + "k_proj.weight"],
                                                 sd[a + "v_proj.weight"]])
        ours[q + "attn.proj.weight"] = sd[a + "o_proj.weight"]
        ours[q + "mlp.gate_up.weight"] = torch.cat([sd[p + "mlp.gate_proj.weight"], sd[p + "mlp.up_proj.weight"]])
        ours[q + "mlp.down.weight"] = sd[p + "mlp.down_proj.weight"]
        ours[q + "attn_norm.weight"] = sd[p + "input_layernorm.weight"] + norm_offset
        ours[q + "mlp_norm.weight"] = sd[p + "post_attention_layernorm.weight"] + norm_offset
    lm.load_state_dict(ours, strict=True)


def randomize(model):
    # HF initialises norm weights to 1 (Llama) or 0 (Gemma): perturb everything so the mapping is tested.
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)


def test_llama_parity_rope_swiglu_rmsnorm_gqa():
    torch.manual_seed(0)
    hf_config = LlamaConfig(vocab_size=97, hidden_size=64, intermediate_size=160, num_hidden_layers=3,
                            num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=64,
                            rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False,
                            attention_bias=False, mlp_bias=False)
    hf = LlamaForCausalLM(hf_config).eval()
    randomize(hf)
    lm = LM(TransformerConfig(dim=64, n_layers=3, n_heads=8, n_kv_heads=2, mlp="swiglu", hidden_dim=160,
                              norm="rmsnorm", norm_eps=1e-6, max_seq_len=64), vocab_size=97).eval()
    load_hf_weights(lm, hf)
    idx = torch.randint(0, 97, (2, 37))
    with torch.no_grad():
        expected = hf(idx).logits
        got = lm(idx)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    # Left-padded batch: HF with attention_mask and position_ids equals zoo with a key-padding mask.
    mask = torch.ones(2, 37, dtype=torch.long)
    mask[1, :10] = 0
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        expected = hf(idx, attention_mask=mask, position_ids=position_ids).logits
        got = lm(idx, mask=mask.bool())
    torch.testing.assert_close(got[mask.bool()], expected[mask.bool()], atol=1e-4, rtol=1e-4)


def test_gemma_parity_geglu():
    torch.manual_seed(0)
    hf_config = GemmaConfig(vocab_size=101, hidden_size=48, intermediate_size=128, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=1, head_dim=16, max_position_embeddings=64,
                            rms_norm_eps=1e-6, hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True)
    hf = GemmaForCausalLM(hf_config).eval()
    randomize(hf)
    config = TransformerConfig(dim=48, n_layers=2, n_heads=4, n_kv_heads=1, head_dim=16, mlp="geglu",
                               hidden_dim=128, gelu_approximate="tanh", norm="rmsnorm", norm_eps=1e-6,
                               max_seq_len=64)
    lm = LM(config, vocab_size=101, embed_scale=math.sqrt(48)).eval()
    load_hf_weights(lm, hf, norm_offset=1.0)  # Gemma's RMSNorm scales by (1 + w)
    idx = torch.randint(0, 101, (3, 29))
    with torch.no_grad():
        expected = hf(idx).logits
        got = lm(idx)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
