"""Hugging Face text checkpoints in and out (zoo/text/hf.py, zoo/interop.py), random weights, no download.

Generation through zoo.text.generate (the checkpoint's own tokenizer, KV cache, left-padded batches) against
transformers' generate(); a zoo-trained GPT exported as a Llama folder that transformers loads; LoRA on an
imported model through the trainer; the error messages; and the memory a large checkpoint takes to load.
Logit parity per architecture: tests/test_parity_hf.py, whose helpers build the reference models.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

import zoo
from tests.test_parity_hf import BOS, CONFIGS, EOS, VOCAB, assert_same_logits, hf_checkpoint
from zoo.cli import main as zoo_cli
from zoo.errors import CorruptFileError, InputError, MissingFileError
from zoo.interop import export_hf
from zoo.text.generate import GenerationOptions, generate
from zoo.text.tokenizer import CharTokenizer
from zoo.train import train
from zoo.train.lora import apply_lora

PROMPTS = ["the model learns to", "def f(x):\n    return x"]
TOKENIZER_TEXT = (["the model learns to predict the next token from the tokens before it"] * 20
                  + ["def f(x):\n    return x + 1\n"] * 20)


# ----------------------------------------------------------------------------------------------------------
# tokenizer files as the Hub has them


def byte_level_bpe(specials: list[str], qwen2: bool = False) -> Tokenizer:
    """A small byte-level BPE (GPT-2, Llama 3, Qwen2 all are), `specials` at ids 0, 1, ...; with `qwen2`, Qwen2's
    own normalizer and pre-tokenizer (transformers 5's Qwen2Tokenizer puts them in place of the file's)."""
    pipeline = Tokenizer(models.BPE())
    pipeline.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if qwen2:
        from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

        pipeline.normalizer = normalizers.NFC()
        pipeline.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    pipeline.decoder = decoders.ByteLevel()
    pipeline.train_from_iterator(TOKENIZER_TEXT, trainers.BpeTrainer(
        vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    return pipeline


def write_tokenizer(arch: str, folder: Path):
    """GPT-2: vocab.json + merges.txt, <|endoftext|> = 0. The others: tokenizer.json with <unk> <s> </s> = 0 1 2,
    its post-processor starting every text with <s> (as Llama's and Gemma's do; Qwen2 starts with nothing)."""
    if arch == "gpt2":
        byte_level_bpe(["<|endoftext|>"]).model.save(str(folder))
        return
    pipeline = byte_level_bpe(["<unk>", "<s>", "</s>"], qwen2=arch == "qwen2")
    if arch != "qwen2":
        pipeline.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", BOS)])
    pipeline.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>"}))


def until_eos(tokens: list[int], eos: int) -> list[int]:
    return tokens[:tokens.index(eos) + 1] if eos in tokens else tokens


# ----------------------------------------------------------------------------------------------------------
# generation


@pytest.mark.parametrize("arch", ["gpt2", "llama_gqa", "qwen2", "gemma"])
def test_greedy_generation_matches_transformers(arch, tmp_path):
    """32 greedy tokens per prompt: zoo's batch (left-padded, KV-cached) = zoo one prompt at a time =
    transformers' generate() one at a time = transformers' left-padded batch; prompts tokenized alike."""
    hf = hf_checkpoint(CONFIGS[arch](), tmp_path)
    write_tokenizer(arch, tmp_path)
    gpt = zoo.load(tmp_path).eval()
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path)
    hf_tokenizer.pad_token = hf_tokenizer.convert_ids_to_tokens(0)  # any id: left padding is masked
    eos = hf.generation_config.eos_token_id
    assert gpt.tokenizer.eot_id == eos and gpt.tokenizer.bos_id == (None if arch in ("gpt2", "qwen2") else BOS)

    options = GenerationOptions(max_new_tokens=32, temperature=0)
    batch = generate(gpt, PROMPTS, options)
    encoded = hf_tokenizer(PROMPTS, return_tensors="pt", padding=True, padding_side="left")
    with torch.no_grad():
        hf_batch = hf.generate(**encoded, max_new_tokens=32, do_sample=False, pad_token_id=eos)
    for row, (prompt, result) in enumerate(zip(PROMPTS, batch)):
        ids = hf_tokenizer(prompt, return_tensors="pt").input_ids
        assert ids[0].tolist() == [*([gpt.tokenizer.bos_id] if gpt.tokenizer.bos_id is not None else []),
                                   *gpt.tokenizer.encode(prompt)]
        with torch.no_grad():
            alone = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=32, do_sample=False,
                                pad_token_id=eos)[0, ids.shape[1]:].tolist()
        assert result.tokens == until_eos(alone, eos) == generate(gpt, prompt, options).tokens
        assert result.tokens == until_eos(hf_batch[row, encoded.input_ids.shape[1]:].tolist(), eos)
        assert result.text == gpt.tokenizer.decode(result.tokens)


def test_imported_tokenizer_keeps_text_as_text_and_saves_with_the_model(tmp_path):
    hf_checkpoint(CONFIGS["llama_gqa"](), tmp_path / "hf")
    write_tokenizer("llama_gqa", tmp_path / "hf")
    gpt = zoo.load(tmp_path / "hf").eval()
    tokenizer = gpt.tokenizer
    text = "def f(x): <s> and </s> stay text"
    ids = tokenizer.encode(text)
    assert BOS not in ids and EOS not in ids and tokenizer.decode(ids) == text
    assert tokenizer.decode([BOS, *ids, EOS]) == text  # special tokens are not text
    with pytest.raises(InputError, match="out of range"):
        tokenizer.decode([tokenizer.vocab_size])

    gpt.save_pretrained(tmp_path / "zoo")  # zoo's own directory, the tokenizer as its extra
    again = zoo.load(tmp_path / "zoo").eval()
    assert (again.tokenizer.kind, again.tokenizer.eot_id, again.tokenizer.bos_id) == ("pretrained", EOS, BOS)
    assert again.tokenizer.encode(text) == ids
    idx = torch.tensor([ids])
    torch.testing.assert_close(again(idx), gpt(idx), atol=0, rtol=0)


def test_gpt2_tokenizer_needs_both_of_its_files(tmp_path):
    hf_checkpoint(CONFIGS["gpt2"](), tmp_path)
    write_tokenizer("gpt2", tmp_path)
    assert zoo.load(tmp_path).tokenizer.encode("the model") == byte_level_bpe(["<|endoftext|>"]).encode(
        "the model").ids
    (tmp_path / "merges.txt").unlink()
    with pytest.raises(MissingFileError, match="merges.txt"):
        zoo.load(tmp_path)


# ----------------------------------------------------------------------------------------------------------
# export


TRAIN_TINY = ["data.tokenizer=bpe", "data.vocab_size=300", "data.code_samples=0", "model.backbone.n_layers=2",
              "model.backbone.dim=64", "model.backbone.n_heads=4", "model.backbone.n_kv_heads=2",
              "model.backbone.max_seq_len=32", "train.batch_size=4", "train.eval_every=0", "train.warmup=1",
              "train.tensorboard=false"]


def test_zoo_trained_gpt_exports_as_a_llama_folder_transformers_loads(tmp_path, corpus):
    train("gpt-nano", out=tmp_path / "run", data=str(corpus), steps=3, sets=TRAIN_TINY)
    gpt = zoo.load(tmp_path / "run").eval()
    assert zoo_cli(["export", str(tmp_path / "run"), "--to", "hf", str(tmp_path / "hf")]) == 0

    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert type(hf).__name__ == "LlamaForCausalLM" and hf.config.hidden_act == "gelu_pytorch_tanh"  # GeGLU
    idx = torch.randint(0, gpt.config.vocab_size, (2, 32), generator=torch.Generator().manual_seed(0))
    assert_same_logits(gpt, hf, idx)
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    text = "def f(x):\n    return x + 1  # <|endoftext|>?"
    assert hf_tokenizer("def f(x):\n    return x")["input_ids"] == gpt.tokenizer.encode("def f(x):\n    return x")
    assert hf_tokenizer.eos_token_id == hf.config.eos_token_id == gpt.tokenizer.eot_id
    assert hf_tokenizer.decode(gpt.tokenizer.encode(text)) == text

    back = zoo.load(tmp_path / "hf").eval()  # and the folder reads back into the same GPT
    torch.testing.assert_close(back(idx), gpt(idx), atol=1e-5, rtol=1e-5)
    assert back.tokenizer.encode(text) == gpt.tokenizer.encode(text)


def test_imported_qwen2_exports_as_llama_with_attention_biases(tmp_path):
    """SwiGLU, tied head, q/k/v biases: Llama's attention_bias also biases o_proj, so it is written as zeros."""
    qwen2 = hf_checkpoint(CONFIGS["qwen2"](), tmp_path / "qwen2")
    export_hf(zoo.load(tmp_path / "qwen2"), tmp_path / "llama")
    llama = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "llama").eval()
    assert llama.config.attention_bias and llama.config.hidden_act == "silu" and llama.config.tie_word_embeddings
    idx = torch.randint(0, VOCAB, (2, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(llama(idx).logits, qwen2(idx).logits, atol=1e-4, rtol=1e-4)


def test_char_level_swiglu_gpt_exports_too(tmp_path):
    gpt = zoo.load("gpt-nano", vocab_size=40, tie_embeddings=False,
                   backbone={"n_layers": 2, "dim": 64, "mlp": "swiglu", "max_seq_len": 32}).eval()
    gpt.tokenizer = CharTokenizer.train("def f(x):\n    return x + 1  # the model")
    export_hf(gpt, tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert hf.config.hidden_act == "silu" and not hf.config.tie_word_embeddings
    assert_same_logits(gpt, hf, torch.randint(0, 40, (2, 32), generator=torch.Generator().manual_seed(0)))
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    text = "def f(x):\n  return 1"
    assert hf_tokenizer(text)["input_ids"] == gpt.tokenizer.encode(text)
    assert hf_tokenizer.decode(gpt.tokenizer.encode(text)) == text


@pytest.mark.parametrize("arch, reasons", [("gpt2", "layernorm.*ungated GELU.*learned position"),
                                           ("gemma", "scaled token embeddings")])
def test_export_refuses_what_llama_cannot_express(arch, reasons, tmp_path):
    hf_checkpoint(CONFIGS[arch](), tmp_path / "in")
    with pytest.raises(InputError, match=f"cannot be written as a Llama checkpoint: it has {reasons}"):
        export_hf(zoo.load(tmp_path / "in"), tmp_path / "out")


# ----------------------------------------------------------------------------------------------------------
# what is refused, and how it says so


def edit_config(folder: Path, **changes):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))


def test_errors_name_what_is_wrong(tmp_path):
    folder = tmp_path / "llama"
    hf_checkpoint(CONFIGS["llama_gqa"](), folder, shard=True)

    edit_config(folder, model_type="bert")
    with pytest.raises(InputError, match=r"'bert' .* not one zoo reads; supported: .*gemma, gpt2, llama, mistral"):
        zoo.load(folder)
    edit_config(folder, model_type="llama", rope_parameters={"rope_type": "yarn", "factor": 4.0})
    with pytest.raises(InputError, match="RoPE scaling 'yarn' is not in zoo.nn; supported: default, linear, llama3"):
        zoo.load(folder)
    edit_config(folder, rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, intermediate_size=192)
    with pytest.raises(CorruptFileError, match=r"tensor model.layers.0.mlp.gate_proj.weight has shape \(160, 64\); "
                                               r"the model its config.json describes needs \(192, 64\)"):
        zoo.load(folder)
    with pytest.raises(InputError, match=r"needs \(192, 64\) \(with the overrides"):  # the caller's overrides
        zoo.load(tmp_path / "llama", backbone={"hidden_dim": 192})
    edit_config(folder, intermediate_size=160)
    shard = sorted(folder.glob("model-*.safetensors"))[-1]
    shard.unlink()
    with pytest.raises(MissingFileError, match=shard.name):
        zoo.load(folder)


# ----------------------------------------------------------------------------------------------------------
# fine-tuning an imported model


def test_lora_fine_tunes_an_imported_llama_through_the_trainer(tmp_path, corpus):
    """`zoo train gpt-nano --set train.init_from=HF_FOLDER --lora r=8,alpha=16`: the model and its tokenizer come
    from the folder; the adapter is saved, and the merged model equals the base with the adapter."""
    base_dir = tmp_path / "llama"
    hf_checkpoint(CONFIGS["llama_gqa"](), base_dir)
    write_tokenizer("llama_gqa", base_dir)
    train("gpt-nano", out=tmp_path / "lora", data=str(corpus), steps=3, lora="r=8,alpha=16",
          sets=[f"train.init_from={base_dir}", "data.seq_len=32", "data.code_samples=0", "train.batch_size=4",
                "train.eval_every=0", "train.warmup=1", "train.lr=1e-2", "train.tensorboard=false"])
    from peft import set_peft_model_state_dict

    merged = zoo.load(tmp_path / "lora").eval()
    base = zoo.load(base_dir).eval()
    adapted = apply_lora(zoo.load(base_dir), "r=8,alpha=16")
    set_peft_model_state_dict(adapted, load_file(tmp_path / "lora" / "adapter" / "adapter_model.safetensors"))
    idx = torch.tensor([merged.tokenizer.encode("the model learns to predict the next token")])
    with torch.no_grad():
        assert not torch.allclose(merged(idx), base(idx), atol=1e-4)  # the fine-tune changed the model
        torch.testing.assert_close(merged(idx), adapted.eval()(idx), atol=1e-5, rtol=1e-5)
    assert merged.tokenizer.kind == "pretrained" and merged.tokenizer.bos_id == BOS


# ----------------------------------------------------------------------------------------------------------
# memory


MEASURE_LOAD = """
import json, resource, sys
import zoo
from zoo.registry import import_families

import_families()
zoo.load(sys.argv[2])  # the first load (imports, torch's first kernels) is not the one measured

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()

def peak():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))

try:  # reset the peak to the present (Linux >= 4.0); else the peak since start is an upper bound
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    pass
before = rss()
model = zoo.load(sys.argv[1])
print(json.dumps({"before": before, "peak": peak(),
                  "weights": sum(p.numel() * p.element_size() for p in model.parameters())}))
"""


def test_loading_a_large_checkpoint_peaks_near_its_weight_size(tmp_path):
    """A ~430 MB fp32 Llama-style folder in two shards, loaded in a child process: its peak memory over what it
    held before is at most 1.2x the weights (q/k/v and gate/up are fused as they are read, not copied)."""
    hf_checkpoint(CONFIGS["llama_gqa"](), tmp_path / "small")
    folder = tmp_path / "large"
    folder.mkdir()
    D, F, L, V, Q, KV = 1024, 2816, 8, 8192, 1024, 256
    shapes = {"model.embed_tokens.weight": (V, D), "lm_head.weight": (V, D), "model.norm.weight": (D,)}
    for i in range(L):
        p = f"model.layers.{i}."
        shapes |= {p + "self_attn.q_proj.weight": (Q, D), p + "self_attn.k_proj.weight": (KV, D),
                   p + "self_attn.v_proj.weight": (KV, D), p + "self_attn.o_proj.weight": (D, Q),
                   p + "mlp.gate_proj.weight": (F, D), p + "mlp.up_proj.weight": (F, D),
                   p + "mlp.down_proj.weight": (D, F), p + "input_layernorm.weight": (D,),
                   p + "post_attention_layernorm.weight": (D,)}
    names = sorted(shapes)
    weight_map = {}
    for shard, part in enumerate((names[:len(names) // 2], names[len(names) // 2:])):
        file = f"model-{shard + 1:05d}-of-00002.safetensors"
        save_file({name: torch.zeros(shapes[name]) for name in part}, str(folder / file), metadata={"format": "pt"})
        weight_map |= dict.fromkeys(part, file)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps(
        {"model_type": "llama", "vocab_size": V, "hidden_size": D, "intermediate_size": F, "num_hidden_layers": L,
         "num_attention_heads": 16, "num_key_value_heads": 4, "max_position_embeddings": 1024,
         "tie_word_embeddings": False}))

    result = subprocess.run([sys.executable, "-c", MEASURE_LOAD, str(folder), str(tmp_path / "small")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["weights"] > 400e6
    ratio = (measured["peak"] - measured["before"]) / measured["weights"]
    assert ratio <= 1.2, measured
