"""The text-to-image denoiser: a Diffusion Transformer (Peebles & Xie, 2023, "Scalable Diffusion Models with
Transformers") on zoo's shared backbone, conditioned on a caption through its own small text encoder.

    dit = zoo.load("dit-shapes")                               # random init; zoo.load(DIR) for a trained one
    text = dit.encode_text(tokens, mask)                       # once per prompt: (context, context_mask, pooled)
    prediction = dit.denoise(latents, timesteps, *text)        # every sampling step
    prediction = dit(latents, timesteps, tokens, mask)         # both at once (training)

Latents (B, C, h, w) are the VAE's scaled latents (zoo.diffusion.vae); `timesteps` (B,) are the scheduler's:
integer steps in [0, num_train_timesteps) for the DDPM family, sigma * num_train_timesteps for rectified flow
(as diffusers' FlowMatchEulerDiscreteScheduler hands them out), so one sinusoidal embedding serves both. What
the prediction means is config.objective (zoo.diffusion.objectives): epsilon, v_prediction or flow (velocity).

The denoiser (DiT, sec. 3.2):
    patchify: a p x p convolution at stride p -> (B, h/p * w/p, dim) tokens
    zoo.nn Transformer, bidirectional, each block:
        self-attention with 2-D axial RoPE over the (row, column) patch grid (Heo et al., 2024): relative
            positions, and any latent size the model is asked for. RoPE alone is blind to where a patch is, and
            a caption names absolute places ("at the top left"), so the patch tokens also get DiT's fixed 2-D
            sin-cos table of their (row, column) before the first block (computed for any grid, no parameters);
        cross-attention to the caption's token states (as Stable Diffusion's UNet and PixArt-alpha do: DiT's
            own class-conditional model had only adaLN);
        adaLN-Zero: a shift, scale and gate per branch regressed from c = t_embedding + pooled text, zero-init so
            every block starts as the identity (DiT's best conditioning, their fig. 5);
    final layer: adaLN-modulated norm and a zero-initialised linear to p * p * C per token, un-patchified.
Representation alignment (REPA: Yu et al., 2024, "Representation Alignment for Generation: Training Diffusion
Transformers Is Easier Than You Think"), optional (align_dim > 0, set when a run names `data.teacher`): a small MLP
reads the patch states after block align_depth, and training pulls them, by cosine similarity, towards a frozen
image classifier's features of the clean image at the same patch (zoo.diffusion.recipe); the denoiser has to
recognise the shape in the noisy input early in its depth. The projector is used only by the training loss.
The text encoder: a bidirectional zoo.nn Transformer over the caption's word tokens with a learned first
position (`null`) that is always present. Its output there is the pooled text vector (as BERT's [CLS]), and it
is all an empty caption leaves: the unconditional input of classifier-free guidance is this learned null state,
trained by dropping 10% of captions (Ho & Salimans, 2022). It trains with the denoiser (Imagen froze a large
pretrained T5; our captions come from a 70-word grammar that a small encoder learns in passing).
"""

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from zoo.checkpoint import PretrainedMixin
from zoo.diffusion import recipe
from zoo.diffusion.commands import COMMANDS
from zoo.diffusion.objectives import OBJECTIVES, WEIGHTINGS
from zoo.errors import InputError
from zoo.nn import Transformer, TransformerConfig, grid_positions
from zoo.nn.transformer import modulate
from zoo.registry import Family, register_family, register_model

TIMESTEP_FREQUENCIES = 256  # sinusoid channels of the timestep before its MLP (DiT's frequency_embedding_size)
MAX_PERIOD = 10_000.0


def denoiser_backbone(**fields) -> TransformerConfig:
    """The DiT trunk: bidirectional, 2-D RoPE, cross-attention to the text, adaLN-Zero; the final norm is the
    model's own (adaLN-modulated) layer."""
    return TransformerConfig(**{**dict(dim=256, n_layers=6, n_heads=4, causal=False, positions="rope2d",
                                       cross_attention=True, adaln=True, final_norm=False, context_dim=128,
                                       max_seq_len=4096),
                                **fields})


def text_backbone(**fields) -> TransformerConfig:
    """The caption encoder: bidirectional, 1-D RoPE over the words."""
    return TransformerConfig(**{**dict(dim=128, n_layers=2, n_heads=4, causal=False, max_seq_len=64), **fields})


@dataclass
class DiTConfig:
    latent_channels: int = 4  # the VAE's (set from it when training)
    latent_size: int = 16  # side of the training latents (image_size / VAE factor; the model takes any multiple of p)
    patch_size: int = 2
    vocab_size: int = 128  # the caption tokenizer's (set from it when training)
    backbone: TransformerConfig = field(default_factory=denoiser_backbone)
    text: TransformerConfig = field(default_factory=text_backbone)
    # The diffusion process (zoo.diffusion.objectives): what is predicted, how timesteps are drawn and weighted.
    objective: str = "flow"  # epsilon | v_prediction | flow
    num_train_timesteps: int = 1000
    beta_schedule: str = "scaled_linear"  # DDPMScheduler's, for epsilon / v_prediction
    weighting: str = "logit_normal"  # none | min_snr (DDPM objectives) | logit_normal (flow)
    min_snr_gamma: float = 5.0  # Hang et al., 2023
    logit_mean: float = 0.0  # SD3's logit-normal sigma sampling: sigma = sigmoid(N(mean, std))
    logit_std: float = 1.0
    caption_dropout: float = 0.1  # share of training captions replaced by the empty caption (for guidance)
    absolute_positions: bool = True  # add the 2-D sin-cos table of each patch's (row, column) to its token
    # Representation alignment (REPA, Yu et al., 2024): block `align_depth`'s patch states, through a small MLP,
    # are pulled towards a frozen image encoder's features of the clean image (cosine similarity, weight
    # `align_weight`). align_dim: the encoder's feature channels (set from it when training; 0: no alignment).
    align_dim: int = 0
    align_depth: int = 3  # of 6 blocks (the paper: block 8 of SiT-XL's 28); against blocks 2 and 4: README "Diffusion"
    align_weight: float = 0.5

    def __post_init__(self):
        for name in ("latent_channels", "latent_size", "patch_size", "vocab_size", "num_train_timesteps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"DiTConfig.{name}={value!r}; allowed: an integer >= 1")
        if self.latent_size % self.patch_size:
            raise InputError(f"DiTConfig.latent_size={self.latent_size} is not a multiple of patch_size="
                             f"{self.patch_size}; allowed: latent sizes divisible by the patch size")
        if self.objective not in OBJECTIVES:
            raise InputError(f"DiTConfig.objective={self.objective!r}; allowed: {', '.join(OBJECTIVES)}")
        allowed = WEIGHTINGS[self.objective]
        if self.weighting not in allowed:
            raise InputError(f"DiTConfig.weighting={self.weighting!r} does not apply to objective "
                             f"{self.objective!r}; allowed: {', '.join(allowed)}")
        if not 0.0 <= self.caption_dropout < 1.0:
            raise InputError(f"DiTConfig.caption_dropout={self.caption_dropout!r}; allowed: a share in [0, 1)")
        if isinstance(self.align_dim, bool) or not isinstance(self.align_dim, int) or self.align_dim < 0:
            raise InputError(f"DiTConfig.align_dim={self.align_dim!r}; allowed: an integer >= 0 (0: no alignment)")
        if self.align_dim and not 1 <= self.align_depth <= self.backbone.n_layers:
            raise InputError(f"DiTConfig.align_depth={self.align_depth!r}; allowed: a block number in 1.."
                             f"{self.backbone.n_layers}")
        if not self.align_weight >= 0:
            raise InputError(f"DiTConfig.align_weight={self.align_weight!r}; allowed: a number >= 0")
        if not self.min_snr_gamma > 0 or not self.logit_std > 0:
            raise InputError(f"DiTConfig.min_snr_gamma={self.min_snr_gamma} and logit_std={self.logit_std} must "
                             f"be > 0")
        b, t = self.backbone, self.text
        if self.absolute_positions and b.dim % 4:
            raise InputError(f"DiTConfig.backbone.dim={b.dim} must be a multiple of 4 for absolute_positions "
                             f"(a sin and a cos per axis); allowed: a multiple of 4, or absolute_positions=False")
        if b.causal or not b.cross_attention or not b.adaln or b.positions != "rope2d" or b.final_norm:
            raise InputError("DiTConfig.backbone must be bidirectional (causal=False) with cross_attention=True, "
                             "adaln=True, positions='rope2d' and final_norm=False (the model's final layer is "
                             "adaLN-modulated); start from zoo.diffusion.dit.denoiser_backbone()")
        if (b.context_dim or b.dim) != t.dim:
            raise InputError(f"DiTConfig.backbone.context_dim={b.context_dim or b.dim} must equal text.dim={t.dim} "
                             f"(cross-attention reads the text encoder's states)")
        if t.causal or t.cross_attention or t.adaln or t.positions == "rope2d":
            raise InputError("DiTConfig.text must be a plain bidirectional encoder (causal=False, no "
                             "cross-attention, no adaLN, 1-D positions)")

    @property
    def tokens(self) -> int:
        """Patch tokens of a latent_size latent."""
        return (self.latent_size // self.patch_size) ** 2


def timestep_embedding(timesteps: torch.Tensor, dim: int = TIMESTEP_FREQUENCIES,
                       max_period: float = MAX_PERIOD) -> torch.Tensor:
    """Sinusoids of (possibly fractional) timesteps, (B,) -> (B, dim): cos then sin at frequencies
    max_period^(-i / (dim/2)), as DiT's TimestepEmbedder (from ADM / Ho et al., 2020)."""
    half = dim // 2
    frequencies = torch.exp(-math.log(max_period) * torch.arange(half, device=timesteps.device) / half)
    angles = timesteps.float()[:, None] * frequencies[None]
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


def grid_embedding(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """DiT's fixed 2-D sin-cos position table: (T, 2) (row, column) -> (T, dim), the first half the row's
    sinusoids and the second the column's, at the timestep embedding's frequencies."""
    return torch.cat([timestep_embedding(positions[:, 0], dim // 2), timestep_embedding(positions[:, 1], dim // 2)],
                     dim=-1)


class TextEncoder(nn.Module):
    """Caption tokens -> (states (B, 1+L, dim), mask (B, 1+L), pooled (B, dim)); position 0 is the learned null."""

    def __init__(self, vocab_size: int, config: TransformerConfig):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, config.dim)
        self.null = nn.Parameter(torch.zeros(config.dim))
        self.transformer = Transformer(config)
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.null, std=0.02)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor):
        B = tokens.shape[0]
        x = torch.cat([self.null.expand(B, 1, -1).to(self.embed.weight.dtype), self.embed(tokens)], dim=1)
        mask = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=mask.device), mask.bool()], dim=1)
        states = self.transformer(x, mask=mask)
        return states, mask, states[:, 0]


class DiT(nn.Module, PretrainedMixin):
    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = c = config
        dim, p, channels = c.backbone.dim, c.patch_size, c.latent_channels
        self.patchify = nn.Conv2d(channels, dim, kernel_size=p, stride=p)
        self.time_mlp = nn.Sequential(nn.Linear(TIMESTEP_FREQUENCIES, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.text_encoder = TextEncoder(c.vocab_size, c.text)
        self.text_pool = nn.Linear(c.text.dim, dim)
        self.transformer = Transformer(c.backbone)
        self.final_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.final = nn.Linear(dim, p * p * channels)
        # REPA's projector: a 3-layer MLP with SiLU from the block's states to the encoder's channels (training only)
        self.align_head = nn.Sequential(nn.Linear(dim, 2 * dim), nn.SiLU(), nn.Linear(2 * dim, 2 * dim), nn.SiLU(),
                                        nn.Linear(2 * dim, c.align_dim)) if c.align_dim else None
        self.init_weights()

    def init_weights(self):
        """DiT's: the patch embedding like a linear layer (Xavier), the timestep MLP N(0, 0.02), and the output
        modulation and projection zero, so the untrained model predicts 0 (the Transformer inits itself)."""
        weight = self.patchify.weight
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        nn.init.zeros_(self.patchify.bias)
        for layer in (self.time_mlp[0], self.time_mlp[2], self.text_pool):
            nn.init.normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)
        for layer in (self.final_modulation[-1], self.final):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def encode_text(self, tokens: torch.Tensor, mask: torch.Tensor):
        """tokens (B, L) int64, mask (B, L) bool (True at words) -> (context, context_mask, pooled)."""
        if tokens.dim() != 2 or mask.shape != tokens.shape:
            raise InputError(f"DiT expects tokens and mask of shape (B, L), got {tuple(tokens.shape)} and "
                             f"{tuple(mask.shape)}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.config.vocab_size):
            raise InputError(f"token ids must be in [0, {self.config.vocab_size}), got "
                             f"[{int(tokens.min())}, {int(tokens.max())}]")
        return self.text_encoder(tokens, mask)

    def denoise(self, latents: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
                context_mask: torch.Tensor, pooled: torch.Tensor, align: bool = False):
        """Noisy latents (B, C, h, w) at `timesteps` (B,) given encoded text -> the prediction (B, C, h, w);
        align=True: also block align_depth's patch states through the REPA projector, (B, tokens, align_dim)."""
        if align and self.align_head is None:
            raise InputError("this DiT has no alignment projector (align_dim=0); allowed: align=False")
        c, p = self.config, self.config.patch_size
        if latents.dim() != 4 or latents.shape[1] != c.latent_channels or latents.shape[2] % p or latents.shape[3] % p:
            raise InputError(f"DiT expects latents of shape (B, {c.latent_channels}, h, w) with h and w multiples "
                             f"of the patch size {p}, got {tuple(latents.shape)}")
        B, C, h, w = latents.shape
        if timesteps.shape != (B,):
            raise InputError(f"DiT expects one timestep per latent, shape ({B},), got {tuple(timesteps.shape)}")
        x = self.patchify(latents).flatten(2).transpose(1, 2)  # (B, h/p * w/p, dim), row-major patches
        cond = self.time_mlp(timestep_embedding(timesteps).to(x.dtype)) + self.text_pool(pooled)
        positions = grid_positions(h // p, w // p, device=latents.device)
        if c.absolute_positions:
            x = x + grid_embedding(positions, x.shape[-1]).to(x.dtype)
        states = {}
        hook = self.transformer.blocks[c.align_depth - 1].register_forward_hook(
            lambda block, inputs, output: states.setdefault("aligned", output)) if align else None
        try:
            x = self.transformer(x, positions=positions, context=context, context_mask=context_mask, cond=cond)
        finally:
            if hook is not None:
                hook.remove()
        shift, scale = self.final_modulation(cond).chunk(2, dim=-1)
        x = self.final(modulate(self.final_norm(x), shift, scale))  # (B, N, p * p * C)
        x = x.view(B, h // p, w // p, p, p, C).permute(0, 5, 1, 3, 2, 4)  # (B, C, h/p, p, w/p, p)
        prediction = x.reshape(B, C, h, w)
        return (prediction, self.align_head(states["aligned"])) if align else prediction

    def forward(self, latents: torch.Tensor, timesteps: torch.Tensor, tokens: torch.Tensor,
                mask: torch.Tensor, align: bool = False):
        return self.denoise(latents, timesteps, *self.encode_text(tokens, mask), align=align)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


# ----------------------------------------------------------------------------------------------------
# Registration: the family contract (zoo/registry.py) and the named sizes.

register_family(Family(
    name="dit", config_class=DiTConfig, build=DiT, data_config=recipe.DiTDataConfig,
    prepare_data=recipe.prepare_data, loss=recipe.loss, evaluate=recipe.evaluate, example_batch=recipe.example_batch,
    blocks=lambda model: [*model.text_encoder.transformer.blocks, *model.transformer.blocks],
    save_extras=recipe.save_extras, load_extras=recipe.load_extras, commands=COMMANDS,
    tiny={"latent_size": 4, "patch_size": 2, "backbone": {"n_layers": 1, "dim": 32, "n_heads": 2, "context_dim": 16},
          "text": {"n_layers": 1, "dim": 16, "n_heads": 2}},
))


@register_model("dit-shapes", family="dit",
                train=dict(steps=3000, batch_size=256, optimizer="muon", lr=4e-3, min_lr=4e-4, warmup=200,
                           weight_decay=0.0, grad_clip=1.0, ema=0.999, precision="auto", eval_every=1000,
                           log_every=50, checkpoint_every=1000),
                data=dict(image_size=32))
def dit_shapes() -> DiTConfig:
    """The CPU recipe's denoiser (9.1M): 6 layers of width 256 over 4x4 patches of the 16x16x4 latents (16 tokens),
    a 2-layer text encoder of width 128, rectified flow. Trained with Muon on the hidden matrices (Jordan et al.,
    2024) and AdamW on the rest, under bf16 autocast where the machine has bf16 units (precision auto: fp32 where
    it has none): both chosen by measured accuracy per minute (README). Batch 256 for 3,000 steps rather than 64 for
    7,000: on a CPU most of a batch-64 step is cost that does not grow with the batch (the optimizer's Newton-Schulz
    iterations are most of it), so four times the batch buys about twice the samples a second; the lr is scaled by
    sqrt(4), the square-root rule for adaptive optimisers (Malladi et al., 2022; README "Diffusion")."""
    return DiTConfig(latent_size=16, patch_size=4)


@register_model("dit-b2", family="dit")
def dit_b2() -> DiTConfig:
    """DiT-B/2's trunk (12 layers, width 768, 12 heads, patch 2; Peebles & Xie, table 1) with a 4-layer text
    encoder of width 512, for 32x32x4 latents (256 px images through an f8 VAE)."""
    return DiTConfig(latent_size=32, backbone=denoiser_backbone(dim=768, n_layers=12, n_heads=12, context_dim=512),
                     text=text_backbone(dim=512, n_layers=4, n_heads=8))
