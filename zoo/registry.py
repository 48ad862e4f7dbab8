"""Model registry: `@register_model` names -> configs; families -> how to build and train them.

Mirrors what users know from `timm.create_model` / `timm.list_models("vit_*")` and `whisper.load_model`:
model files register their named sizes at the bottom; `zoo.load` builds one, or rebuilds a saved
directory. A *family* (gpt, alexnet, vit, ...) is the contract the trainer sees: it never branches on
the family, only calls these functions.
"""

import difflib
import fnmatch
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

# Modules whose import registers families and models; imported on first use (timm does the same).
FAMILY_MODULES = ("zoo.text.gpt", "zoo.vision.alexnet", "zoo.vision.vit")


@dataclass
class TrainingData:
    """What a family's prepare_data returns: datasets plus the model config completed from the data.

    train/val: map-style datasets whose items are dicts of tensors (collated with default_collate); the
        trainer picks the indices itself (deterministic, per-rank shards, exact resume).
    config: the model config with data-dependent fields filled in (vocab size, number of classes).
    extras: objects the trained model carries and saves beside its weights, set as attributes on the
        model (e.g. {"tokenizer": tokenizer}); the family's save_extras/load_extras write and read them.
    """

    train: Any
    val: Any
    config: Any
    extras: dict = field(default_factory=dict)
    tokens_per_sample: int = 0  # for tokens/s in the log (0: the family's samples are not token sequences)


@dataclass(frozen=True)
class Family:
    """How to build, feed, train and evaluate one kind of model. The trainer only calls these.

    build(config) -> nn.Module with a `.config` attribute (the config dataclass)
    data_config: dataclass type of the `data.*` settings
    prepare_data(config, data_config, path, cache_dir, model=None) -> TrainingData
        path None means the built-in data. `model`, when given, is an already trained model whose
        extras (tokenizer, class names) must be reused, as `zoo eval DIR --data PATH` does.
    loss(model, batch) -> scalar tensor, the mean over the batch (so accumulation and DDP averaging are exact)
    evaluate(model, data, data_config, out_dir=None, quick=False) -> dict of float metrics; `quick`
        during training (a few batches), full for `zoo eval`; may save plots into out_dir.
    blocks(model) -> the repeated submodules to shard (FSDP) and checkpoint activations for
    save_extras(model, directory) / load_extras(model, directory): files besides the weights
    flops_per_sample(model) -> training FLOPs per sample (forward + backward) for MFU; None means
        measured once with torch.utils.flop_counter
    """

    name: str
    config_class: type
    build: Callable[[Any], nn.Module]
    data_config: type | None = None
    prepare_data: Callable | None = None
    loss: Callable | None = None
    evaluate: Callable | None = None
    blocks: Callable[[nn.Module], list[nn.Module]] = lambda model: []
    save_extras: Callable | None = None
    load_extras: Callable | None = None
    flops_per_sample: Callable | None = None


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
    _FAMILIES[family.name] = family
    return family


def register_model(name: str, family: str, train: dict | None = None, data: dict | None = None):
    """Decorator for a zero-argument function returning the model's config (its named size)."""

    def decorator(make_config: Callable[[], Any]):
        _MODELS[name] = ModelEntry(name, family, make_config, dict(train or {}), dict(data or {}),
                                   (make_config.__doc__ or "").strip().split("\n")[0])
        return make_config

    return decorator


def _import_families():
    global _imported
    if not _imported:
        _imported = True
        for module in FAMILY_MODULES:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as error:
                if not module.startswith(str(error.name)):  # a family that exists but fails to import is a bug
                    raise


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style wildcard, sorted: `zoo.list_models("gpt*")`."""
    _import_families()
    return sorted(name for name in _MODELS if fnmatch.fnmatch(name, pattern))


def get_model_entry(name: str) -> ModelEntry:
    _import_families()
    if name not in _MODELS:
        close = difflib.get_close_matches(name, list(_MODELS), n=5, cutoff=0.4)
        hint = f"; did you mean: {', '.join(close)}" if close else ""
        raise ValueError(f"unknown model {name!r}{hint}. Known models: {', '.join(sorted(_MODELS))}. "
                         f"A saved model is loaded from its directory (no directory {name!r} exists).")
    return _MODELS[name]


def get_family(name: str) -> Family:
    _import_families()
    if name not in _FAMILIES:
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(sorted(_FAMILIES))}")
    return _FAMILIES[name]


def family_of_config(config) -> Family:
    _import_families()
    for family in _FAMILIES.values():
        if type(config) is family.config_class:
            return family
    raise ValueError(f"no registered family uses config class {type(config).__name__}")


def zoo_home() -> Path:
    return Path(os.environ.get("ZOO_HOME", Path.home() / ".cache" / "zoo"))


def build_model(name: str, **overrides) -> nn.Module:
    from zoo.config import replace_config

    entry = get_model_entry(name)
    family = get_family(entry.family)
    config = replace_config(entry.make_config(), overrides)
    model = family.build(config)
    model.zoo_name = name
    return model


def load(name_or_dir: str | os.PathLike, pretrained: bool = False, device=None, dtype=None, **overrides) -> nn.Module:
    """Build a registered model, or rebuild a saved one.

    zoo.load("gpt-nano")                    random init from the named config
    zoo.load("gpt-nano", n_layers=2)        with validated config overrides
    zoo.load("gpt-nano", pretrained=True)   the weights `zoo train gpt-nano` wrote to $ZOO_HOME/gpt-nano
    zoo.load("runs/my-gpt")                 a directory written by save_pretrained / zoo train --out
    """
    from zoo.checkpoint import load_pretrained

    path = Path(name_or_dir)
    if path.exists():
        model = load_pretrained(path, **overrides)
    else:
        if os.sep in str(name_or_dir) or str(name_or_dir).startswith("."):
            raise FileNotFoundError(f"no model directory {str(name_or_dir)!r} (and it is not a model name; "
                                    f"see zoo.list_models())")
        if pretrained:
            home = zoo_home() / str(name_or_dir)
            get_model_entry(str(name_or_dir))  # unknown names fail with suggestions first
            if not (home / "config.json").exists():
                raise FileNotFoundError(f"no trained weights for {str(name_or_dir)!r} in {home}; train them with "
                                        f"`zoo train {name_or_dir}` (or set ZOO_HOME)")
            model = load_pretrained(home, **overrides)
        else:
            model = build_model(str(name_or_dir), **overrides)
    if device is not None or dtype is not None:
        model = model.to(device=device, dtype=dtype)
    return model
