"""Hugging Face text checkpoints as zoo GPTs, and zoo GPTs as Llama checkpoints (the gpt family's `Family.hf`).

    gpt = zoo.load("path/to/hf-folder")       # config.json + safetensors (+ tokenizer.json): a GPT with its tokenizer
    zoo export runs/my-gpt --to hf out/       # a folder transformers' AutoModelForCausalLM / AutoTokenizer load

What each format is on zoo's backbone (zoo.nn.TransformerConfig; zoo/text/gpt.py for the GPT options):
- GPT-2 (Radford et al., 2019): LayerNorm with biases, learned absolute positions (GPTConfig.learned_positions),
  a 4*dim GELU MLP, biases everywhere, tied head. Its Conv1D weights are stored (in, out): transposed on import.
- Llama / Mistral / Qwen2: RMSNorm, SwiGLU, RoPE (with "linear" or Llama 3.1's "llama3" scaling), GQA. Qwen2
  biases q/k/v but not the output projection (backbone.qkv_bias). zoo.nn pairs RoPE channels i and i + d/2, as
  Hugging Face's rotate_half does, so q/k rows need no permutation.
- Gemma (Gemma Team, 2024): GeGLU with tanh-GELU, embeddings scaled by sqrt(dim) (GPTConfig.embed_scale), tied
  head, and an RMSNorm that scales by (1 + w): the 1 is folded into the weight on import (w + 1, rounded once to
  the checkpoint's dtype), so the norm is zoo's plain RMSNorm.
q/k/v fuse into zoo's `qkv` and gate/up into `gate_up`, each read straight into its rows of the fused tensor
(zoo.interop.CheckpointTensors.cat), so no weight is ever held twice.

Mistral's sliding-window attention is not in zoo.nn: the context (max_seq_len) is capped at the window, inside
which every key is visible, so the model stays exact.

The tokenizer comes with the model (PretrainedTokenizer): tokenizer.json, or GPT-2's vocab.json + merges.txt.
"""

import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from zoo.checkpoint import read_json_object
from zoo.config import replace_config
from zoo.errors import CorruptFileError, InputError, MissingFileError
from zoo.interop import GELU_FORMS, CheckpointTensors, fill, parameters_on_meta, read_config
from zoo.nn import RopeScaling, TransformerConfig
from zoo.text.gpt import GPT, GPTConfig
from zoo.text.tokenizer import BPE_FILE, EOT_TEXT, BPETokenizer, CharTokenizer, PretrainedTokenizer, read_hf_tokenizer

GATED_MLPS = {"silu": ("swiglu", "tanh"), "swish": ("swiglu", "tanh"),
              **{name: ("geglu", form) for name, form in GELU_FORMS.items()}}
ROPE_TYPES = ("default", "linear", "llama3")
TIED_BY_DEFAULT = {"gpt2": True, "gemma": True}  # the transformers config classes' defaults


# ----------------------------------------------------------------------------------------------------------
# Import: config.json -> GPTConfig, safetensors -> the GPT's state dict


def load(directory: Path, **overrides) -> GPT:
    """The GPT of a Hugging Face folder, with its tokenizer (None when the folder has none); `overrides` change
    the GPTConfig the folder describes (e.g. backbone={"dropout": 0.1} to fine-tune with dropout)."""
    hf = read_config(directory)
    config = gpt_config(hf, directory)
    if overrides:
        config = replace_config(config, overrides)
    with parameters_on_meta():
        model = GPT(config)
    try:
        with CheckpointTensors(directory) as tensors:
            state = gpt2_state(tensors, config) if hf["model_type"] == "gpt2" else \
                llama_state(tensors, config, hf["model_type"])
    except CorruptFileError as error:
        if overrides:  # the mismatch is the caller's, not the file's
            raise InputError(f"{error} (with the overrides {overrides})") from None
        raise
    dtype = state["embed.weight"].dtype  # one dtype for the whole model, as transformers loads it
    fill(model, {name: t.to(dtype) if t.is_floating_point() else t for name, t in state.items()}, directory)
    model.tokenizer = read_tokenizer(directory, hf, config.vocab_size)
    return model


def gpt_config(hf: dict, directory: Path) -> GPTConfig:
    """The GPTConfig of a transformers config.json; a config zoo cannot represent exactly is refused, naming why."""
    try:
        return gpt2_config(hf) if hf["model_type"] == "gpt2" else llama_config(hf)
    except KeyError as error:
        raise CorruptFileError(f"{directory / 'config.json'} has no {error.args[0]!r}, which a "
                               f"{hf['model_type']} config needs") from None
    except InputError as error:  # a setting zoo.nn does not have, or values its configs refuse
        raise InputError(f"{directory / 'config.json'}: {error}") from None
    except (TypeError, AttributeError) as error:  # a value of the wrong type (a string for a width, ...)
        raise CorruptFileError(f"{directory / 'config.json'} is not a valid {hf['model_type']} config ({error})") \
            from None


def gpt2_config(hf: dict) -> GPTConfig:
    activation = hf.get("activation_function", "gelu_new")
    if activation not in GELU_FORMS:
        raise InputError(f"activation_function={activation!r}; zoo reads {', '.join(GELU_FORMS)}")
    if hf.get("scale_attn_by_inverse_layer_idx") or not hf.get("scale_attn_weights", True):
        raise InputError("GPT-2 attention scaled other than by 1/sqrt(head_dim) (scale_attn_weights, "
                         "scale_attn_by_inverse_layer_idx) is not in zoo.nn")
    if hf.get("add_cross_attention"):
        raise InputError("GPT-2 with cross-attention is an encoder-decoder part; zoo reads the language model")
    dim = hf["n_embd"]
    backbone = TransformerConfig(dim=dim, n_layers=hf["n_layer"], n_heads=hf["n_head"], mlp="gelu",
                                 hidden_dim=hf.get("n_inner") or 4 * dim, gelu_approximate=GELU_FORMS[activation],
                                 norm="layernorm", norm_eps=hf.get("layer_norm_epsilon", 1e-5), bias=True,
                                 positions="none", max_seq_len=hf.get("n_positions", 1024), causal=True)
    return GPTConfig(vocab_size=hf["vocab_size"], tie_embeddings=tied(hf), backbone=backbone, learned_positions=True)


def llama_config(hf: dict) -> GPTConfig:
    model_type = hf["model_type"]
    dim, n_heads = hf["hidden_size"], hf["num_attention_heads"]
    activation = hf.get("hidden_activation") or hf.get("hidden_act", "silu")  # Gemma's name for it comes first
    if activation not in GATED_MLPS:
        raise InputError(f"hidden_act={activation!r}; zoo's gated MLPs read {', '.join(GATED_MLPS)}")
    mlp, gelu_form = GATED_MLPS[activation]
    theta, scaling = rope_settings(hf)
    if model_type == "qwen2":
        bias, qkv_bias = False, True
    else:
        bias, qkv_bias = hf.get("attention_bias", False), None
        if hf.get("mlp_bias", False) != bias:
            raise InputError(f"attention_bias={bias} with mlp_bias={hf.get('mlp_bias')}: zoo.nn biases the "
                             f"attention output and the MLP alike")
    backbone = TransformerConfig(
        dim=dim, n_layers=hf["num_hidden_layers"], n_heads=n_heads,
        n_kv_heads=hf.get("num_key_value_heads") or n_heads, head_dim=hf.get("head_dim") or dim // n_heads,
        mlp=mlp, hidden_dim=hf["intermediate_size"], gelu_approximate=gelu_form, norm="rmsnorm",
        norm_eps=hf.get("rms_norm_eps", 1e-6), bias=bias, qkv_bias=qkv_bias, positions="rope", rope_theta=theta,
        rope_scaling=scaling, max_seq_len=context_length(hf), causal=True)
    return GPTConfig(vocab_size=hf["vocab_size"], tie_embeddings=tied(hf), backbone=backbone,
                     embed_scale=math.sqrt(dim) if model_type == "gemma" else 1.0)


def tied(hf: dict) -> bool:
    """Whether the head shares the embedding; a config.json written without the field means its class default."""
    return hf.get("tie_word_embeddings", TIED_BY_DEFAULT.get(hf["model_type"], False))


def rope_settings(hf: dict) -> tuple[float, RopeScaling]:
    """(theta, scaling) from transformers 5's `rope_parameters` or 4.x's `rope_theta` + `rope_scaling`."""
    params = hf.get("rope_parameters")
    if params is None:  # transformers 4.x
        params = {**(hf.get("rope_scaling") or {}), "rope_theta": hf.get("rope_theta", 10000.0)}
    kind = params.get("rope_type", params.get("type", "default"))
    if kind not in ROPE_TYPES:
        raise InputError(f"RoPE scaling {kind!r} is not in zoo.nn; supported: {', '.join(ROPE_TYPES)}")
    if params.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0)) != 1.0:
        raise InputError("partial rotary embeddings (partial_rotary_factor < 1) are not in zoo.nn")
    theta = params.get("rope_theta", 10000.0)
    if kind == "default":
        return theta, RopeScaling()
    if kind == "linear":
        return theta, RopeScaling("linear", factor=params["factor"])
    return theta, RopeScaling("llama3", factor=params["factor"], low_freq_factor=params["low_freq_factor"],
                              high_freq_factor=params["high_freq_factor"],
                              original_max_seq_len=params["original_max_position_embeddings"])


def context_length(hf: dict) -> int:
    length = hf.get("max_position_embeddings", 2048)
    uses_window = hf.get("use_sliding_window", True)  # Qwen2 has the field and leaves it off by default
    window = hf.get("sliding_window") if uses_window else None
    return min(length, window) if window else length


def gpt2_state(tensors: CheckpointTensors, config: GPTConfig) -> dict[str, torch.Tensor]:
    """GPT-2's tensors under zoo's names. Conv1D stores its weight as (in, out): transposed for nn.Linear."""
    b, V = config.backbone, config.vocab_size
    D, F = b.dim, b.mlp_hidden
    p = "transformer." if "transformer.wte.weight" in tensors else ""  # GPT2LMHeadModel's prefix, or GPT2Model

    def conv1d(name, fan_in, fan_out):
        return tensors.get(name, (fan_in, fan_out)).t().contiguous()

    state = {"embed.weight": tensors.get(p + "wte.weight", (V, D)),
             "pos_embed.weight": tensors.get(p + "wpe.weight", (b.max_seq_len, D)),
             "backbone.norm.weight": tensors.get(p + "ln_f.weight", (D,)),
             "backbone.norm.bias": tensors.get(p + "ln_f.bias", (D,))}
    for i in range(b.n_layers):
        src, dst = f"{p}h.{i}.", f"backbone.blocks.{i}."
        state |= {dst + "attn_norm.weight": tensors.get(src + "ln_1.weight", (D,)),
                  dst + "attn_norm.bias": tensors.get(src + "ln_1.bias", (D,)),
                  dst + "attn.qkv.weight": conv1d(src + "attn.c_attn.weight", D, 3 * D),
                  dst + "attn.qkv.bias": tensors.get(src + "attn.c_attn.bias", (3 * D,)),
                  dst + "attn.proj.weight": conv1d(src + "attn.c_proj.weight", D, D),
                  dst + "attn.proj.bias": tensors.get(src + "attn.c_proj.bias", (D,)),
                  dst + "mlp_norm.weight": tensors.get(src + "ln_2.weight", (D,)),
                  dst + "mlp_norm.bias": tensors.get(src + "ln_2.bias", (D,)),
                  dst + "mlp.up.weight": conv1d(src + "mlp.c_fc.weight", D, F),
                  dst + "mlp.up.bias": tensors.get(src + "mlp.c_fc.bias", (F,)),
                  dst + "mlp.down.weight": conv1d(src + "mlp.c_proj.weight", F, D),
                  dst + "mlp.down.bias": tensors.get(src + "mlp.c_proj.bias", (D,))}
    if not config.tie_embeddings:
        state["head.weight"] = tensors.get("lm_head.weight", (V, D))
    return state


def llama_state(tensors: CheckpointTensors, config: GPTConfig, model_type: str) -> dict[str, torch.Tensor]:
    """Llama-style tensors under zoo's names: q/k/v fused into qkv, gate/up into gate_up."""
    b, V = config.backbone, config.vocab_size
    D, F, Q, KV = b.dim, b.mlp_hidden, b.n_heads * b.head_size, b.kv_heads * b.head_size
    p = "model." if "model.embed_tokens.weight" in tensors else ""  # *ForCausalLM's prefix, or the bare model
    qkv_bias = b.bias if b.qkv_bias is None else b.qkv_bias

    def norm(name):
        weight = tensors.get(name, (D,))
        return (weight.float() + 1).to(weight.dtype) if model_type == "gemma" else weight  # Gemma's (1 + w)

    state = {"embed.weight": tensors.get(p + "embed_tokens.weight", (V, D)),
             "backbone.norm.weight": norm(p + "norm.weight")}
    for i in range(b.n_layers):
        src, dst = f"{p}layers.{i}.", f"backbone.blocks.{i}."
        attn, mlp = src + "self_attn.", src + "mlp."
        state |= {dst + "attn_norm.weight": norm(src + "input_layernorm.weight"),
                  dst + "mlp_norm.weight": norm(src + "post_attention_layernorm.weight"),
                  dst + "attn.qkv.weight": tensors.cat([(attn + "q_proj.weight", (Q, D)),
                                                        (attn + "k_proj.weight", (KV, D)),
                                                        (attn + "v_proj.weight", (KV, D))]),
                  dst + "attn.proj.weight": tensors.get(attn + "o_proj.weight", (D, Q)),
                  dst + "mlp.gate_up.weight": tensors.cat([(mlp + "gate_proj.weight", (F, D)),
                                                           (mlp + "up_proj.weight", (F, D))]),
                  dst + "mlp.down.weight": tensors.get(mlp + "down_proj.weight", (D, F))}
        if qkv_bias:
            state[dst + "attn.qkv.bias"] = tensors.cat([(attn + "q_proj.bias", (Q,)), (attn + "k_proj.bias", (KV,)),
                                                        (attn + "v_proj.bias", (KV,))])
        if b.bias:
            state |= {dst + "attn.proj.bias": tensors.get(attn + "o_proj.bias", (D,)),
                      dst + "mlp.gate_up.bias": tensors.cat([(mlp + "gate_proj.bias", (F,)),
                                                             (mlp + "up_proj.bias", (F,))]),
                      dst + "mlp.down.bias": tensors.get(mlp + "down_proj.bias", (D,))}
    if not config.tie_embeddings:
        state["head.weight"] = tensors.get("lm_head.weight", (V, D))
    return state


# ----------------------------------------------------------------------------------------------------------
# Export: a GPT as a Llama folder


def export(model: GPT, out: Path):
    """Write `model` as a Llama checkpoint (config.json, model.safetensors, and its tokenizer as tokenizer.json +
    tokenizer_config.json) that transformers' Auto classes load. Llama's MLP applies ACT2FN[hidden_act] to the
    gate, so GeGLU exports as "gelu_pytorch_tanh" (or "gelu") and SwiGLU as "silu"."""
    refuse_unexportable(model.config)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = model.tokenizer
    bos, eos = getattr(tokenizer, "bos_id", None), getattr(tokenizer, "eot_id", None)
    (out / "config.json").write_text(json.dumps(llama_config_dict(model, bos, eos), indent=2) + "\n")
    save_file(llama_tensors(model), str(out / "model.safetensors"), metadata={"format": "pt"})
    if tokenizer is not None:
        write_hf_tokenizer(tokenizer, out, model.max_seq_len)


def refuse_unexportable(config: GPTConfig):
    b = config.backbone
    problems = [problem for problem, present in (
        (f"{b.norm} (Llama normalises with RMSNorm)", b.norm != "rmsnorm"),
        ("an ungated GELU MLP (Llama's MLP is gated: mlp=swiglu or geglu)", b.mlp not in ("swiglu", "geglu")),
        (f"positions={b.positions!r} (Llama rotates queries and keys: rope)", b.positions != "rope"),
        ("learned position embeddings (Llama has RoPE only)", config.learned_positions),
        ("scaled token embeddings (embed_scale; Llama has none)", config.embed_scale != 1.0),
        ("no final norm (Llama has one)", not b.final_norm)) if present]
    if problems:
        raise InputError(f"this GPT cannot be written as a Llama checkpoint: it has {'; '.join(problems)}")


def llama_config_dict(model: GPT, bos: int | None, eos: int | None) -> dict:
    """transformers' LlamaConfig fields, in 4.x's spelling (rope_theta, rope_scaling), which 5.x still reads."""
    config, b = model.config, model.config.backbone
    activation = "silu" if b.mlp == "swiglu" else "gelu_pytorch_tanh" if b.gelu_approximate == "tanh" else "gelu"
    scaling = b.rope_scaling
    rope_scaling = None if scaling.kind == "none" else {"rope_type": scaling.kind, "factor": scaling.factor}
    if scaling.kind == "llama3":
        rope_scaling |= {"low_freq_factor": scaling.low_freq_factor, "high_freq_factor": scaling.high_freq_factor,
                         "original_max_position_embeddings": scaling.original_max_seq_len}
    qkv_bias = b.bias if b.qkv_bias is None else b.qkv_bias
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": config.vocab_size,
            "hidden_size": b.dim, "intermediate_size": b.mlp_hidden, "num_hidden_layers": b.n_layers,
            "num_attention_heads": b.n_heads, "num_key_value_heads": b.kv_heads, "head_dim": b.head_size,
            "hidden_act": activation, "max_position_embeddings": b.max_seq_len, "rms_norm_eps": b.norm_eps,
            "rope_theta": b.rope_theta, "rope_scaling": rope_scaling, "attention_bias": b.bias or qkv_bias,
            "mlp_bias": b.bias, "tie_word_embeddings": config.tie_embeddings, "bos_token_id": bos,
            "eos_token_id": eos, "pad_token_id": None,
            "torch_dtype": str(model.embed.weight.dtype).removeprefix("torch.")}


def llama_tensors(model: GPT) -> dict[str, torch.Tensor]:
    """The GPT's tensors under Llama's names; fused qkv / gate_up split back. Llama's attention_bias biases q, k, v
    and the output together, so a bias zoo does not have is written as zeros."""
    b = model.config.backbone
    Q, KV, F = b.n_heads * b.head_size, b.kv_heads * b.head_size, b.mlp_hidden
    state = {name: t.detach().cpu() for name, t in model.state_dict().items()}
    ours = {"model.embed_tokens.weight": state["embed.weight"], "model.norm.weight": state["backbone.norm.weight"]}
    if not model.config.tie_embeddings:
        ours["lm_head.weight"] = state["head.weight"]
    attention_bias = b.bias or bool(b.qkv_bias)
    zeros = torch.zeros(Q + 2 * KV, dtype=state["embed.weight"].dtype)
    for i in range(b.n_layers):
        src, dst = f"backbone.blocks.{i}.", f"model.layers.{i}."
        q, k, v = split(state[src + "attn.qkv.weight"], [Q, KV, KV])
        gate, up = split(state[src + "mlp.gate_up.weight"], [F, F])
        ours |= {dst + "input_layernorm.weight": state[src + "attn_norm.weight"],
                 dst + "post_attention_layernorm.weight": state[src + "mlp_norm.weight"],
                 dst + "self_attn.q_proj.weight": q, dst + "self_attn.k_proj.weight": k,
                 dst + "self_attn.v_proj.weight": v, dst + "self_attn.o_proj.weight": state[src + "attn.proj.weight"],
                 dst + "mlp.gate_proj.weight": gate, dst + "mlp.up_proj.weight": up,
                 dst + "mlp.down_proj.weight": state[src + "mlp.down.weight"]}
        if attention_bias:
            qkv = state.get(src + "attn.qkv.bias", zeros)
            ours |= dict(zip((dst + f"self_attn.{n}_proj.bias" for n in "qkv"), split(qkv, [Q, KV, KV])))
            ours[dst + "self_attn.o_proj.bias"] = state.get(src + "attn.proj.bias", zeros[:b.dim].clone())
        if b.bias:
            gate_b, up_b = split(state[src + "mlp.gate_up.bias"], [F, F])
            ours |= {dst + "mlp.gate_proj.bias": gate_b, dst + "mlp.up_proj.bias": up_b,
                     dst + "mlp.down_proj.bias": state[src + "mlp.down.bias"]}
    return ours


def split(fused: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    """The parts of a fused weight, as copies: safetensors refuses tensors that share memory."""
    return [part.clone() for part in fused.split(sizes)]


# ----------------------------------------------------------------------------------------------------------
# Tokenizers


def read_tokenizer(directory: Path, hf: dict, vocab_size: int) -> PretrainedTokenizer | None:
    """The tokenizer of a Hugging Face folder (`hf` its config.json, `vocab_size` its model's): tokenizer.json,
    else GPT-2's vocab.json + merges.txt; None when the folder has neither (the model loads without one)."""
    settings = _read_json(directory / "tokenizer_config.json")
    if (directory / BPE_FILE).is_file():
        pipeline = read_hf_tokenizer(directory / BPE_FILE)
    elif (directory / "vocab.json").is_file() or (directory / "merges.txt").is_file():
        pipeline = gpt2_pipeline(directory, settings)
    else:
        return None
    eot = first_id(_read_json(directory / "generation_config.json").get("eos_token_id"))
    eot = eot if eot is not None else first_id(hf.get("eos_token_id"))
    if eot is None and _token_text(settings.get("eos_token")):
        eot = pipeline.token_to_id(_token_text(settings["eos_token"]))
    try:
        return PretrainedTokenizer(pipeline, eot, leading_special(pipeline), vocab_size)
    except InputError as error:  # an end-of-sequence id past the vocabulary
        raise CorruptFileError(f"{directory}: the tokenizer does not fit the model: {error}") from None


def gpt2_pipeline(directory: Path, settings: dict) -> Tokenizer:
    """GPT-2's byte-level BPE from its vocab.json + merges.txt, its special tokens (<|endoftext|>) registered."""
    for name in ("vocab.json", "merges.txt"):
        if not (directory / name).is_file():
            raise MissingFileError(f"{directory / name} is missing: GPT-2's tokenizer is vocab.json + merges.txt "
                                   f"(or one tokenizer.json)")
    try:
        pipeline = Tokenizer(models.BPE.from_file(str(directory / "vocab.json"), str(directory / "merges.txt")))
    except Exception as error:  # noqa: BLE001 (tokenizers raises a bare Exception for a malformed file)
        raise CorruptFileError(f"{directory}: vocab.json + merges.txt are not a BPE vocabulary ({error})") from None
    pipeline.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    pipeline.decoder = decoders.ByteLevel()
    specials = {_token_text(settings.get(key)) for key in ("bos_token", "eos_token", "unk_token")} | {EOT_TEXT}
    pipeline.add_special_tokens([AddedToken(t, special=True) for t in sorted(specials - {None})
                                 if pipeline.token_to_id(t) is not None])
    return pipeline


def leading_special(pipeline: Tokenizer) -> int | None:
    """The id the pipeline's post-processor puts before every text (BOS), if it puts one."""
    plain = pipeline.encode("a", add_special_tokens=False).ids
    full = pipeline.encode("a").ids
    return full[0] if len(full) > len(plain) and full[1:1 + len(plain)] == plain else None


def first_id(value) -> int | None:
    """eos_token_id as config files write it: an int, a list of them (Llama 3), or null."""
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def write_hf_tokenizer(tokenizer, out: Path, max_len: int):
    """tokenizer.json + tokenizer_config.json for transformers' AutoTokenizer (PreTrainedTokenizerFast), which
    encodes text to the same ids as zoo's tokenizer."""
    pipeline = hf_pipeline(tokenizer)
    pipeline.save(str(out / BPE_FILE))
    settings = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_len,
                "clean_up_tokenization_spaces": False}
    for key, token_id in (("bos_token", getattr(tokenizer, "bos_id", None)), ("eos_token", tokenizer.eot_id)):
        if token_id is not None:
            settings[key] = pipeline.id_to_token(token_id)
    (out / "tokenizer_config.json").write_text(json.dumps(settings, indent=2) + "\n")


def hf_pipeline(tokenizer) -> Tokenizer:
    """A `tokenizers` pipeline that encodes and decodes as `tokenizer` does, its end-of-text a special token."""
    if isinstance(tokenizer, PretrainedTokenizer):
        return Tokenizer.from_str(tokenizer.hf.to_str())
    if isinstance(tokenizer, BPETokenizer):  # zoo keeps eot_id outside the pipeline; transformers needs it in
        pipeline = Tokenizer.from_str(tokenizer.hf.to_str())
        pipeline.add_special_tokens([AddedToken(EOT_TEXT, special=True)])
        if pipeline.token_to_id(EOT_TEXT) != tokenizer.eot_id:
            raise InputError(f"the BPE vocabulary already holds {EOT_TEXT!r} as a token of its own")
        return pipeline
    if isinstance(tokenizer, CharTokenizer):  # each character its own token: BPE without merges, glued on decode
        pipeline = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(tokenizer.chars)}, merges=[]))
        pipeline.decoder = decoders.Fuse()
        return pipeline
    raise InputError(f"no Hugging Face form for a {type(tokenizer).__name__}; zoo exports char, bpe and pretrained "
                     f"tokenizers")


def _read_json(path: Path) -> dict:
    """An optional settings file: {} when absent, an error naming it when malformed."""
    return read_json_object(path, "tokenizer settings") if path.is_file() else {}


def _token_text(value) -> str | None:
    """A special token as tokenizer_config.json writes it: a string, or an AddedToken dict with "content"."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None
