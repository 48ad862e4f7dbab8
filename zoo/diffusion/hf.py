"""diffusers' AutoencoderKL folders (Stable Diffusion's VAE) as zoo's VAE family (zoo/interop.py finds it for them).

    vae = zoo.load("sd-vae-ft-mse/")    # config.json with "_class_name": "AutoencoderKL" + diffusion_pytorch_model
    z = vae.latents(images)             # scaled by the folder's scaling_factor (0.18215 for Stable Diffusion 1.x)

zoo's VAE wraps diffusers' AutoencoderKL (zoo/diffusion/vae.py), so the weights load under their own names
(`autoencoder.` in front). What the folder's config.json says must be what a VAEConfig builds: every key zoo's
VAE sets (widths, layers, latent channels, groups, scaling factor, ...) is mapped, every other key must hold the
value zoo's build leaves it at (diffusers' default), and whatever differs (other block types, SD3's shift_factor,
per-channel latents_mean, no quant_conv, ...) is named in the error.
"""

import inspect
from pathlib import Path

from zoo.config import replace_config
from zoo.diffusion.vae import VAE, VAEConfig, autoencoder_kwargs
from zoo.errors import CorruptFileError, InputError
from zoo.interop import CONFIG_FILE, CheckpointTensors, fill, parameters_on_meta, read_config

# diffusers before 0.14 named the mid blocks' attention projections differently (its models/attention.py
# AttentionBlock); diffusers renames them when it loads such a file, and so does zoo
DEPRECATED_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
# force_upcast is a hint to pipelines (decode in fp32 when the model runs in fp16); it changes no weight or output
IGNORED = ("force_upcast",)


def load(directory: str | Path, **overrides) -> VAE:
    """zoo's VAE of a diffusers AutoencoderKL folder, built on the meta device and filled from the memory-mapped
    safetensors, so the weights are held once."""
    directory = Path(directory)
    config = vae_config(read_config(directory), directory)
    if overrides:
        config = replace_config(config, overrides)
    with parameters_on_meta():
        vae = VAE(config)
    with CheckpointTensors(directory) as tensors:
        state = {f"autoencoder.{current_name(name)}": tensors.get(name) for name in tensors.keys()}
    fill(vae, state, directory)
    return vae.eval()


def vae_config(folder: dict, directory: Path) -> VAEConfig:
    """config.json -> VAEConfig, refusing every value zoo's VAE would build differently."""
    from diffusers import AutoencoderKL

    defaults = {name: p.default for name, p in inspect.signature(AutoencoderKL.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    given = {key: value for key, value in folder.items() if not key.startswith("_") and key not in IGNORED}
    full = {**defaults, **given}
    try:
        config = VAEConfig(image_size=_side(full["sample_size"]), in_channels=full["in_channels"],
                           latent_channels=full["latent_channels"], block_out_channels=full["block_out_channels"],
                           layers_per_block=full["layers_per_block"], norm_num_groups=full["norm_num_groups"],
                           mid_block_attention=full["mid_block_add_attention"], scaling_factor=full["scaling_factor"])
    except (InputError, TypeError) as error:
        raise CorruptFileError(f"{directory / CONFIG_FILE} describes an AutoencoderKL zoo cannot build: "
                               f"{error}") from None
    built = {**defaults, **autoencoder_kwargs(config), "sample_size": full["sample_size"]}
    problems = [f"{key}={value!r} (zoo's VAE builds {built[key]!r})" if key in built else
                f"{key}={value!r} (not an AutoencoderKL setting)"
                for key, value in given.items() if key not in built or _plain(value) != _plain(built[key])]
    if problems:
        raise InputError(f"{directory / CONFIG_FILE}: zoo's VAE (diffusers' AutoencoderKL with "
                         f"DownEncoderBlock2D / UpDecoderBlock2D blocks) cannot express {'; '.join(problems)}")
    return config


def _side(sample_size) -> int:
    """sample_size is an int or [height, width]; VAEConfig.image_size is the side of square training images."""
    if isinstance(sample_size, (list, tuple)) and len(set(sample_size)) == 1:
        return sample_size[0]
    if isinstance(sample_size, (list, tuple)):
        raise InputError(f"sample_size {list(sample_size)} is not square; VAEConfig.image_size is one side")
    return sample_size


def _plain(value):
    """JSON lists and Python tuples compare alike."""
    return tuple(_plain(v) for v in value) if isinstance(value, (list, tuple)) else value


def current_name(name: str) -> str:
    """A tensor name as today's diffusers spells it (DEPRECATED_ATTENTION)."""
    parts = name.split(".")
    if "attentions" in parts and len(parts) >= 2 and parts[-2] in DEPRECATED_ATTENTION:
        parts[-2] = DEPRECATED_ATTENTION[parts[-2]]
    return ".".join(parts)
