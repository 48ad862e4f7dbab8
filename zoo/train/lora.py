"""LoRA (Hu et al., 2021) through peft: W0 + dW = W0 + B A with B (d x r), A (r x k), r << min(d, k).

The lecture's LoRA slide: the pretrained W0 is frozen, only A and B train (B starts at zero, so training
starts exactly at the pretrained model), scaled by alpha / r. peft injects the adapters into the
backbone's nn.Linear layers in place; `merge_lora` folds B A into W0 for export, so the exported model
is a plain model of the same family with no adapter code at inference.
"""

import json
from pathlib import Path

import safetensors.torch
from torch import nn

from zoo.errors import InputError

# The backbone's linear layers (zoo/nn): fused QKV, attention output, cross-attention, MLP.
DEFAULT_TARGETS = ("qkv", "q", "kv", "proj", "gate_up", "up", "down")


def parse_lora(spec: str) -> dict:
    """'r=8,alpha=16[,dropout=0.05][,targets=qkv+proj]' -> LoraConfig keyword arguments."""
    allowed = {"r": int, "alpha": int, "dropout": float, "targets": str}
    options = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in allowed:
            raise InputError(f"bad LoRA option {item!r} in {spec!r}; expected key=value with keys "
                             f"{', '.join(allowed)} (e.g. r=8,alpha=16)")
        try:
            options[key] = allowed[key](value)
        except ValueError:
            raise InputError(f"LoRA option {key} expects {allowed[key].__name__}, got {value!r}") from None
    if options.get("r", 8) < 1:
        raise InputError(f"LoRA rank r must be >= 1, got {options['r']}")
    return options


def apply_lora(model: nn.Module, spec: str) -> nn.Module:
    from peft import LoraConfig, inject_adapter_in_model

    options = parse_lora(spec)
    wanted = options.get("targets", "+".join(DEFAULT_TARGETS)).split("+")
    present = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    targets = [t for t in wanted if t in present]
    if not targets:
        raise InputError(f"LoRA targets {wanted} match no nn.Linear in {type(model).__name__}; "
                         f"its linear layers are named: {', '.join(sorted(present))}")
    config = LoraConfig(r=options.get("r", 8), lora_alpha=options.get("alpha", 16),
                        lora_dropout=options.get("dropout", 0.0), target_modules=targets)
    model = inject_adapter_in_model(config, model)
    for name, param in model.named_parameters():
        param.requires_grad = "lora_" in name  # only the adapters train
    model.lora_config = {"r": config.r, "alpha": config.lora_alpha, "dropout": config.lora_dropout,
                         "targets": targets}
    return model


def save_adapter(model: nn.Module, directory: Path):
    from peft import get_peft_model_state_dict

    directory.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file({k: v.contiguous() for k, v in get_peft_model_state_dict(model).items()},
                                str(directory / "adapter_model.safetensors"))
    (directory / "adapter_config.json").write_text(json.dumps(model.lora_config, indent=2))


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight (W0 += alpha/r * B A) and put the plain nn.Linear back."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.get_base_layer())
    for param in model.parameters():
        param.requires_grad = True
    if hasattr(model, "lora_config"):
        del model.lora_config
    return model


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts, each shared tensor once."""
    seen, trainable, total = set(), 0, 0
    for param in model.parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        total += param.numel()
        trainable += param.numel() if param.requires_grad else 0
    return trainable, total
