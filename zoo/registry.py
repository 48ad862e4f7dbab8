"""Model registry and the family contract: `@register_model` names -> configs; families -> how to build,
feed, train, evaluate and serve them.

Mirrors what users know from `timm.create_model` / `timm.list_models("vit_*")` and `whisper.load_model`:
model files register their named sizes at the bottom. A *family* (gpt, alexnet, vit, ...) is the only thing
the trainer and the CLI see (as torchtitan's ModelSpec): they never branch on the family, only call its hooks.

A family is a module listed in FAMILY_MODULES, or any importable module named in the ZOO_FAMILIES environment
variable (comma-separated, e.g. ZOO_FAMILIES=mypackage.family), so a new family is a folder that plugs in.
A listed module that fails to import is an error: a family must never disappear silently.
"""

import argparse
import difflib
import fnmatch
import importlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import default_collate

from zoo.errors import InputError, InputTypeError

# Modules whose import registers families and models; imported on first use (timm does the same).
FAMILY_MODULES = ("zoo.text.gpt", "zoo.vision.alexnet", "zoo.vision.vit", "zoo.speech.whisper", "zoo.diffusion.vae",
                  "zoo.diffusion.dit", "zoo.diffusion.judge")
PLUGIN_VARIABLE = "ZOO_FAMILIES"


@dataclass
class TrainingData:
    """What a family's prepare_data returns: datasets plus the model config completed from the data.

    train/val: map-style datasets; item i must be a pure function of i (data computed on the fly seeds itself
        from i), so that the trainer's DataLoader workers and exact resume see the same samples. The trainer
        picks the indices itself (deterministic, per-rank shards) and batches them with the family's collate.
    config: the model config with data-dependent fields filled in (vocab size, number of classes).
    extras: objects the trained model carries and saves beside its weights, set as attributes on the
        model (e.g. {"tokenizer": tokenizer}); the family's save_extras/load_extras write and read them.
    frozen: auxiliary modules the loss and evaluation use but training never changes (a VAE, a text encoder,
        a feature extractor). The trainer moves them to the device in eval mode with gradients off and passes
        them to `loss` as keyword arguments; they stay out of the optimizer, the checkpoint, the FLOP count
        and FSDP's shards.
    tokens_per_sample: for tokens/s in the log (0: the family's samples are not token sequences).
    lengths: optional size of each training item (audio frames, tokens): the trainer then batches items of
        similar length together (train.group_by_length), so padded batches waste less compute.
    """

    train: Any
    val: Any
    config: Any
    extras: dict = field(default_factory=dict)
    frozen: dict[str, nn.Module] = field(default_factory=dict)
    tokens_per_sample: int = 0
    lengths: Sequence[int] | None = None


@dataclass(frozen=True)
class Command:
    """A `zoo VERB` subcommand a family registers (generate, classify, transcribe, imagine, ...).

    add_arguments(parser) declares its options; run(args) does the work and raises ValueError /
    FileNotFoundError for a user's mistake (the CLI prints it as one line and exits with status 2).
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], None]


def split_decay(named_params: list[tuple[str, nn.Parameter]], weight_decay: float) -> list[dict]:
    """The default parameter groups: weight decay on matrices, none on biases, norm gains and other vectors
    (as GPT-3 and nanoGPT do: decaying a gain towards zero only fights the normalisation)."""
    groups = [{"params": [p for _, p in named_params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for _, p in named_params if p.dim() < 2], "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def no_flop_formula(model: nn.Module, data_config) -> None:
    return None


@dataclass(frozen=True)
class HFFormat:
    """How a family reads and writes checkpoints in the Hugging Face folder format (zoo/interop.py).

    reads: the transformers `model_type` / diffusers `_class_name` values it converts ("gpt2", "llama", ...)
    module: the converter module, imported only when a folder or an export asks for it (it imports the family's
        model, so the family names it rather than imports it). It defines
        load(directory, **overrides) -> the zoo model, its tokenizer set as an extra where the folder has one;
            built with zoo.interop.parameters_on_meta and filled with zoo.interop.fill so nothing is held twice
        export(model, out), optional -> writes a folder transformers / diffusers load
    """

    reads: tuple[str, ...]
    module: str

    def converter(self):
        return importlib.import_module(self.module)

    @property
    def exports(self) -> bool:
        return hasattr(self.converter(), "export")


@dataclass(frozen=True)
class Family:
    """How to build, feed, train, evaluate and serve one kind of model. Every hook below a blank line has a
    default, so a family states only what is its own.

    build(config) -> nn.Module with a `.config` attribute (the config dataclass)
    data_config: dataclass type of the `data.*` settings
    prepare_data(config, data_config, path, cache_dir, model=None, run_dir=None) -> TrainingData
        path None means the built-in data. `model`, when given, is an already trained model whose
        extras (tokenizer, class names) must be reused, as `zoo eval DIR --data PATH` does. `run_dir`, the
        trainer's output directory (None outside training), is where a family may train the frozen helper
        models it needs first (the diffusion denoiser's VAE and judge).
    loss(model, batch, **frozen) -> loss, or (loss, metrics): loss is a scalar tensor, the mean over the batch
        (so accumulation and DDP averaging are exact); metrics, a dict of scalar tensors or floats (loss terms,
        accuracies) that the trainer averages over micro-batches and ranks and logs every step beside the loss.
    evaluate(model, data, data_config, out_dir=None, quick=False) -> dict of float metrics; `quick`
        during training (a few batches), full for `zoo eval`; may save plots into out_dir. The trainer passes
        the EMA weights when EMA is on, and data.frozen holds the frozen modules on the device.

    collate(items) -> batch: a list of dataset items -> one batch; zoo.data.collate.pad_collate pads
        variable-length items and adds masks.
    blocks(model) -> the repeated submodules to shard (FSDP), checkpoint activations for and compile.
    param_groups(named_params, weight_decay) -> AdamW parameter groups over the trained (name, parameter)
        pairs; a group may hold "lr_scale" (its learning rate is lr * lr_scale).
    flops_per_sample(model, data_config) -> training FLOPs per sample (forward + backward) for MFU, or None:
        measured once with torch.utils.flop_counter (frozen modules excluded).
    example_batch(model, generator) -> (batch, frozen): a small valid batch for this model and the frozen
        modules its loss needs, for the cross-model tests (tests/test_all_models.py).
    tiny: config overrides giving a test-sized model of any of the family's named sizes.
    save_extras(model, directory) / load_extras(model, directory): files beside the weights.
    commands: the `zoo` subcommands this family serves.
    hf: the Hugging Face checkpoint formats it reads and writes (HFFormat), if any.
    """

    name: str
    config_class: type
    build: Callable[[Any], nn.Module]
    data_config: type | None = None
    prepare_data: Callable | None = None
    loss: Callable | None = None
    evaluate: Callable | None = None

    collate: Callable[[list], Any] = default_collate
    blocks: Callable[[nn.Module], list[nn.Module]] = lambda model: []
    param_groups: Callable[[list, float], list[dict]] = split_decay
    flops_per_sample: Callable[[nn.Module, Any], float | None] = no_flop_formula
    example_batch: Callable[[nn.Module, torch.Generator], tuple[Any, dict]] | None = None
    tiny: dict = field(default_factory=dict)
    save_extras: Callable | None = None
    load_extras: Callable | None = None
    commands: tuple[Command, ...] = ()
    hf: HFFormat | None = None


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    make_config: Callable[[], Any]
    train: dict = field(default_factory=dict)  # the recipe: TrainConfig overrides for `zoo train NAME`
    data: dict = field(default_factory=dict)  # data config overrides for the recipe
    description: str = ""


_FAMILIES: dict[str, Family] = {}
_MODELS: dict[str, ModelEntry] = {}
_imported = False


def register_family(family: Family) -> Family:
    names = [c.name for c in family.commands]
    for other in _FAMILIES.values():
        if other.name != family.name:
            taken = sorted(set(names) & {c.name for c in other.commands})
            if taken:
                raise InputError(f"family {family.name!r} registers the command(s) {', '.join(taken)} that "
                                 f"family {other.name!r} already serves")
    _FAMILIES[family.name] = family
    return family


def register_model(name: str, family: str, train: dict | None = None, data: dict | None = None):
    """Decorator for a zero-argument function returning the model's config (its named size)."""

    def decorator(make_config: Callable[[], Any]):
        _MODELS[name] = ModelEntry(name, family, make_config, dict(train or {}), dict(data or {}),
                                   (make_config.__doc__ or "").strip().split("\n")[0])
        return make_config

    return decorator


def family_modules() -> list[str]:
    plugins = [m.strip() for m in os.environ.get(PLUGIN_VARIABLE, "").split(",") if m.strip()]
    return [*FAMILY_MODULES, *plugins]


def import_families():
    """Import every family module once. One that fails to import raises, naming the module."""
    global _imported
    if _imported:
        return
    for module in family_modules():
        try:
            importlib.import_module(module)
        except ImportError as error:
            where = f" (listed in {PLUGIN_VARIABLE})" if module not in FAMILY_MODULES else ""
            raise ImportError(f"the zoo family module {module!r}{where} failed to import: {error}") from error
    _imported = True


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style wildcard, sorted: `zoo.list_models("gpt*")`."""
    if not isinstance(pattern, str):
        raise InputTypeError(f"list_models() takes a shell-style pattern such as 'gpt*' (a str), got {pattern!r}")
    import_families()
    return sorted(name for name in _MODELS if fnmatch.fnmatch(name, pattern))


def families() -> list[Family]:
    import_families()
    return [_FAMILIES[name] for name in sorted(_FAMILIES)]


def get_model_entry(name: str) -> ModelEntry:
    if not isinstance(name, str):
        raise InputTypeError(f"a model name is a str (see zoo.list_models()), got {type(name).__name__}")
    import_families()
    if name not in _MODELS:
        close = difflib.get_close_matches(name, list(_MODELS), n=5, cutoff=0.4)
        hint = f"; did you mean: {', '.join(close)}" if close else ""
        raise InputError(f"unknown model {name!r}{hint}. Known models: {', '.join(sorted(_MODELS))}. "
                         f"A saved model is loaded from its directory (no directory {name!r} exists).")
    return _MODELS[name]


def get_family(name: str) -> Family:
    import_families()
    if name not in _FAMILIES:
        raise InputError(f"unknown model family {name!r}; known: {', '.join(sorted(_FAMILIES))}")
    return _FAMILIES[name]


def family_of_config(config) -> Family:
    import_families()
    for family in _FAMILIES.values():
        if type(config) is family.config_class:
            return family
    raise InputError(f"no registered family uses config class {type(config).__name__}")


def zoo_home() -> Path:
    return Path(os.environ.get("ZOO_HOME", Path.home() / ".cache" / "zoo"))
