"""Checkpoints in the Hugging Face folder format, in and out: `zoo.load(folder)` and `zoo export DIR --to hf OUT`.

A folder written by transformers' or diffusers' `save_pretrained` (config.json plus model.safetensors, or shards
listed in model.safetensors.index.json) is read without running code and without holding the weights twice:
the model is built with its parameters on the meta device (no memory; buffers such as RoPE frequencies are
computed as usual, as accelerate's `init_empty_weights(include_buffers=False)` does), the family's converter reads
each tensor only when it needs it, straight into the memory the model keeps (CheckpointTensors), and
`load_state_dict(assign=True)` puts the converted tensors in place.

Which formats a family reads and writes is the family's own business: it states them in `Family.hf` (an
`HFFormat`: the transformers `model_type` / diffusers `_class_name` values it reads, its loader and its
exporter). This module only finds the family, and holds the helpers every converter shares.
"""

import contextlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch
from torch import nn

from zoo.errors import CorruptFileError, InputError, MissingFileError, UnsafeFileError

CONFIG_FILE = "config.json"
# transformers' GELU activation names (activations.py ACT2FN) -> zoo's TransformerConfig.gelu_approximate:
# "gelu" is the exact erf form (Whisper), "gelu_new" GPT-2's tanh formula, "gelu_pytorch_tanh" the same in torch
GELU_FORMS = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}
SINGLE_FILES = ("model.safetensors", "diffusion_pytorch_model.safetensors")
PICKLE_FILES = ("pytorch_model.bin", "diffusion_pytorch_model.bin", "pytorch_model.bin.index.json")


# ----------------------------------------------------------------------------------------------------
# Finding the family that reads a folder


def read_config(directory: str | Path) -> dict:
    from zoo.checkpoint import read_json_object

    return read_json_object(Path(directory) / CONFIG_FILE, "model config")


def hf_format(directory: str | Path) -> str | None:
    """The format of a Hugging Face folder: transformers' `model_type` ("llama", "whisper", ...) or diffusers'
    `_class_name` ("AutoencoderKL"); None for anything else (a zoo model directory names its "family")."""
    if not (Path(directory) / CONFIG_FILE).is_file():
        return None
    config = read_config(directory)
    if "family" in config:
        return None
    return config.get("model_type") or config.get("_class_name")


def formats() -> dict[str, str]:
    """Every Hugging Face format some family reads -> the family's name."""
    from zoo.registry import families

    return {fmt: family.name for family in families() if family.hf is not None for fmt in family.hf.reads}


def load_hf(directory: str | Path, **overrides) -> nn.Module:
    """The zoo model of a Hugging Face folder, with its tokenizer as `model.tokenizer` where the folder has one."""
    from zoo.registry import get_family

    fmt = hf_format(directory)
    readers = formats()
    if fmt not in readers:
        found = f"the checkpoint format {fmt!r}" if fmt else "no model_type or _class_name"
        raise InputError(f"{directory}: {found} in {CONFIG_FILE} is not one zoo reads; supported: "
                         f"{', '.join(sorted(readers))}")
    return get_family(readers[fmt]).hf.converter().load(Path(directory), **overrides)


def load_directory(directory: str | Path, **overrides) -> nn.Module:
    """The model in a directory: a Hugging Face folder (load_hf) or one of zoo's own (save_pretrained)."""
    from zoo.checkpoint import load_pretrained

    if Path(directory).is_dir() and hf_format(directory) is not None:
        return load_hf(directory, **overrides)
    return load_pretrained(directory, **overrides)


def export_hf(model: nn.Module, out: str | Path) -> Path:
    """Write a zoo model as a Hugging Face folder its ecosystem loads (`zoo export DIR --to hf OUT`)."""
    from zoo.registry import families, family_of_config

    family = family_of_config(model.config)
    if family.hf is None or not family.hf.exports:
        can = sorted(f.name for f in families() if f.hf is not None and f.hf.exports)
        raise InputError(f"the {family.name} family has no Hugging Face export; families that export: {', '.join(can)}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out} exists and is not empty; export writes a new folder (choose another path)")
    family.hf.converter().export(model, out)
    return out


# ----------------------------------------------------------------------------------------------------
# Reading the weights tensor by tensor


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor's bytes lie in a safetensors file."""

    path: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    offset: int  # from the start of the file
    nbytes: int


class CheckpointTensors:
    """The tensors of a folder's safetensors file(s) (one file, or the shards an index lists), each read only
    when asked for, straight into memory the caller keeps:

        with CheckpointTensors(folder) as tensors:
            w = tensors.get("model.embed_tokens.weight", shape=(vocab, dim))
            qkv = tensors.cat([("q.weight", (h, dim)), ("k.weight", (kv, dim)), ("v.weight", (kv, dim))])

    The files are read with plain reads, not memory-mapped: a mapped file's pages stay resident (and count as
    the process's memory) for as long as it is mapped, so a converter that fuses tensors held the whole file
    plus the fused copies (measured: 2.0x the weights for q/k/v fused layer by layer); read into place, the
    peak is the weights themselves, and the model owns its memory (a file rewritten later cannot change it).
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.entries = _tensor_entries(self.directory)  # tensor name -> TensorEntry
        self._files: dict[Path, BinaryIO] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for file in self._files.values():
            file.close()
        self._files.clear()

    def keys(self) -> list[str]:
        return list(self.entries)

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def entry(self, name: str, shape: tuple[int, ...] | None = None) -> TensorEntry:
        """The tensor's entry; with `shape`, the shape the model needs: a different one is an error naming both."""
        if name not in self.entries:
            raise CorruptFileError(f"{self.directory}: the checkpoint has no tensor {name!r}")
        entry = self.entries[name]
        if shape is not None and entry.shape != tuple(shape):
            raise CorruptFileError(f"{entry.path}: tensor {name} has shape {entry.shape}; the model its config.json "
                                   f"describes needs {tuple(shape)}")
        return entry

    def get(self, name: str, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        """A new tensor holding `name` (checked against `shape` when given)."""
        entry = self.entry(name, shape)
        out = torch.empty(entry.shape, dtype=entry.dtype)
        self._read(name, entry, out)
        return out

    def cat(self, parts: list[tuple[str, tuple[int, ...]]]) -> torch.Tensor:
        """The named tensors concatenated along dim 0 (a fused projection), each read straight into its rows: no
        tensor is ever held twice. Parts of different dtypes are cast to the first one's."""
        entries = [self.entry(name, shape) for name, shape in parts]
        rows = sum(entry.shape[0] for entry in entries)
        out = torch.empty((rows, *entries[0].shape[1:]), dtype=entries[0].dtype)
        row = 0
        for (name, _), entry in zip(parts, entries):
            piece = out[row:row + entry.shape[0]]
            if entry.shape[1:] != entries[0].shape[1:]:
                raise CorruptFileError(f"{entry.path}: tensor {name} has shape {entry.shape}, which cannot be "
                                       f"stacked under {parts[0][0]} of shape {entries[0].shape}")
            if entry.dtype == out.dtype:
                self._read(name, entry, piece)
            else:
                piece.copy_(self.get(name))
            row += entry.shape[0]
        return out

    def _read(self, name: str, entry: TensorEntry, out: torch.Tensor):
        if entry.path not in self._files:
            self._files[entry.path] = open(entry.path, "rb")  # closed by __exit__
        file = self._files[entry.path]
        file.seek(entry.offset)
        buffer = out.view(-1).view(torch.uint8).numpy()  # the tensor's own bytes (safetensors is little-endian)
        if file.readinto(buffer) != entry.nbytes:
            raise CorruptFileError(f"{entry.path}: tensor {name} is cut short (the file ends inside it)")


def _tensor_entries(directory: Path) -> dict[str, TensorEntry]:
    index = directory / "model.safetensors.index.json"
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            files = sorted(set(weight_map.values()))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
            raise CorruptFileError(f"{index} is not a safetensors index ({error!r})") from None
        missing = [f for f in files if not (directory / f).is_file()]
        if missing:
            raise MissingFileError(f"{index} lists {', '.join(missing)}, which {directory} does not hold")
        entries = {}
        for file in files:
            entries.update(read_safetensors_header(directory / file))
        absent = sorted(name for name, file in weight_map.items() if name not in entries)
        if absent:
            raise CorruptFileError(f"{index} lists tensors its shards do not hold: {', '.join(absent[:5])}")
        return entries
    for name in SINGLE_FILES:
        if (directory / name).exists():
            return read_safetensors_header(directory / name)
    pickles = [name for name in PICKLE_FILES if (directory / name).exists()]
    if pickles:
        raise UnsafeFileError(f"refusing {directory / pickles[0]}: pickle files can run arbitrary code; zoo reads "
                              f"only safetensors (transformers' save_pretrained writes them by default)")
    raise MissingFileError(f"{directory} holds no {' or '.join(SINGLE_FILES)} and no model.safetensors.index.json")


# The safetensors format (https://github.com/huggingface/safetensors#format): an 8-byte little-endian header
# length N, N bytes of JSON {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}, then
# the data, offsets counted from its start.
SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                      "U8": torch.uint8, "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn,
                      "F8_E5M2": torch.float8_e5m2}
MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit


def read_safetensors_header(path: Path) -> dict[str, TensorEntry]:
    """Every tensor's entry in a safetensors file, checked against the file (a malformed one names the problem)."""
    size = path.stat().st_size
    with open(path, "rb") as file:
        length = int.from_bytes(file.read(8), "little")
        if size < 8 or length > min(MAX_HEADER_BYTES, size - 8):
            raise CorruptFileError(f"{path} is not a valid safetensors file (header of {length} bytes in a file "
                                   f"of {size})")
        try:
            header = json.loads(file.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
            raise CorruptFileError(f"{path} is not a valid safetensors file (header: {error})") from None
    if not isinstance(header, dict):
        raise CorruptFileError(f"{path} is not a valid safetensors file (its header is not a JSON object)")
    data_start = 8 + length
    return {name: _entry(path, name, info, data_start, size) for name, info in header.items()
            if name != "__metadata__"}


def _entry(path: Path, name: str, info, data_start: int, size: int) -> TensorEntry:
    try:
        dtype_name, shape, (begin, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
        valid = all(isinstance(n, int) and n >= 0 for n in (*shape, begin, end))
    except (TypeError, KeyError, ValueError):
        valid = False
    if not valid:
        raise CorruptFileError(f"{path}: the header entry of tensor {name!r} is malformed ({info!r})")
    if dtype_name not in SAFETENSORS_DTYPES:
        raise CorruptFileError(f"{path}: tensor {name} has dtype {dtype_name}; zoo reads "
                               f"{', '.join(SAFETENSORS_DTYPES)}")
    dtype = SAFETENSORS_DTYPES[dtype_name]
    nbytes = math.prod(shape) * dtype.itemsize
    if end - begin != nbytes or data_start + end > size:
        raise CorruptFileError(f"{path}: tensor {name} ({dtype_name}, shape {shape}) needs {nbytes} bytes, its "
                               f"header gives bytes {begin}..{end} of a data section of {size - data_start}")
    return TensorEntry(path, dtype, shape, data_start + begin, nbytes)


# ----------------------------------------------------------------------------------------------------
# Building without memory, then filling


@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Inside, every parameter a module registers lives on the meta device (it takes no memory); buffers are
    computed as usual. accelerate's `init_empty_weights(include_buffers=False)` does the same."""
    original = nn.Module.register_parameter

    def register_on_meta(module, name, param):
        original(module, name, param)
        if param is not None and param.device.type != "meta":
            module._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = original


def fill(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> nn.Module:
    """Put converted tensors into a model built under `parameters_on_meta`: every parameter must come from the
    checkpoint with its exact shape (errors name the tensor and both shapes); tied parameters stay tied."""
    expected = dict(model.named_parameters())
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(dict(model.named_parameters(remove_duplicate=False))))
    if missing or unexpected:
        raise CorruptFileError(f"{source}: the converted checkpoint does not fit the model: missing {missing[:5]}, "
                               f"unexpected {unexpected[:5]}")
    for name, tensor in state.items():
        if name in expected and tuple(tensor.shape) != tuple(expected[name].shape):
            raise CorruptFileError(f"{source}: tensor {name} has shape {tuple(tensor.shape)}; the config needs "
                                   f"{tuple(expected[name].shape)}")
    ties = _tied_names(model)
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False, assign=True)
    for alias, owner in ties.items():  # assign=True replaced the owner's Parameter: point its aliases at it again
        module_name, _, attr = alias.rpartition(".")
        setattr(model.get_submodule(module_name), attr, model.get_parameter(owner))
    return model


def _tied_names(model: nn.Module) -> dict[str, str]:
    first: dict[int, str] = {}
    aliases = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in first:
            aliases[name] = first[id(param)]
        else:
            first[id(param)] = name
    return aliases
