"""zoo's GPT against Hugging Face `transformers` reference models, random weights, no download.

Tiny GPT-2 (learned positions, LayerNorm, GELU MLP, biases), Llama (RoPE, SwiGLU, RMSNorm, GQA), Qwen2 (q/k/v
biases), Mistral (sliding window) and Gemma (GeGLU with tanh-GELU, (1 + w) RMSNorm, sqrt(dim)-scaled embeddings,
tied head) models are built from configs, perturbed, saved with save_pretrained and read back with zoo.load (the
converter in zoo/text/hf.py); the logits must agree to 1e-4 in fp32, unpadded and left-padded.
The helpers here also serve tests/test_hf_text.py.
"""

from pathlib import Path

import pytest
import torch
import transformers

import zoo

VOCAB = 320  # room for the test tokenizers (tests/test_hf_text.py) and their special tokens
BOS, EOS = 1, 2

CONFIGS = {
    "gpt2": lambda: transformers.GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=64,
                                            bos_token_id=0, eos_token_id=0),
    "llama_gqa": lambda: transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=160, num_hidden_layers=3, num_attention_heads=8,
        num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6, tie_word_embeddings=False,
        bos_token_id=BOS, eos_token_id=EOS),
    "qwen2": lambda: transformers.Qwen2Config(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=True, bos_token_id=None,
        eos_token_id=EOS),
    "mistral": lambda: transformers.MistralConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=1, max_position_embeddings=128, sliding_window=48, bos_token_id=BOS, eos_token_id=EOS),
    "gemma": lambda: transformers.GemmaConfig(
        vocab_size=VOCAB, hidden_size=48, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=1, head_dim=16, max_position_embeddings=64, rms_norm_eps=1e-6,
        hidden_activation="gelu_pytorch_tanh", bos_token_id=BOS, eos_token_id=EOS, pad_token_id=0),
}


def randomize(model: torch.nn.Module) -> torch.nn.Module:
    # HF initialises norm weights to 1 (Llama) or 0 (Gemma) and biases to 0: perturb everything, so that every
    # tensor's place in the mapping is tested.
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def hf_checkpoint(config: transformers.PretrainedConfig, folder: Path, shard: bool = False):
    """A perturbed random transformers model of `config`, saved into `folder` (in shards with an index if asked)."""
    torch.manual_seed(0)
    model = randomize(transformers.AutoModelForCausalLM.from_config(config))
    model.save_pretrained(folder, **({"max_shard_size": "100KB"} if shard else {}))
    return model


def assert_same_logits(zoo_model, hf_model, idx, mask=None) -> float:
    """zoo's logits against transformers' (left padding: the HF model gets each row's positions, as its
    generate() derives them); returns the largest difference."""
    hf_kwargs = {}
    if mask is not None:
        hf_kwargs = {"attention_mask": mask.long(), "position_ids": (mask.long().cumsum(-1) - 1).clamp(min=0)}
    with torch.no_grad():
        expected = hf_model(idx, **hf_kwargs).logits
        got = zoo_model(idx, mask=mask)
    real = mask if mask is not None else torch.ones(idx.shape, dtype=torch.bool)
    torch.testing.assert_close(got[real], expected[real], atol=1e-4, rtol=1e-4)
    return (got[real] - expected[real]).abs().max().item()


@pytest.mark.parametrize("arch", list(CONFIGS))
def test_logits_match_transformers(arch, tmp_path):
    hf = hf_checkpoint(CONFIGS[arch](), tmp_path, shard=arch == "llama_gqa")
    if arch == "llama_gqa":
        assert (tmp_path / "model.safetensors.index.json").is_file()  # read across shards
    gpt = zoo.load(tmp_path).eval()
    idx = torch.randint(0, VOCAB, (2, 37), generator=torch.Generator().manual_seed(0))
    assert_same_logits(gpt, hf, idx)
    mask = torch.ones(2, 37, dtype=torch.bool)
    mask[1, :10] = False  # row 1 is a 27-token prompt, left-padded
    assert_same_logits(gpt, hf, idx, mask)


def test_mistral_context_is_capped_at_its_sliding_window(tmp_path):
    """Inside the window every key is visible, so the capped model is exact (zoo.nn has no sliding window)."""
    hf_checkpoint(CONFIGS["mistral"](), tmp_path)
    assert zoo.load(tmp_path).max_seq_len == 48


@pytest.mark.parametrize("scaling", [{"rope_type": "linear", "factor": 4.0},
                                     {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0, "original_max_position_embeddings": 16}])
def test_rope_scaling_matches_transformers(scaling, tmp_path):
    config = CONFIGS["llama_gqa"]()
    config.max_position_embeddings = 128
    # 4.x spelling; transformers 5 turns it into rope_parameters
    config = transformers.LlamaConfig(**{**config.to_dict(), "rope_parameters": None, "rope_theta": 500000.0,
                                         "rope_scaling": scaling})
    hf = hf_checkpoint(config, tmp_path)
    gpt = zoo.load(tmp_path).eval()
    assert gpt.config.backbone.rope_scaling.kind == scaling["rope_type"]
    idx = torch.randint(0, VOCAB, (1, 100), generator=torch.Generator().manual_seed(0))
    assert_same_logits(gpt, hf, idx)  # 100 positions: far past the llama3 original context of 16
