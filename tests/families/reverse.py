"""A test-only encoder-decoder family: reverse digit strings ("3141" -> "1413").

It exists to prove that the family contract (zoo/registry.py) carries what an encoder-decoder (a Whisper, a
translation model) needs, with nothing in zoo/train or zoo/nn knowing about it:
  - nested configs: two TransformerConfigs, a bidirectional encoder and a causal decoder with cross-attention;
  - variable-length items batched by zoo.data.collate.pad_collate, computed on the fly from (seed, index);
  - a frozen auxiliary module (DigitFeatures) the loss takes as a keyword argument, never trained;
  - a loss returning (loss, metrics);
  - inference through zoo.decoding (greedy and beam search), the encoder run once per string and its keys and
    values cached by the backbone.

Loaded as a plugin: ZOO_FAMILIES=tests.families.reverse (repo root on PYTHONPATH), or imported directly.
"""

import functools
import zlib
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from zoo.checkpoint import PretrainedMixin
from zoo.data.collate import pad_collate
from zoo.decoding import DecodingOptions, TokenState, decode
from zoo.nn import Cache, Transformer, TransformerConfig
from zoo.registry import Family, TrainingData, register_family, register_model
from zoo.utils import eval_mode

BOS, EOS = 10, 11  # after the digits 0-9; BOS also marks the start of the source string
VOCAB = 12
IGNORE = -100  # label padding (cross_entropy's ignore_index)
EVAL_BATCH = 256


# ----------------------------------------------------------------------------------------------------------
# config and model


def encoder_backbone(**fields) -> TransformerConfig:
    return TransformerConfig(**{**dict(dim=64, n_layers=2, n_heads=4, positions="none", causal=False,
                                       max_seq_len=16), **fields})


def decoder_backbone(**fields) -> TransformerConfig:
    return TransformerConfig(**{**dict(dim=64, n_layers=2, n_heads=4, positions="none", causal=True,
                                       cross_attention=True, max_seq_len=16), **fields})


@dataclass
class ReverseConfig:
    feature_dim: int = 16  # width of the frozen DigitFeatures (set from the data)
    encoder: TransformerConfig = field(default_factory=encoder_backbone)
    decoder: TransformerConfig = field(default_factory=decoder_backbone)

    def __post_init__(self):
        e, d = self.encoder, self.decoder
        if e.causal or e.cross_attention:
            raise ValueError("ReverseConfig.encoder must be bidirectional (causal=False) without cross-attention")
        if not d.causal or not d.cross_attention:
            raise ValueError("ReverseConfig.decoder must be causal with cross_attention=True")
        if (d.context_dim or d.dim) != e.dim:
            raise ValueError(f"ReverseConfig.decoder.context_dim={d.context_dim or d.dim} must equal "
                             f"encoder.dim={e.dim}")
        # The model adds learned positions itself; RoPE's positions would also claim Cache.next_position.
        if e.positions != "none" or d.positions != "none":
            raise ValueError("ReverseConfig: encoder.positions and decoder.positions must be 'none' (learned "
                             "positions are added by the model)")


class ReverseModel(nn.Module, PretrainedMixin):
    """features (B, S, F) of the source string -> encoder; decoder tokens (B, T) -> next-token logits (B, T, V).

    Reversal asks decoder step i for the source digit i places from the end, so positions make that a lookup:
    the encoder counts each string's positions from its END, the decoder from its start, and cross-attention
    only has to match equal position numbers. The BOS that opens the source sits at position L (the length),
    which is where the decoder must say EOS.
    """

    def __init__(self, config: ReverseConfig):
        super().__init__()
        self.config = config
        e, d = config.encoder, config.decoder
        self.project = nn.Linear(config.feature_dim, e.dim)  # the trained view of the frozen features
        self.source_positions = nn.Embedding(e.max_seq_len, e.dim)
        self.encoder = Transformer(e)
        self.embed = nn.Embedding(VOCAB, d.dim)
        self.target_positions = nn.Embedding(d.max_seq_len, d.dim)
        self.decoder = Transformer(d)
        self.head = nn.Linear(d.dim, VOCAB, bias=False)
        for embedding in (self.source_positions, self.embed, self.target_positions):
            nn.init.normal_(embedding.weight, std=0.02)
        nn.init.normal_(self.head.weight, std=0.02)

    @property
    def vocab_size(self) -> int:
        return VOCAB

    @property
    def max_seq_len(self) -> int:
        return self.config.decoder.max_seq_len

    def encode(self, features: torch.Tensor, source_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, S, F) features of right-padded sources -> (B, S, dim) encoder output."""
        if features.dim() != 3 or features.shape[-1] != self.config.feature_dim:
            raise ValueError(f"ReverseModel expects source features of shape (B, S, {self.config.feature_dim}), "
                             f"got {tuple(features.shape)}")
        B, S, _ = features.shape
        if S > self.config.encoder.max_seq_len:
            raise ValueError(f"ReverseModel expects sources of at most {self.config.encoder.max_seq_len} "
                             f"positions, got {S}")
        if source_mask is not None and source_mask.shape != (B, S):
            raise ValueError(f"ReverseModel expects source_mask of shape {(B, S)}, got {tuple(source_mask.shape)}")
        lengths = source_mask.sum(1, keepdim=True) if source_mask is not None else torch.full((B, 1), S)
        from_end = (lengths.to(features.device) - 1 - torch.arange(S, device=features.device)).clamp(min=0)
        x = self.project(features) + self.source_positions(from_end)
        return self.encoder(x, mask=source_mask)

    def forward(self, features: torch.Tensor, tokens: torch.Tensor,
                source_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher forcing: features (B, S, F), tokens (B, T) right-padded decoder inputs -> logits (B, T, V).
        Right padding of the tokens needs no mask: causal attention never looks ahead."""
        context = self.encode(features, source_mask)
        if tokens.dim() != 2 or tokens.shape[0] != features.shape[0]:
            raise ValueError(f"ReverseModel expects decoder tokens of shape (B, T) with B={features.shape[0]}, "
                             f"got {tuple(tokens.shape)}")
        x = self.embed(tokens) + self.target_positions(torch.arange(tokens.shape[1], device=tokens.device))
        return self.head(self.decoder(x, context=context, context_mask=source_mask))

    # zoo.decoding.AutoregressiveModel

    def make_cache(self, batch: int, max_len: int | None = None) -> Cache:
        return self.decoder.make_cache(batch, max_len or self.max_seq_len)

    def prefill(self, tokens: torch.Tensor, mask: torch.Tensor | None, cache: Cache,
                features: torch.Tensor, source_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encode the sources once (the decoder caches their cross-attention keys/values), then run the
        left-padded decoder prompts (B, T): -> (B, V) logits of each prompt's next token."""
        context = self.encode(features, source_mask)
        real = mask.long() if mask is not None else torch.ones_like(tokens)
        positions = (real.cumsum(1) - 1).clamp(min=0)  # left padding: each row counts its real tokens
        cache.next_position = real.sum(1)
        x = self.embed(tokens) + self.target_positions(positions)
        return self.head(self.decoder(x, mask=mask, cache=cache, context=context, context_mask=source_mask)[:, -1])

    def step(self, tokens: torch.Tensor, cache: Cache) -> torch.Tensor:
        """(B, 1) new tokens -> (B, V) next-token logits, appended to the cache."""
        x = self.embed(tokens) + self.target_positions(cache.next_position[:, None])
        cache.next_position = cache.next_position + 1
        return self.head(self.decoder(x, cache=cache)[:, -1])  # the cache holds the context and its mask


class DigitFeatures(nn.Module):
    """The frozen auxiliary: a fixed random "feature extractor" of source symbols (a stand-in for a pretrained
    audio or text encoder). An embedding then a fixed mixing layer, seeded, never trained; the mixing layer's
    matmul gives it FLOPs that the trainer must leave out of the model's count."""

    def __init__(self, dim: int, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.embed = nn.Embedding(BOS + 1, dim)
        self.mix = nn.Linear(dim, dim)
        with torch.no_grad():
            for param in self.parameters():
                param.copy_(torch.randn(param.shape, generator=generator))
        self.requires_grad_(False)

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.mix(self.embed(source)))


# ----------------------------------------------------------------------------------------------------------
# data


@dataclass
class ReverseDataConfig:
    min_len: int = 2
    max_len: int = 12
    train_size: int = 100_000  # virtual: items are computed from their index
    val_size: int = 320
    quick_eval: int = 64  # strings decoded by the evaluations during training
    feature_dim: int = 16
    seed: int = 0


def is_validation(digits) -> bool:
    """A string is held out iff its (stable) hash is 0 mod 10: train and validation never share a string."""
    return zlib.crc32(bytes(list(digits))) % 10 == 0


def draw_string(rng: np.random.Generator, min_len: int, max_len: int) -> list[int]:
    return rng.integers(0, 10, int(rng.integers(min_len, max_len + 1))).tolist()


def make_item(digits: list[int]) -> dict:
    target = digits[::-1]
    return {"source": torch.tensor([BOS, *digits]), "decoder_input": torch.tensor([BOS, *target]),
            "labels": torch.tensor([*target, EOS])}


class TrainStrings(Dataset):
    """Item i: a string drawn from a generator seeded with (seed, i), redrawn while it is a validation string."""

    def __init__(self, config: ReverseDataConfig):
        self.config = config

    def __len__(self):
        return self.config.train_size

    def __getitem__(self, i: int) -> dict:
        c = self.config
        rng = np.random.default_rng([c.seed, int(i)])
        while True:
            digits = draw_string(rng, c.min_len, c.max_len)
            if not is_validation(digits):
                return make_item(digits)


class ValStrings(Dataset):
    """val_size distinct held-out strings, drawn once from their own seeded stream."""

    def __init__(self, config: ReverseDataConfig):
        rng = np.random.default_rng([config.seed, 2**32 - 1])
        seen, self.strings = set(), []
        while len(self.strings) < config.val_size:
            digits = draw_string(rng, config.min_len, config.max_len)
            if is_validation(digits) and tuple(digits) not in seen:
                seen.add(tuple(digits))
                self.strings.append(digits)

    def __len__(self):
        return len(self.strings)

    def __getitem__(self, i: int) -> dict:
        return make_item(self.strings[i])


collate = functools.partial(pad_collate, pad={"source": 0, "decoder_input": 0, "labels": IGNORE})


def prepare_data(config: ReverseConfig, data_config: ReverseDataConfig, path, cache_dir, model=None,
                 run_dir=None) -> TrainingData:
    if path is not None:
        raise ValueError("the reverse family computes its data; it takes no --data path")
    longest = data_config.max_len + 1  # BOS + digits (source), BOS + digits (decoder input)
    if not 1 <= data_config.min_len <= data_config.max_len:
        raise ValueError(f"need 1 <= data.min_len <= data.max_len, got {data_config.min_len}, {data_config.max_len}")
    for name in ("encoder", "decoder"):
        if getattr(config, name).max_seq_len < longest + (name == "decoder"):  # decoding feeds EOS's position too
            raise ValueError(f"data.max_len={data_config.max_len} needs model.{name}.max_seq_len >= "
                             f"{longest + (name == 'decoder')}")
    features = DigitFeatures(data_config.feature_dim, seed=data_config.seed)
    config = ReverseConfig(feature_dim=data_config.feature_dim, encoder=config.encoder, decoder=config.decoder)
    return TrainingData(TrainStrings(data_config), ValStrings(data_config), config, frozen={"features": features},
                        tokens_per_sample=0)


# ----------------------------------------------------------------------------------------------------------
# loss, evaluation, test hooks


def sequence_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-string mean token cross-entropy and token accuracy, (B,) each. Averaging per string (not per token
    over the batch) keeps the batch loss a mean over samples, so micro-batches and ranks average exactly."""
    real = labels != IGNORE
    tokens = real.sum(1)
    token_loss = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=IGNORE, reduction="none")
    correct = (logits.argmax(-1) == labels) & real
    return token_loss.sum(1) / tokens, correct.sum(1) / tokens


def loss(model, batch: dict, features: DigitFeatures):
    logits = model(features(batch["source"]), batch["decoder_input"], batch["source_mask"])
    per_string, accuracy = sequence_loss(logits, batch["labels"])
    return per_string.mean(), {"token_accuracy": accuracy.float().mean()}


def reverse_strings(model: ReverseModel, features: DigitFeatures, strings: list[list[int]],
                    beam_size: int | None = None) -> list[list[int]]:
    """Decode each string's reversal through zoo.decoding (greedy, or beam search with beam_size)."""
    device = next(model.parameters()).device
    batch = collate([make_item(s) for s in strings])
    source, mask = batch["source"].to(device), batch["source_mask"].to(device)
    options = DecodingOptions(max_new_tokens=max(len(s) for s in strings) + 1, temperature=0, beam_size=beam_size)
    states = decode(model, [[BOS]] * len(strings), options, [TokenState(EOS) for _ in strings],
                    features=features(source), source_mask=mask)
    return [s.tokens[:-1] if s.finish_reason == "eot" else s.tokens for s in states]


def exact_accuracy(model, features, strings, beam_size=None) -> float:
    hits = 0
    for i in range(0, len(strings), EVAL_BATCH):
        chunk = strings[i:i + EVAL_BATCH]
        hits += sum(out == s[::-1] for out, s in zip(reverse_strings(model, features, chunk, beam_size), chunk))
    return hits / len(strings)


@torch.inference_mode()
def evaluate(model, data: TrainingData, data_config: ReverseDataConfig, out_dir=None, quick: bool = False) -> dict:
    """val_loss (teacher forced), exact-sequence accuracy of greedy decoding, and (full) of beam search."""
    strings = data.val.strings[:data_config.quick_eval] if quick else data.val.strings
    features = data.frozen["features"]
    device = next(model.parameters()).device
    with eval_mode(model):
        total = 0.0
        for i in range(0, len(strings), EVAL_BATCH):
            batch = collate([make_item(s) for s in strings[i:i + EVAL_BATCH]])
            batch = {k: v.to(device) for k, v in batch.items()}
            per_string, _ = sequence_loss(model(features(batch["source"]), batch["decoder_input"],
                                                batch["source_mask"]), batch["labels"])
            total += per_string.sum().item()
        metrics = {"val_loss": total / len(strings), "exact_accuracy": exact_accuracy(model, features, strings)}
        if not quick:
            metrics["beam_exact_accuracy"] = exact_accuracy(model, features, strings, beam_size=4)
    return metrics


def example_batch(model: ReverseModel, generator: torch.Generator) -> tuple[dict, dict]:
    """Eight random strings of lengths 2..12 (so the batch is padded) and the frozen features."""
    rng = np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=generator)))
    strings = [draw_string(rng, 2, 12) for _ in range(8)]
    return collate([make_item(s) for s in strings]), {"features": DigitFeatures(model.config.feature_dim)}


register_family(Family(
    name="reverse", config_class=ReverseConfig, build=ReverseModel, data_config=ReverseDataConfig,
    prepare_data=prepare_data, loss=loss, evaluate=evaluate, collate=collate, example_batch=example_batch,
    blocks=lambda model: [*model.encoder.blocks, *model.decoder.blocks],
    tiny={"encoder": {"n_layers": 1, "dim": 32, "n_heads": 2}, "decoder": {"n_layers": 1, "dim": 32, "n_heads": 2}},
))


@register_model("reverse-tiny", family="reverse",
                train={"steps": 400, "batch_size": 64, "lr": 6e-3, "min_lr": 6e-4, "warmup": 20, "eval_every": 200,
                       "weight_decay": 0.0})
def reverse_tiny() -> ReverseConfig:
    """Digit-string reversal, encoder-decoder (2 + 2 layers, width 64): the test family of the contract."""
    return ReverseConfig()
