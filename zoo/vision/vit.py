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

from dataclasses import dataclass

import torch
from torch import nn

from zoo.checkpoint import PretrainedMixin
from zoo.nn import Transformer, TransformerConfig, grid_positions
from zoo.registry import Family, register_family, register_model
from zoo.vision.data import VisionDataConfig, evaluate, loss, prepare_data

POOLS = ("mean", "cls")


@dataclass
class ViTConfig:
    num_classes: int = 1000
    image_size: int = 224
    in_channels: int = 3
    patch_size: int = 16
    dim: int = 192
    n_layers: int = 12
    n_heads: int = 3
    mlp: str = "geglu"
    hidden_dim: int | None = None
    norm: str = "rmsnorm"
    dropout: float = 0.0
    rope_theta: float = 100.0
    pool: str = "mean"  # mean | cls
    class_names: tuple[str, ...] = ()  # filled from the training data, so a saved model knows its labels

    def __post_init__(self):
        if self.pool not in POOLS:
            raise ValueError(f"ViTConfig.pool={self.pool!r}; allowed: {', '.join(POOLS)}")
        for name in ("num_classes", "image_size", "in_channels", "patch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"ViTConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.image_size % self.patch_size:
            raise ValueError(f"ViTConfig.image_size={self.image_size} is not divisible by patch_size="
                             f"{self.patch_size}; allowed: a multiple of the patch size")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(f"ViTConfig has {len(self.class_names)} class_names but num_classes={self.num_classes}")
        self.transformer()  # validate the backbone fields now, with their own clear errors

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    def transformer(self) -> TransformerConfig:
        return TransformerConfig(dim=self.dim, n_layers=self.n_layers, n_heads=self.n_heads, mlp=self.mlp,
                                 hidden_dim=self.hidden_dim, norm=self.norm, dropout=self.dropout,
                                 positions="rope2d", rope_theta=self.rope_theta, causal=False,
                                 max_seq_len=(2 * self.grid) ** 2 + 1)  # RoPE: images up to twice the side


class ViT(nn.Module, PretrainedMixin):
    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = c = config
        # A patch_size x patch_size convolution at stride patch_size is the paper's "flatten each patch and
        # project it linearly" (eq. 1), computed without materialising the patches.
        self.patch_embed = nn.Conv2d(c.in_channels, c.dim, kernel_size=c.patch_size, stride=c.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.dim)) if c.pool == "cls" else None
        self.backbone = Transformer(c.transformer())  # ends with the final norm
        self.head = nn.Linear(c.dim, c.num_classes)
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
            raise ValueError(f"ViT expects images of shape (B, {c.in_channels}, H, W), got {tuple(x.shape)}")
        if x.shape[2] % c.patch_size or x.shape[3] % c.patch_size:
            raise ValueError(f"ViT image size {tuple(x.shape[2:])} is not a multiple of patch_size={c.patch_size}")
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
    prepare_data=prepare_data, loss=loss, evaluate=evaluate,
    blocks=lambda model: list(model.backbone.blocks),
))


@register_model("vit-nano", family="vit",
                train=dict(steps=3000, batch_size=128, lr=2e-3, min_lr=2e-5, warmup=100, weight_decay=0.05,
                           grad_clip=1.0, eval_every=250, log_every=50, checkpoint_every=1000),
                data=dict(task="shape", n_train=20000, n_val=2000, augment=True))
def vit_nano() -> ViTConfig:
    """ViT for 32 px images at alexnet-mini's compute (83 vs 87 training MFLOPs per image; 0.22M vs 0.38M
    parameters at 9 classes): 4x4 patches (64 tokens), 4 layers, width 64, 4 heads. Same recipe and steps."""
    return ViTConfig(image_size=32, patch_size=4, dim=64, n_layers=4, n_heads=4)


@register_model("vit-tiny", family="vit")
def vit_tiny() -> ViTConfig:
    """ViT-Ti/16 at 224 px (Touvron et al., 2021, "DeiT"): 12 layers, width 192, 3 heads (~5.5M parameters)."""
    return ViTConfig(image_size=224, patch_size=16, dim=192, n_layers=12, n_heads=3)
