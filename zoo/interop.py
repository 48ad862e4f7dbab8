"""Checkpoints in the Hugging Face folder format, in and out: `zoo.load(folder)` and `zoo export DIR --to hf OUT`.

A folder written by transformers' or diffusers' `save_pretrained` (config.json plus model.safetensors, or shards
listed in model.safetensors.index.json) is read without running code and without holding the weights twice:
the model is built with its parameters on the meta device (no memory; buffers such as RoPE frequencies are
computed as usual, as accelerate's `init_empty_weights(include_buffers=False)` does), the family's converter reads
each tensor from its memory-mapped file only when it needs it, and `load_state_dict(assign=True)` puts the
converted tensors in place.

Which formats a family reads and writes is the family's own business: it states them in `Family.hf` (an
`HFFormat`: the transformers `model_type` / diffusers `_class_name` values it reads, its loader and its
exporter). This module only finds the family, and holds the helpers every converter shares.
"""

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from zoo.errors import CorruptFileError, InputError, MissingFileError, UnsafeFileError

CONFIG_FILE = "config.json"
SINGLE_FILES = ("model.safetensors", "diffusion_pytorch_model.safetensors")
PICKLE_FILES = ("pytorch_model.bin", "diffusion_pytorch_model.bin", "pytorch_model.bin.index.json")


# ----------------------------------------------------------------------------------------------------
# Finding the family that reads a folder


def read_config(directory: str | Path) -> dict:
    path = Path(directory) / CONFIG_FILE
    if not path.exists():
        raise MissingFileError(f"{path} is missing: a Hugging Face model folder holds config.json beside its weights")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CorruptFileError(f"{path} is not JSON ({error})") from None
    if not isinstance(config, dict):
        raise CorruptFileError(f"{path} holds a JSON {type(config).__name__}, not an object")
    return config


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
    return get_family(readers[fmt]).hf.load(Path(directory), **overrides)


def export_hf(model: nn.Module, out: str | Path) -> Path:
    """Write a zoo model as a Hugging Face folder its ecosystem loads (`zoo export DIR --to hf OUT`)."""
    from zoo.registry import families, family_of_config

    family = family_of_config(model.config)
    if family.hf is None or family.hf.export is None:
        can = sorted(f.name for f in families() if f.hf is not None and f.hf.export is not None)
        raise InputError(f"the {family.name} family has no Hugging Face export; families that export: {', '.join(can)}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out} exists and is not empty; export writes a new folder (choose another path)")
    family.hf.export(model, out)
    return out


# ----------------------------------------------------------------------------------------------------
# Reading the weights lazily


class CheckpointTensors:
    """The tensors of a folder's safetensors file(s), read one at a time from memory-mapped files.

        with CheckpointTensors(folder) as tensors:
            w = tensors.get("model.embed_tokens.weight")
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.file_of = _tensor_files(self.directory)  # tensor name -> file
        self._open: dict[Path, object] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._open.clear()  # safe_open handles close (and unmap) when released

    def keys(self) -> list[str]:
        return list(self.file_of)

    def __contains__(self, name: str) -> bool:
        return name in self.file_of

    def get(self, name: str) -> torch.Tensor:
        if name not in self.file_of:
            raise CorruptFileError(f"{self.directory}: the checkpoint has no tensor {name!r}")
        path = self.file_of[name]
        try:
            if path not in self._open:
                self._open[path] = safe_open(str(path), framework="pt")
            return self._open[path].get_tensor(name)
        except Exception as error:  # safetensors raises its own types for a malformed file
            raise CorruptFileError(f"{path}: cannot read tensor {name!r} ({error})") from None


def _tensor_files(directory: Path) -> dict[str, Path]:
    index = directory / "model.safetensors.index.json"
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise CorruptFileError(f"{index} is not a safetensors index ({error})") from None
        missing = sorted({f for f in weight_map.values() if not (directory / f).exists()})
        if missing:
            raise MissingFileError(f"{index} lists {', '.join(missing)}, which {directory} does not hold")
        return {name: directory / file for name, file in weight_map.items()}
    for name in SINGLE_FILES:
        path = directory / name
        if path.exists():
            try:
                with safe_open(str(path), framework="pt") as f:
                    return {key: path for key in f.keys()}
            except Exception as error:
                raise CorruptFileError(f"{path} is not a valid safetensors file ({error})") from None
    pickles = [name for name in PICKLE_FILES if (directory / name).exists()]
    if pickles:
        raise UnsafeFileError(f"refusing {directory / pickles[0]}: pickle files can run arbitrary code; zoo reads "
                              f"only safetensors (transformers' save_pretrained writes them by default)")
    raise MissingFileError(f"{directory} holds no {' or '.join(SINGLE_FILES)} and no model.safetensors.index.json")


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
