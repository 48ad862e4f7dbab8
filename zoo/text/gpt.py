"""GPT: a decoder-only language model on the shared backbone (Radford et al., 2018/2019).

token ids -> embedding -> zoo.nn.Transformer (causal; RoPE, GeGLU, GQA, fused attention) -> norm -> LM head
The head shares the embedding matrix by default (Press & Wolf, 2017), as GPT-2 and nanoGPT do.

Two options exist for checkpoints trained elsewhere (zoo/text/hf.py reads them): learned absolute position
embeddings added to the token embeddings (GPT-2, with backbone.positions="none"), and a constant scale on the
token embeddings (Gemma multiplies them by sqrt(dim)).
"""

from dataclasses import dataclass, field

import torch
from torch import nn

from zoo.checkpoint import PretrainedMixin
from zoo.errors import InputError, InputTypeError
from zoo.nn import Transformer, TransformerConfig
from zoo.registry import Family, HFFormat, register_family, register_model
from zoo.text import recipe
from zoo.text.commands import GENERATE

# GPT's backbone defaults (gpt-nano's shape): causal self-attention with 1-D RoPE, GeGLU, RMSNorm.
GPT_BACKBONE = dict(dim=128, n_layers=4, n_heads=4, max_seq_len=256, positions="rope", causal=True)
GPT_POSITIONS = ("rope", "none")


def gpt_backbone(**fields) -> TransformerConfig:
    """A TransformerConfig with GPT's defaults (GPT_BACKBONE), `fields` overriding them."""
    return TransformerConfig(**{**GPT_BACKBONE, **fields})


@dataclass
class GPTConfig:
    vocab_size: int = 256  # set from the tokenizer when training on a corpus
    tie_embeddings: bool = True
    backbone: TransformerConfig = field(default_factory=gpt_backbone)  # width, depth, heads, context, MLP, ...
    learned_positions: bool = False  # a learned embedding per position up to backbone.max_seq_len (GPT-2)
    embed_scale: float = 1.0  # token embeddings are multiplied by it (Gemma: sqrt(dim))

    def __post_init__(self):
        if self.vocab_size < 1:
            raise InputError(f"GPTConfig.vocab_size must be >= 1, got {self.vocab_size}")
        b = self.backbone
        if not isinstance(b, TransformerConfig):
            raise InputTypeError(f"GPTConfig.backbone must be a TransformerConfig, got {type(b).__name__} (a dict of "
                                 f"fields goes through zoo.config.replace_config / config_from_dict)")
        # What a decoder-only language model needs from the shared backbone:
        if not b.causal:
            raise InputError("GPTConfig.backbone.causal=False; allowed: True (a language model predicts each "
                             "token from the previous ones only)")
        if b.positions not in GPT_POSITIONS:
            raise InputError(f"GPTConfig.backbone.positions={b.positions!r}; allowed: {', '.join(GPT_POSITIONS)} "
                             f"(token positions are 1-D)")
        for name in ("cross_attention", "adaln"):
            if getattr(b, name):
                raise InputError(f"GPTConfig.backbone.{name}=True; allowed: False (GPT has no context or "
                                 f"conditioning input)")
        if not self.embed_scale > 0:
            raise InputError(f"GPTConfig.embed_scale must be > 0, got {self.embed_scale}")


class GPT(nn.Module, PretrainedMixin):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.backbone.dim)
        self.pos_embed = nn.Embedding(config.backbone.max_seq_len, config.backbone.dim) if config.learned_positions \
            else None
        self.dropout = nn.Dropout(config.backbone.dropout)
        self.backbone = Transformer(config.backbone)
        self.head = nn.Linear(config.backbone.dim, config.vocab_size, bias=False)
        for embedding in (self.embed, self.pos_embed):
            if embedding is not None:
                nn.init.normal_(embedding.weight, std=0.02)
        if config.tie_embeddings:
            self.head.weight = self.embed.weight
        else:
            nn.init.normal_(self.head.weight, std=0.02)
        self.tokenizer = None  # attached by training / zoo.load (saved beside the weights)

    @property
    def max_seq_len(self) -> int:
        """The longest context the backbone accepts (config.backbone.max_seq_len)."""
        return self.backbone.config.max_seq_len

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.embed.weight.numel() if non_embedding else n

    def forward(self, idx: torch.Tensor, mask: torch.Tensor | None = None, positions: torch.Tensor | None = None,
                cache=None, last_only: bool = False) -> torch.Tensor:
        """idx: (B, T) token ids -> logits (B, T, vocab), or (B, 1, vocab) for the last position only.

        mask: (B, T) True for real tokens (left padding for batched prompts); cache: see zoo.nn.Cache.
        """
        if idx.dim() != 2:
            raise InputError(f"GPT expects token ids of shape (B, T), got {tuple(idx.shape)}")
        x = self.embed(idx)  # (B, T, dim)
        if self.config.embed_scale != 1.0:
            x = x * self.config.embed_scale
        if self.pos_embed is not None:
            positions = self._learned_positions(idx, mask, positions, cache)
            x = x + self.pos_embed(positions)
        x = self.backbone(self.dropout(x), mask=mask, positions=positions, cache=cache)
        if last_only:
            x = x[:, -1:]  # generation needs only the next-token distribution: skip the other T-1 rows
        return self.head(x)

    def _learned_positions(self, idx, mask, positions, cache) -> torch.Tensor:
        """The positions to look up (computed once: the backbone reuses them for RoPE, if it has any)."""
        end = idx.shape[1] + (cache.length if cache is not None else 0)
        if end > self.max_seq_len:
            raise InputError(f"sequence of {end} positions exceeds the {self.max_seq_len} learned position "
                             f"embeddings (max_seq_len)")
        if positions is None:  # the backbone's rule: left padding and cached rows keep their own positions
            positions = self.backbone.default_positions(*idx.shape, mask, cache, idx.device)
        return positions

    def make_cache(self, batch: int, max_len: int | None = None):
        return self.backbone.make_cache(batch, max_len)

    # zoo.decoding.AutoregressiveModel: what greedy, sampled and beam-search decoding call

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    def prefill(self, tokens: torch.Tensor, mask: torch.Tensor | None, cache) -> torch.Tensor:
        """(B, T) left-padded prompts -> (B, V) next-token logits, writing the prompts into the cache."""
        return self(tokens, mask=mask, cache=cache, last_only=True)[:, -1]

    def step(self, tokens: torch.Tensor, cache) -> torch.Tensor:
        """(B, 1) new tokens -> (B, V) next-token logits, appending them to the cache."""
        return self(tokens, cache=cache)[:, -1]


# ----------------------------------------------------------------------------------------------------
# Registration: the family contract (zoo/registry.py) and the named sizes.

def _save_tokenizer(model: GPT, directory):
    if model.tokenizer is not None:
        model.tokenizer.save(directory)


def _load_tokenizer(model: GPT, directory):
    from zoo.text.tokenizer import META_FILE, load_tokenizer

    # A bare architecture saved without training data has no tokenizer; a damaged one is an error.
    model.tokenizer = load_tokenizer(directory) if (directory / META_FILE).exists() else None


# Hugging Face checkpoints: zoo/text/hf.py converts them (imported when a folder or an export asks for it)
HF_READS = ("gpt2", "llama", "mistral", "qwen2", "gemma")


register_family(Family(
    name="gpt", config_class=GPTConfig, build=GPT,
    data_config=recipe.TextDataConfig, prepare_data=recipe.prepare_data, loss=recipe.loss,
    evaluate=recipe.evaluate, flops_per_sample=recipe.flops_per_sample, example_batch=recipe.example_batch,
    blocks=lambda model: list(model.backbone.blocks),
    save_extras=_save_tokenizer, load_extras=_load_tokenizer, commands=(GENERATE,),
    hf=HFFormat(reads=HF_READS, module="zoo.text.hf"),
    tiny={"vocab_size": 97, "backbone": {"n_layers": 2, "dim": 64, "n_heads": 4, "max_seq_len": 32}},
))


# The default recipe (`zoo train gpt-nano`, `make demo`): a small code model on the stdlib's own source with a
# 4096-token byte-level BPE; sized to train in about 10 minutes on 2 CPU cores (README has the figures).
@register_model("gpt-nano", family="gpt",
                train={"steps": 1000, "batch_size": 16, "lr": 2e-3, "min_lr": 2e-4, "warmup": 50,
                       "eval_every": 250, "weight_decay": 0.1, "checkpoint_every": 250},
                data={"tokenizer": "bpe", "vocab_size": 4096, "code_samples": 100})
def gpt_nano() -> GPTConfig:
    """Test-sized GPT (~0.66M non-embedding parameters): 4 layers, width 128, context 256.

    Its GeGLU is 2x wide (6 dim^2 weights a block against GPT-2's 8 dim^2 GELU MLP): at this width the MLP
    matmuls are most of a CPU step, and the gate keeps the quality. On nanoGPT's baby Shakespeare budget
    (README) 2x and the parameter-matched 8/3x both reach val loss 1.685 (1.684), at about 0.84x the
    step time.
    """
    return GPTConfig(backbone=gpt_backbone(dim=128, n_layers=4, n_heads=4, max_seq_len=256, mlp_ratio=2.0))


@register_model("gpt-mini", family="gpt")
def gpt_mini() -> GPTConfig:
    """nanoGPT's Shakespeare scale (~10.6M): 6 layers, 6 heads, width 384, context 256, dropout 0.2."""
    return GPTConfig(backbone=gpt_backbone(dim=384, n_layers=6, n_heads=6, max_seq_len=256, dropout=0.2))


@register_model("gpt-124m", family="gpt")
def gpt_124m() -> GPTConfig:
    """GPT-2 small scale (~124M with a 50k vocabulary): 12 layers, 12 heads, width 768, context 1024."""
    return GPTConfig(vocab_size=50304, backbone=gpt_backbone(dim=768, n_layers=12, n_heads=12, max_seq_len=1024))
