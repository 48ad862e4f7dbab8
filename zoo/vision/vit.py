"""ViT: a Vision Transformer on the shared backbone (Dosovitskiy et al., 2021, "An Image is Worth 16x16 Words").

    image (B, C, H, W) -> patch embedding: Conv2d(kernel = stride = patch) -> (B, h*w, dim) patch tokens
          -> zoo.nn.Transformer (bidirectional, 2-D axial RoPE on the (row, column) of each patch)
          -> pool: mean of the patch tokens, or a class token -> final norm -> linear head (B, classes)

Differences from the paper, all from later work on the same model:
- positions: 2-D axial RoPE (Heo et al., 2024, "Rotary Position Embedding for Vision Transformer") instead
  of learned absolute position embeddings: attention depends on the (row, column) offset between patches,
  and other image sizes need no interpolation. rope_theta=100 as in that paper: with ~10 patches a side,
  the LLM default 10000 would leave most frequencies nearly constant over the grid.
- pooling: the mean of the patch tokens by default (Beyer et al., 2022, "Better plain ViT baselines"
  report it as good or better than the class token at small scale); `pool="cls"` prepends a learned class
  token. RoPE has no "no position" (position 0 *is* the identity rotation), so the class token gets the
  grid's centre ((h-1)/2, (w-1)/2): equally far from opposite edges, no patch is privileged by proximity.
- the backbone's defaults (pre-norm RMSNorm, GeGLU MLP) rather than LayerNorm + GELU; set norm="layernorm",
  mlp="gelu" for the paper's block.
"""

from dataclasses import dataclass, field

import torch
from torch import nn

from zoo.checkpoint import PretrainedMixin
from zoo.errors import InputError, InputTypeError
from zoo.nn import Transformer, TransformerConfig, grid_positions
from zoo.registry import Family, register_family, register_model
from zoo.vision.data import VisionDataConfig, evaluate, example_batch, loss, prepare_data

POOLS = ("mean", "cls")


def max_tokens(image_size: int, patch_size: int) -> int:
    """A context for images up to twice the side (RoPE needs no interpolation): (2 * grid)**2 + a class token."""
    return (2 * (image_size // patch_size)) ** 2 + 1


# ViT's backbone defaults (ViT-Ti's shape at 224 px, 16 px patches): bidirectional, 2-D axial RoPE, theta 100.
VIT_BACKBONE = dict(dim=192, n_layers=12, n_heads=3, positions="rope2d", causal=False, rope_theta=100.0,
                    max_seq_len=max_tokens(224, 16))


def vit_backbone(**fields) -> TransformerConfig:
    """A TransformerConfig with ViT's defaults (VIT_BACKBONE), `fields` overriding them."""
    return TransformerConfig(**{**VIT_BACKBONE, **fields})


@dataclass
class ViTConfig:
    num_classes: int = 1000
    image_size: int = 224
    in_channels: int = 3
    patch_size: int = 16
    pool: str = "mean"  # mean | cls
    class_names: tuple[str, ...] = ()  # filled from the training data, so a saved model knows its labels
    backbone: TransformerConfig = field(default_factory=vit_backbone)  # width, depth, heads, context, MLP, ...

    def __post_init__(self):
        if self.pool not in POOLS:
            raise InputError(f"ViTConfig.pool={self.pool!r}; allowed: {', '.join(POOLS)}")
        for name in ("num_classes", "image_size", "in_channels", "patch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"ViTConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.image_size % self.patch_size:
            raise InputError(f"ViTConfig.image_size={self.image_size} is not divisible by patch_size="
                             f"{self.patch_size}; allowed: a multiple of the patch size")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise InputError(f"ViTConfig has {len(self.class_names)} class_names but num_classes={self.num_classes}")
        b = self.backbone
        if not isinstance(b, TransformerConfig):
            raise InputTypeError(f"ViTConfig.backbone must be a TransformerConfig, got {type(b).__name__} (a dict of "
                                 f"fields goes through zoo.config.replace_config / config_from_dict)")
        # What the ViT needs from the shared backbone:
        if b.positions != "rope2d":
            raise InputError(f"ViTConfig.backbone.positions={b.positions!r}; allowed: rope2d (patches are placed "
                             f"by their (row, column) in the grid)")
        if b.causal:
            raise InputError("ViTConfig.backbone.causal=True; allowed: False (every patch attends to every other)")
        for name in ("cross_attention", "adaln"):
            if getattr(b, name):
                raise InputError(f"ViTConfig.backbone.{name}=True; allowed: False (ViT has no context or "
                                 f"conditioning input)")
        if b.max_seq_len < self.num_tokens:
            raise InputError(f"ViTConfig.backbone.max_seq_len={b.max_seq_len} is too small for {self.num_tokens} "
                             f"tokens ({self.grid}x{self.grid} patches of {self.image_size} px images"
                             f"{' + the class token' if self.pool == 'cls' else ''}); allowed: >= {self.num_tokens}, "
                             f"e.g. {max_tokens(self.image_size, self.patch_size)} for images up to twice the side")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_tokens(self) -> int:
        """Tokens the backbone sees for an image_size image: grid**2 patches (+ 1 class token with pool="cls")."""
        return self.grid ** 2 + (self.pool == "cls")


class ViT(nn.Module, PretrainedMixin):
    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = c = config
        # A patch_size x patch_size convolution at stride patch_size is the paper's "flatten each patch and
        # project it linearly" (eq. 1), computed without materialising the patches.
        dim = c.backbone.dim
        self.patch_embed = nn.Conv2d(c.in_channels, dim, kernel_size=c.patch_size, stride=c.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if c.pool == "cls" else None
        self.backbone = Transformer(c.backbone)  # ends with the final norm
        self.head = nn.Linear(dim, c.num_classes)
        # Zero head: the first loss is exactly log(classes) and early updates go into the features
        # (Dosovitskiy et al., 2021, sec. 3.2 / Beyer et al., 2022).
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def positions(self, h: int, w: int, device=None) -> torch.Tensor:
        """(T, 2) RoPE (row, column) of the tokens: the patch grid, preceded by the class token's grid centre."""
        grid = grid_positions(h, w, device=device).float()  # (h*w, 2)
        if self.cls_token is None:
            return grid
        centre = torch.tensor([[(h - 1) / 2, (w - 1) / 2]], device=device)  # (1, 2)
        return torch.cat([centre, grid])  # (1 + h*w, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) normalised images, H and W multiples of patch_size -> logits (B, num_classes)."""
        c = self.config
        if x.dim() != 4 or x.shape[1] != c.in_channels:
            raise InputError(f"ViT expects images of shape (B, {c.in_channels}, H, W), got {tuple(x.shape)}")
        if x.shape[2] % c.patch_size or x.shape[3] % c.patch_size:
            raise InputError(f"ViT image size {tuple(x.shape[2:])} is not a multiple of patch_size={c.patch_size}")
        x = self.patch_embed(x)  # (B, dim, h, w)
        B, _, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)  # (B, h*w, dim), row-major like grid_positions
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1)  # (B, 1 + h*w, dim)
        x = self.backbone(x, positions=self.positions(h, w, x.device))  # (B, T, dim), final norm applied
        x = x[:, 0] if self.cls_token is not None else x.mean(dim=1)  # (B, dim)
        return self.head(x)  # (B, num_classes)


# ----------------------------------------------------------------------------------------------------
# Registration: the family contract (zoo/registry.py) and the named sizes.

register_family(Family(
    name="vit", config_class=ViTConfig, build=ViT, data_config=VisionDataConfig,
    prepare_data=prepare_data, loss=loss, evaluate=evaluate, example_batch=example_batch,
    blocks=lambda model: list(model.backbone.blocks),
    tiny={"num_classes": 5, "image_size": 32, "patch_size": 8, "backbone": {"n_layers": 2}},
))


@register_model("vit-nano", family="vit",
                train=dict(steps=3000, batch_size=128, lr=2e-3, min_lr=2e-5, warmup=100, weight_decay=0.05,
                           grad_clip=1.0, eval_every=250, log_every=50, checkpoint_every=1000),
                data=dict(task="shape", n_train=20000, n_val=2000, augment=True))
def vit_nano() -> ViTConfig:
    """ViT for 32 px images at alexnet-mini's compute (83 vs 87 training MFLOPs per image; 0.22M vs 0.38M
    parameters at 9 classes): 4x4 patches (64 tokens), 4 layers, width 64, 4 heads. Same recipe and steps."""
    return ViTConfig(image_size=32, patch_size=4,
                     backbone=vit_backbone(dim=64, n_layers=4, n_heads=4, max_seq_len=max_tokens(32, 4)))


@register_model("vit-tiny", family="vit")
def vit_tiny() -> ViTConfig:
    """ViT-Ti/16 at 224 px (Touvron et al., 2021, "DeiT"): 12 layers, width 192, 3 heads (~5.5M parameters)."""
    return ViTConfig(image_size=224, patch_size=16,
                     backbone=vit_backbone(dim=192, n_layers=12, n_heads=3, max_seq_len=max_tokens(224, 16)))
