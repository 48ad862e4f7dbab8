"""Whisper checkpoints in the Hugging Face format, in and out (zoo/interop.py finds this family for them).

    model = zoo.load("whisper-small/")        # a folder with WhisperForConditionalGeneration's config.json
    model.transcribe("talk.wav")               # transformers' weights and tokenizer, zoo's decoding
    zoo export runs/my-whisper --to hf out/    # a zoo speech model as a folder transformers loads

The folder is what `WhisperForConditionalGeneration.save_pretrained` and `WhisperProcessor.save_pretrained` write:
config.json, model.safetensors (or shards), generation_config.json, the tokenizer (tokenizer.json, or vocab.json +
merges.txt + added tokens) and preprocessor_config.json. Real Whisper (Radford et al., 2022) is zoo's speech model
with the options the paper's model has (`whisper_config`): LayerNorm with biases (eps 1e-5, torch's default, which
transformers' Whisper uses), a GELU MLP, learned decoder positions, fixed 30 s encoder windows, and timestamps.

Tensor layout (transformers' modeling_whisper.py): zoo fuses the query, key and value projections into one
matrix (`attn.qkv`; `cross_attn.q` and `cross_attn.kv` in cross-attention), Whisper keeps them apart and its key
projection has no bias, so zoo's key bias is zero. That loses nothing on export either: a key bias b adds q.b to
every score of a query, the same for all keys, and the softmax cancels it. The output projection is tied to the
token embedding in both. The encoder's positions are the fixed sinusoids, which transformers stores as
`encoder.embed_positions.weight`; they are checked against zoo's own and not loaded.

The tokenizer: Whisper's vocabulary is zoo's speech layout (zoo/speech/tokenizer.py): byte-level BPE pieces,
<|endoftext|>, <|startoftranscript|>, the language tokens, the six task tokens, 1501 timestamps. The BPE is
rebuilt from the folder's pieces and merges, and every special token the folder names must sit where zoo's layout
puts it (older vocabularies call <|nospeech|> <|nocaptions|>). English-only checkpoints (*.en) are refused: their
prompt is <|startoftranscript|><|notimestamps|> without language and task tokens, which zoo's prompt layout does
not build.
"""

import itertools
import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import AddedToken, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

from zoo.checkpoint import read_json_object
from zoo.config import replace_config
from zoo.errors import CorruptFileError, InputError, MissingFileError, ZooError
from zoo.interop import CONFIG_FILE, GELU_FORMS, CheckpointTensors, fill, parameters_on_meta, read_config
from zoo.speech.audio import HOP_LENGTH, N_FFT, SAMPLE_RATE
from zoo.speech.tokenizer import LANGUAGES, N_TIMESTAMPS, TASKS, WhisperTokenizer, timestamp_text
from zoo.speech.whisper import Whisper, WhisperConfig, decoder_backbone, encoder_backbone
from zoo.text.tokenizer import BPETokenizer

ARCHITECTURES = ("WhisperForConditionalGeneration", "WhisperModel")
WEIGHTS_FILE = "model.safetensors"
GENERATION_FILE = "generation_config.json"
PREPROCESSOR_FILE = "preprocessor_config.json"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
VOCAB_FILE, MERGES_FILE, ADDED_TOKENS_FILE = "vocab.json", "merges.txt", "added_tokens.json"
LAYER_NORM_EPS = 1e-5  # torch's nn.LayerNorm default, which transformers' Whisper layers use
POSITIONS_TOLERANCE = 1e-3  # sinusoids stored in fp16 are off by up to 2**-11 of values in [-1, 1]
ALIASES = {"<|nospeech|>": ("<|nospeech|>", "<|nocaptions|>")}  # the name older vocabularies use
EOT_TEXT = "<|endoftext|>"
MAX_INITIAL_TIMESTAMP_INDEX = 50  # 1 s in timestamp steps: zoo's DecodingOptions.max_initial_timestamp, whisper's


# ----------------------------------------------------------------------------------------------------------
# Reading a folder


def load(directory: str | Path, **overrides) -> Whisper:
    """The zoo speech model of a transformers Whisper folder, its tokenizer as `model.tokenizer`. Parameters are
    built on the meta device and filled from the memory-mapped safetensors, so the weights are held once."""
    directory = Path(directory)
    config = whisper_config(read_config(directory), directory)
    if overrides:
        config = replace_config(config, overrides)
    tokenizer = read_tokenizer(directory)
    check_front_end(directory, config)
    if tokenizer.vocab_size > config.vocab_size:
        raise CorruptFileError(f"{directory}: the tokenizer has {tokenizer.vocab_size} tokens, more than the "
                               f"vocab_size={config.vocab_size} of {CONFIG_FILE}")
    with parameters_on_meta():
        model = Whisper(config)
    with CheckpointTensors(directory) as tensors:
        state = read_state(tensors, model, directory)
    fill(model, state, directory)
    model.tokenizer = tokenizer
    return model.eval()


def whisper_config(hf: dict, directory: Path) -> WhisperConfig:
    """transformers' WhisperConfig (config.json) -> zoo's, refusing what zoo's model cannot express."""
    refuse_unsupported(hf, directory)

    def number(key: str) -> int:
        value = hf.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CorruptFileError(f"{directory / CONFIG_FILE}: {key} must be an integer >= 1, got {value!r}")
        return value

    gelu = GELU_FORMS[hf.get("activation_function", "gelu")]
    block = dict(dim=number("d_model"), mlp="gelu", gelu_approximate=gelu, norm="layernorm", norm_eps=LAYER_NORM_EPS,
                 bias=True, positions="none")
    try:
        encoder = encoder_backbone(n_layers=number("encoder_layers"), n_heads=number("encoder_attention_heads"),
                                   hidden_dim=number("encoder_ffn_dim"), max_seq_len=number("max_source_positions"),
                                   **block)
        decoder = decoder_backbone(n_layers=number("decoder_layers"), n_heads=number("decoder_attention_heads"),
                                   hidden_dim=number("decoder_ffn_dim"), max_seq_len=number("max_target_positions"),
                                   **block)
        return WhisperConfig(n_mels=number("num_mel_bins"), vocab_size=number("vocab_size"), timestamps=True,
                             learned_positions=True, pad_to_window=True, encoder=encoder, decoder=decoder)
    except InputError as error:  # zoo's config checks, about this file's values (a width heads do not divide)
        raise CorruptFileError(f"{directory / CONFIG_FILE} describes a Whisper zoo cannot build: {error}") from None


def refuse_unsupported(hf: dict, directory: Path):
    """Name every option of config.json that zoo's Whisper has no equivalent for."""
    problems = []
    architectures = hf.get("architectures") or []
    if not isinstance(architectures, list) or not set(map(str, architectures)) <= set(ARCHITECTURES):
        problems.append(f"architectures {architectures} (zoo reads {' and '.join(ARCHITECTURES)})")
    activation = hf.get("activation_function", "gelu")
    if not isinstance(activation, str) or activation not in GELU_FORMS:
        problems.append(f"activation_function {activation!r} (zoo's MLP computes {', '.join(GELU_FORMS)})")
    if hf.get("scale_embedding", False):
        problems.append("scale_embedding true (zoo's decoder does not scale its token embeddings)")
    if problems:
        raise InputError(f"{directory / CONFIG_FILE}: zoo's Whisper cannot express {'; '.join(problems)}")


def check_front_end(directory: Path, config: WhisperConfig):
    """preprocessor_config.json, where there is one, must describe zoo.speech.audio's log-mel features."""
    path = directory / PREPROCESSOR_FILE
    if not path.is_file():
        return
    settings = read_json_object(path, "feature extractor")
    expected = {"feature_size": config.n_mels, "sampling_rate": SAMPLE_RATE, "hop_length": HOP_LENGTH,
                "n_fft": N_FFT, "nb_max_frames": 2 * config.encoder.max_seq_len}
    wrong = [f"{key} {settings[key]!r} (zoo's is {value})" for key, value in expected.items()
             if key in settings and settings[key] != value]
    if wrong:
        raise InputError(f"{path}: zoo's log-mel front end (zoo/speech/audio.py) cannot compute these features: "
                         f"{', '.join(wrong)}")


# ----------------------------------------------------------------------------------------------------------
# Tensors: one table serves both directions


def tensor_table(config: WhisperConfig) -> list[tuple[str, tuple[str | None, ...]]]:
    """(zoo parameter, the Whisper tensors it is made of, concatenated along dim 0). Whisper names are relative
    to its `model.` prefix; None stands for the key bias Whisper does not have (zeros in zoo)."""
    table = [("conv1.weight", ("encoder.conv1.weight",)), ("conv1.bias", ("encoder.conv1.bias",)),
             ("conv2.weight", ("encoder.conv2.weight",)), ("conv2.bias", ("encoder.conv2.bias",)),
             *_pair("encoder.norm", "encoder.layer_norm"),
             ("embed.weight", ("decoder.embed_tokens.weight",)),
             ("text_positions.weight", ("decoder.embed_positions.weight",)),
             *_pair("decoder.norm", "decoder.layer_norm")]
    for i in range(config.encoder.n_layers):
        table += _layer(f"encoder.blocks.{i}.", f"encoder.layers.{i}.", cross=False)
    for i in range(config.decoder.n_layers):
        table += _layer(f"decoder.blocks.{i}.", f"decoder.layers.{i}.", cross=True)
    return table


def _pair(zoo: str, hf: str) -> list[tuple[str, tuple[str, ...]]]:
    return [(f"{zoo}.weight", (f"{hf}.weight",)), (f"{zoo}.bias", (f"{hf}.bias",))]


def _layer(zoo: str, hf: str, cross: bool) -> list[tuple[str, tuple[str | None, ...]]]:
    """One residual block: transformers' WhisperEncoderLayer / WhisperDecoderLayer -> zoo.nn.Block."""
    own = f"{hf}self_attn."
    table = [*_pair(f"{zoo}attn_norm", f"{hf}self_attn_layer_norm"),
             (f"{zoo}attn.qkv.weight", (f"{own}q_proj.weight", f"{own}k_proj.weight", f"{own}v_proj.weight")),
             (f"{zoo}attn.qkv.bias", (f"{own}q_proj.bias", None, f"{own}v_proj.bias")),
             *_pair(f"{zoo}attn.proj", f"{own}out_proj")]
    if cross:
        other = f"{hf}encoder_attn."
        table += [*_pair(f"{zoo}cross_norm", f"{hf}encoder_attn_layer_norm"),
                  *_pair(f"{zoo}cross_attn.q", f"{other}q_proj"),
                  (f"{zoo}cross_attn.kv.weight", (f"{other}k_proj.weight", f"{other}v_proj.weight")),
                  (f"{zoo}cross_attn.kv.bias", (None, f"{other}v_proj.bias")),
                  *_pair(f"{zoo}cross_attn.proj", f"{other}out_proj")]
    return table + [*_pair(f"{zoo}mlp_norm", f"{hf}final_layer_norm"), *_pair(f"{zoo}mlp.up", f"{hf}fc1"),
                    *_pair(f"{zoo}mlp.down", f"{hf}fc2")]


def read_state(tensors: CheckpointTensors, model: Whisper, directory: Path) -> dict[str, torch.Tensor]:
    """zoo's state dict from the checkpoint's tensors, each checked against the shape config.json gives it."""
    root = "model." if "model.encoder.conv1.weight" in tensors else ""  # WhisperModel folders have no prefix
    expected = dict(model.named_parameters())
    state, used = {}, set()
    for name, sources in tensor_table(model.config):
        shape = expected[name].shape
        piece = (shape[0] // len(sources), *shape[1:])
        parts = [None if source is None else _read(tensors, root + source, piece, directory) for source in sources]
        like = next(part for part in parts if part is not None)
        parts = [torch.zeros_like(like) if part is None else part for part in parts]
        state[name] = torch.cat(parts) if len(parts) > 1 else parts[0]
        used.update(root + source for source in sources if source is not None)
    used |= _check_fixed(tensors, root, model, state["embed.weight"], directory)
    unknown = sorted(set(tensors.keys()) - used)
    if unknown:
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise CorruptFileError(f"{directory}: the checkpoint holds tensors zoo's Whisper has no place for: "
                               f"{', '.join(unknown[:5])}{more}")
    return state


def _read(tensors: CheckpointTensors, name: str, shape: tuple[int, ...], directory: Path) -> torch.Tensor:
    if name not in tensors:
        raise CorruptFileError(f"{directory}: the checkpoint has no tensor {name!r}, which {CONFIG_FILE} needs")
    tensor = tensors.get(name)
    if tuple(tensor.shape) != tuple(shape):
        raise CorruptFileError(f"{directory}: tensor {name} has shape {tuple(tensor.shape)}; {CONFIG_FILE} needs "
                               f"{tuple(shape)}")
    return tensor


def _check_fixed(tensors: CheckpointTensors, root: str, model: Whisper, embedding: torch.Tensor,
                 directory: Path) -> set[str]:
    """The tensors zoo computes or ties instead of loading: the encoder's sinusoids and the tied output
    projection must be what zoo would use. Returns their names."""
    names = set()
    positions_name = root + "encoder.embed_positions.weight"
    if positions_name in tensors:
        positions = _read(tensors, positions_name, tuple(model.audio_positions.shape), directory)
        gap = float((positions.float() - model.audio_positions).abs().max())
        if gap > POSITIONS_TOLERANCE:
            raise CorruptFileError(f"{directory}: tensor {positions_name} differs from Whisper's sinusoids by up to "
                                   f"{gap:.3g}; zoo's encoder adds the fixed sinusoids (Vaswani et al., 2017)")
        names.add(positions_name)
    if "proj_out.weight" in tensors:
        if not torch.equal(_read(tensors, "proj_out.weight", tuple(embedding.shape), directory), embedding):
            raise InputError(f"{directory}: proj_out.weight differs from the token embedding; zoo's Whisper ties its "
                             f"output projection to the embedding, as Whisper does (tie_word_embeddings)")
        names.add("proj_out.weight")
    return names


# ----------------------------------------------------------------------------------------------------------
# The tokenizer


def read_tokenizer(directory: Path) -> WhisperTokenizer:
    """zoo's WhisperTokenizer from the folder's tokenizer files, each special token checked against zoo's layout
    and against generation_config.json where there is one."""
    pieces, merges, added = read_vocabulary(directory)
    ids = {**pieces, **added}  # token text -> id
    source = directory / (TOKENIZER_FILE if (directory / TOKENIZER_FILE).is_file() else VOCAB_FILE)
    if EOT_TEXT not in ids:
        raise CorruptFileError(f"{source} has no {EOT_TEXT} token; a Whisper vocabulary has one after its BPE pieces")
    eot = ids[EOT_TEXT]
    bpe_pieces = {piece: i for piece, i in pieces.items() if i < eot}
    if len(bpe_pieces) != eot or set(bpe_pieces.values()) != set(range(eot)):
        raise CorruptFileError(f"{source}: ids 0..{eot - 1} below {EOT_TEXT} must be the BPE pieces, one each")
    generation = _generation_config(directory)
    if generation.get("is_multilingual") is False:
        raise InputError(f"{directory}: an English-only Whisper (is_multilingual false in {GENERATION_FILE}) prompts "
                         f"with <|startoftranscript|><|notimestamps|> alone, which zoo's speech tokenizer does not "
                         f"build; zoo reads multilingual Whisper checkpoints")
    try:
        bpe = HFTokenizer(models.BPE(vocab=bpe_pieces, merges=merges))
    except Exception as error:  # tokenizers raises a bare Exception for a merge of pieces not in the vocabulary
        raise CorruptFileError(f"{source}: the BPE merges do not fit its pieces ({error})") from None
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # GPT-2's, which Whisper's tokenizer is
    bpe.decoder = decoders.ByteLevel()
    try:
        tokenizer = WhisperTokenizer(BPETokenizer(bpe, eot_id=eot), _languages(ids, eot))
    except InputError as error:
        raise CorruptFileError(f"{source} is not a Whisper vocabulary ({error})") from None
    _check_layout(tokenizer, ids, source)
    _check_generation(tokenizer, generation, directory / GENERATION_FILE)
    return tokenizer


def read_vocabulary(directory: Path) -> tuple[dict[str, int], list[tuple[str, str]], dict[str, int]]:
    """(BPE pieces -> id, merges, added tokens -> id) from tokenizer.json, else vocab.json + merges.txt with
    added_tokens.json / tokenizer_config.json (what transformers' slow tokenizer writes)."""
    path = directory / TOKENIZER_FILE
    try:
        if path.is_file():
            data = read_json_object(path, "tokenizer")
            model = data.get("model") or {}
            if model.get("type") != "BPE":
                raise CorruptFileError(f"{path} holds a {model.get('type')!r} model; Whisper's tokenizer is a BPE")
            merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
            added = _vocab({token["content"]: token["id"] for token in data.get("added_tokens", [])}, path)
            return _vocab(model["vocab"], path), merges, added
        vocab_path, merges_path = directory / VOCAB_FILE, directory / MERGES_FILE
        for required in (vocab_path, merges_path):
            if not required.is_file():
                raise MissingFileError(f"{directory} holds no Whisper tokenizer: {required} is missing (the folder "
                                       f"needs {TOKENIZER_FILE}, or {VOCAB_FILE} and {MERGES_FILE})")
        pieces = _vocab(read_json_object(vocab_path, "vocabulary"), vocab_path)
        lines = merges_path.read_text(encoding="utf-8").splitlines()
        merges = [tuple(line.split(" ")) for line in lines if line and not line.startswith("#version")]
        return pieces, merges, _added_tokens(directory)
    except ZooError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError) as error:  # ValueError: a bad id, text not UTF-8
        raise CorruptFileError(f"{directory}: malformed Whisper tokenizer files ({type(error).__name__}: "
                               f"{error})") from None


def _vocab(vocab, path: Path) -> dict[str, int]:
    if not isinstance(vocab, dict) or not all(isinstance(i, int) and not isinstance(i, bool) for i in vocab.values()):
        raise CorruptFileError(f"{path}: the vocabulary must map token strings to integer ids")
    return vocab


def _added_tokens(directory: Path) -> dict[str, int]:
    added = {}
    if (directory / ADDED_TOKENS_FILE).is_file():
        added.update(_vocab(read_json_object(directory / ADDED_TOKENS_FILE, "added tokens"),
                            directory / ADDED_TOKENS_FILE))
    if (directory / TOKENIZER_CONFIG_FILE).is_file():
        decoder = read_json_object(directory / TOKENIZER_CONFIG_FILE, "tokenizer config").get("added_tokens_decoder")
        added.update({token["content"]: int(i) for i, token in (decoder or {}).items()})
    return added


def _languages(ids: dict[str, int], eot: int) -> list[str]:
    """The language codes in id order after <|startoftranscript|> (eot + 1), up to the first task token."""
    by_id = {i: text for text, i in ids.items()}
    languages = []
    for i in itertools.count(eot + 2):
        match = re.fullmatch(r"<\|([a-z]+)\|>", by_id.get(i, ""))
        if not match or match.group(1) not in LANGUAGES:
            return languages
        languages.append(match.group(1))


def _check_layout(tokenizer: WhisperTokenizer, ids: dict[str, int], source: Path):
    """Every special token the folder has must carry the id zoo's layout gives it."""
    expected = dict(tokenizer.special_tokens)
    for k in (0, N_TIMESTAMPS - 1):  # the first and the last timestamp pin the whole run
        expected[timestamp_text(k * 0.02)] = tokenizer.timestamp_begin + k
    for text, token in expected.items():
        found = [ids[name] for name in ALIASES.get(text, (text,)) if name in ids]
        if not found and text in tokenizer.special_tokens:
            raise CorruptFileError(f"{source} has no {text} token, which Whisper's prompt layout needs")
        if found and found[0] != token:
            raise CorruptFileError(f"{source} has {text} at id {found[0]}; Whisper's layout (zoo/speech/tokenizer.py) "
                                   f"puts it at {token}, after {len(tokenizer.languages)} language tokens")


def _generation_config(directory: Path) -> dict:
    path = directory / GENERATION_FILE
    return read_json_object(path, "generation config") if path.is_file() else {}


def _check_generation(tokenizer: WhisperTokenizer, generation: dict, path: Path):
    """generation_config.json's token ids (the ones transformers' generate prompts with) must be the tokenizer's."""
    def mapping(key: str) -> dict:
        value = generation.get(key) or {}
        if not isinstance(value, dict):
            raise CorruptFileError(f"{path}: {key} must map token texts to ids, got {value!r}")
        return value

    pairs = [("decoder_start_token_id", generation.get("decoder_start_token_id"), tokenizer.sot),
             ("no_timestamps_token_id", generation.get("no_timestamps_token_id"), tokenizer.no_timestamps)]
    pairs += [(f"lang_to_id[{text!r}]", i, tokenizer.special_tokens.get(text))
              for text, i in mapping("lang_to_id").items()]
    pairs += [(f"task_to_id[{task!r}]", i, getattr(tokenizer, task) if task in TASKS else None)
              for task, i in mapping("task_to_id").items()]
    wrong = [f"{key} is {found!r}, the tokenizer's is {want!r}" for key, found, want in pairs
             if found is not None and found != want]
    if wrong:
        raise CorruptFileError(f"{path} does not fit the folder's tokenizer: {'; '.join(wrong)}")


# ----------------------------------------------------------------------------------------------------------
# Writing a folder


def export(model: Whisper, out: Path):
    """Write `model` as a Whisper folder transformers loads (WhisperForConditionalGeneration, WhisperProcessor),
    or raise InputError naming every part of it Whisper's format cannot express."""
    problems = export_problems(model)
    if problems:
        raise InputError(f"this speech model does not fit Whisper's format: {'; '.join(problems)}")
    c, tokenizer = model.config, model.tokenizer
    out.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    tensors = {}
    for name, sources in tensor_table(c):
        for source, part in zip(sources, state[name].chunk(len(sources))):
            if source is not None:  # the key bias is dropped: the softmax cancels it (module docstring)
                tensors[f"model.{source}"] = part.contiguous()
    tensors["model.encoder.embed_positions.weight"] = model.audio_positions.to(state["embed.weight"].dtype).cpu()
    save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    _write_json(out / CONFIG_FILE, hf_config(c, tokenizer))
    _write_json(out / GENERATION_FILE, generation_config(c, tokenizer))
    write_tokenizer(tokenizer, out, c.decoder.max_seq_len)
    frames = 2 * c.encoder.max_seq_len
    if frames * HOP_LENGTH % SAMPLE_RATE == 0:  # WhisperFeatureExtractor takes whole seconds (chunk_length)
        _write_json(out / PREPROCESSOR_FILE, preprocessor_config(c.n_mels, frames * HOP_LENGTH // SAMPLE_RATE))


def export_problems(model: Whisper) -> list[str]:
    """What of a zoo speech model Whisper's format has no place for ([] when it exports)."""
    c = model.config
    problems = []
    if not c.learned_positions:
        uses = "RoPE" if c.decoder.positions == "rope" else "no positions"
        problems.append(f"the decoder uses {uses}; Whisper's format has learned absolute positions "
                        f"(WhisperConfig.learned_positions)")
    if c.encoder.dim != c.decoder.dim:
        problems.append(f"the encoder's width {c.encoder.dim} differs from the decoder's {c.decoder.dim}; Whisper has "
                        f"one d_model")
    if c.encoder.gelu_approximate != c.decoder.gelu_approximate:
        problems.append(f"the encoder's GELU ({c.encoder.gelu_approximate}) differs from the decoder's "
                        f"({c.decoder.gelu_approximate}); Whisper has one activation_function")
    if model.ctc_head is not None:
        problems.append("the encoder's CTC head (ctc_weight > 0) has no place in Whisper's format")
    if model.phoneme_head is not None:
        problems.append("the encoder's phoneme CTC head (phoneme_ctc_weight > 0) has no place in Whisper's format")
    if c.translate_from_transcript:
        problems.append("the model translates from its transcript (translate_from_transcript), which Whisper's "
                        "generate() does not do")
    if model.tokenizer is None:
        problems.append("the model has no tokenizer, which a Whisper folder holds beside the weights")
    for part, b in (("encoder", c.encoder), ("decoder", c.decoder)):
        if b.norm != "layernorm" or not b.bias or b.norm_eps != LAYER_NORM_EPS:
            problems.append(f"the {part} uses {b.norm} (eps {b.norm_eps}, bias {b.bias}); Whisper's format has "
                            f"LayerNorm with biases and eps {LAYER_NORM_EPS}")
        if b.mlp != "gelu":
            problems.append(f"the {part}'s MLP is {b.mlp}; Whisper's is Linear-GELU-Linear")
        if b.kv_heads != b.n_heads or b.head_size * b.n_heads != b.dim:
            problems.append(f"the {part}'s attention has {b.kv_heads} key/value heads of {b.head_size} for "
                            f"{b.n_heads} query heads at width {b.dim}; Whisper's has n_heads heads of d_model / "
                            f"n_heads")
        if b.adaln or not b.final_norm:
            problems.append(f"the {part} has adaLN conditioning or no final norm; Whisper's has a final LayerNorm")
    return problems


def hf_config(c: WhisperConfig, tokenizer: WhisperTokenizer) -> dict:
    """config.json of transformers' WhisperForConditionalGeneration."""
    e, d = c.encoder, c.decoder
    activation = {"none": "gelu", "tanh": "gelu_pytorch_tanh"}[e.gelu_approximate]
    return {"architectures": ["WhisperForConditionalGeneration"], "model_type": "whisper",
            "vocab_size": c.vocab_size, "num_mel_bins": c.n_mels, "d_model": e.dim,
            "encoder_layers": e.n_layers, "encoder_attention_heads": e.n_heads, "encoder_ffn_dim": e.mlp_hidden,
            "decoder_layers": d.n_layers, "decoder_attention_heads": d.n_heads, "decoder_ffn_dim": d.mlp_hidden,
            "max_source_positions": e.max_seq_len, "max_target_positions": d.max_seq_len,
            "activation_function": activation, "scale_embedding": False, "tie_word_embeddings": True,
            "is_encoder_decoder": True, "use_cache": True, "dropout": 0.0, "attention_dropout": 0.0,
            "activation_dropout": 0.0, "pad_token_id": tokenizer.eot, "bos_token_id": tokenizer.eot,
            "eos_token_id": tokenizer.eot, "decoder_start_token_id": tokenizer.sot}


def generation_config(c: WhisperConfig, tokenizer: WhisperTokenizer) -> dict:
    """generation_config.json: the prompt tokens transformers' generate builds, and zoo's decoding defaults
    (zoo/speech/decoding.py: the suppressed tokens, SuppressBlank at the first step), so both decode alike."""
    from zoo.speech.decoding import DecodingOptions, suppressed_ids

    return {"decoder_start_token_id": tokenizer.sot, "bos_token_id": tokenizer.eot, "eos_token_id": tokenizer.eot,
            "pad_token_id": tokenizer.eot, "max_length": c.decoder.max_seq_len, "is_multilingual": True,
            "lang_to_id": {f"<|{code}|>": tokenizer.language_token(code) for code in tokenizer.languages},
            "task_to_id": {task: getattr(tokenizer, task) for task in ("transcribe", "translate")},
            "no_timestamps_token_id": tokenizer.no_timestamps, "prev_sot_token_id": tokenizer.sot_prev,
            "max_initial_timestamp_index": MAX_INITIAL_TIMESTAMP_INDEX,
            "suppress_tokens": suppressed_ids(tokenizer, c.vocab_size, DecodingOptions()),
            "begin_suppress_tokens": list(tokenizer.blank_tokens)}


def preprocessor_config(n_mels: int, seconds: int) -> dict:
    """preprocessor_config.json of transformers' WhisperFeatureExtractor: zoo.speech.audio's front end."""
    return {"feature_extractor_type": "WhisperFeatureExtractor", "processor_class": "WhisperProcessor",
            "feature_size": n_mels, "sampling_rate": SAMPLE_RATE, "hop_length": HOP_LENGTH, "n_fft": N_FFT,
            "chunk_length": seconds, "n_samples": seconds * SAMPLE_RATE,
            "nb_max_frames": seconds * SAMPLE_RATE // HOP_LENGTH, "padding_side": "right", "padding_value": 0.0,
            "return_attention_mask": False}


def write_tokenizer(tokenizer: WhisperTokenizer, out: Path, max_length: int):
    """tokenizer.json (the fast tokenizer: zoo's BPE plus every special and timestamp token as an added token),
    tokenizer_config.json, and vocab.json + merges.txt for transformers' slow tokenizer."""
    texts = [*tokenizer.special_tokens,
             *(timestamp_text(k * 0.02) for k in range(N_TIMESTAMPS))]  # ids eot, eot + 1, ... in order
    fast = HFTokenizer.from_str(tokenizer.bpe.hf.to_str())
    fast.add_special_tokens([AddedToken(t, normalized=False) for t in texts[:-N_TIMESTAMPS]])
    fast.add_tokens([AddedToken(t, normalized=False) for t in texts[-N_TIMESTAMPS:]])
    fast.save(str(out / TOKENIZER_FILE))
    model = json.loads(tokenizer.bpe.hf.to_str())["model"]
    _write_json(out / VOCAB_FILE, {**model["vocab"], EOT_TEXT: tokenizer.eot})
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (out / MERGES_FILE).write_text("#version: 0.2\n" + "".join(f"{m}\n" for m in merges), encoding="utf-8")
    special = len(texts) - N_TIMESTAMPS
    _write_json(out / TOKENIZER_CONFIG_FILE, {
        "tokenizer_class": "WhisperTokenizer", "bos_token": EOT_TEXT, "eos_token": EOT_TEXT, "unk_token": EOT_TEXT,
        "pad_token": EOT_TEXT, "add_prefix_space": False, "errors": "replace", "model_max_length": max_length,
        "added_tokens_decoder": {str(tokenizer.eot + i): {"content": text, "lstrip": False, "normalized": False,
                                                          "rstrip": False, "single_word": False, "special": i < special}
                                 for i, text in enumerate(texts)}})


def _write_json(path: Path, data: dict):
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

