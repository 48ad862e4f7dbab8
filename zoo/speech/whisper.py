"""A Whisper-style encoder-decoder on the shared backbone (Radford et al., 2022, "Robust Speech Recognition via
Large-Scale Weak Supervision", sec. 2.2 and fig. 1).

    log-mel (B, 80, T) -> conv(3, stride 1) -> GELU -> conv(3, stride 2) -> GELU    (B, S = ceil(T/2), d)
                       -> + sinusoidal positions -> zoo.nn.Transformer (bidirectional) -> audio features
    tokens (B, L) -> embedding -> zoo.nn.Transformer (causal, RoPE, cross-attention to the audio features)
                  -> tied head -> next-token logits (B, L, V)

One decoder does every task through its prompt (<|startoftranscript|><|xx|><|transcribe|> or <|translate|>
<|notimestamps|> ...): language identification is the token after <|startoftranscript|>, and no-speech is
<|nospeech|> in that place. Clips keep their own length (a 3 s clip is 150 encoder frames, not 1500): the
encoder attends with a padding mask instead of to 27 s of silence.

Differences from the paper's model, each a choice of zoo's backbone: the decoder uses RoPE instead of learned
positions (so the text context is not tied to 448 learned rows); the named sizes with Whisper's dimensions
keep its LayerNorm + GELU MLP + biases, the CPU recipe uses the backbone's defaults (RMSNorm, GeGLU). Real
Whisper checkpoints (`zoo.load` of a Hugging Face folder, zoo/speech/hf.py) set `learned_positions` and
`pad_to_window`, which give back the paper's learned decoder positions and fixed 30 s encoder input. An
optional CTC head on the encoder (Graves et al., 2006) trains jointly with the decoder's cross-entropy (the
joint CTC-attention objective, Watanabe et al., 2017, "Hybrid CTC/Attention Architecture for End-to-End
Speech Recognition"): it forces the encoder to align sounds with text early in training. An optional second
CTC head on an intermediate encoder block predicts the transcript's phonemes (hierarchical multitask CTC:
Toshniwal et al., 2017, "Multitask Learning with Low-Level Auxiliary Tasks for Encoder-Decoder Based Speech
Recognition"; Sanabria & Metze, 2018, "Hierarchical Multitask Learning with CTC"): eSpeak's phoneme names, classes
the languages share, which say how a sound is made where a Mandarin character's bytes say nothing; it only trains.
"""

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from zoo.checkpoint import PretrainedMixin
from zoo.errors import InputError
from zoo.nn import Transformer, TransformerConfig, make_norm
from zoo.registry import Family, HFFormat, register_family, register_model
from zoo.speech import recipe
from zoo.speech.audio import DYNAMIC_RANGE, LOG_FLOOR
from zoo.speech.commands import TRANSCRIBE

MAX_AUDIO_FRAMES = 1500  # encoder frames of a 30 s window: 3000 mel frames (10 ms hop) after the stride-2 stem
MAX_TEXT_TOKENS = 448  # Whisper's text context


def encoder_backbone(**fields) -> TransformerConfig:
    """The audio encoder: bidirectional, absolute sinusoidal positions added by the model (positions='none')."""
    return TransformerConfig(**{**dict(dim=256, n_layers=4, n_heads=4, causal=False, positions="none",
                                       max_seq_len=MAX_AUDIO_FRAMES), **fields})


def decoder_backbone(**fields) -> TransformerConfig:
    """The text decoder: causal, RoPE, cross-attention to the audio features."""
    return TransformerConfig(**{**dict(dim=256, n_layers=4, n_heads=4, causal=True, positions="rope",
                                       cross_attention=True, max_seq_len=MAX_TEXT_TOKENS), **fields})


@dataclass
class WhisperConfig:
    n_mels: int = 80
    vocab_size: int = 51865  # set from the tokenizer when training
    ctc_weight: float = 0.0  # weight of the encoder's CTC loss in the joint objective (0: no CTC head)
    # Weight of the auxiliary phoneme CTC loss (0: no phoneme head) and the encoder block (1..encoder.n_layers)
    # whose output feeds it: below the top, as Sanabria & Metze (2018) put the lower-level units lower in the
    # encoder, leaving the blocks above it free to turn sounds into spelling for the byte CTC head and decoder.
    # None: the middle block, max(1, encoder.n_layers // 2) (phoneme_block), which follows the encoder's depth.
    phoneme_ctc_weight: float = 0.0
    phoneme_ctc_layer: int | None = None
    # Whether the decoder learnt Whisper's timestamp tokens: zoo's recipe trains <|notimestamps|> targets only, so
    # transcribe() decodes without timestamps unless asked (a model never taught them writes garbage timestamps,
    # and the segmenting that follows them drops text).
    timestamps: bool = False
    # Translate from the transcript (consecutive decoding, Dong et al., 2021): a translation is decoded after the
    # clip's transcript, which prompts it as previous text (<|startofprev|> transcript <|startoftranscript|> <|xx|>
    # <|translate|> ...), so the decoder maps words it can read instead of finding each one in the audio. Trained
    # with the true transcript; transcribe(task="translate") and the recipe's evaluation transcribe first.
    translate_from_transcript: bool = False
    # Whisper's learned absolute positions in the decoder (max_seq_len rows added to the token embeddings, as the
    # paper's model and every real checkpoint) instead of the backbone's RoPE; needs decoder.positions='none'.
    learned_positions: bool = False
    # Feed the encoder whole 30 s windows (2 * encoder.max_seq_len mel frames), shorter clips padded with the
    # log-mel of silence: real Whisper was trained on nothing else (openai/whisper pads every clip to 30 s), so
    # its encoder must see the same. zoo's recipe keeps each clip at its own length instead.
    pad_to_window: bool = False
    encoder: TransformerConfig = field(default_factory=encoder_backbone)
    decoder: TransformerConfig = field(default_factory=decoder_backbone)

    def __post_init__(self):
        e, d = self.encoder, self.decoder
        if self.n_mels < 1 or self.vocab_size < 1:
            raise InputError(f"WhisperConfig.n_mels and vocab_size must be >= 1, got {self.n_mels}, {self.vocab_size}")
        for name in ("ctc_weight", "phoneme_ctc_weight"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise InputError(f"WhisperConfig.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.ctc_weight + self.phoneme_ctc_weight >= 1.0:
            raise InputError(f"WhisperConfig.ctc_weight + phoneme_ctc_weight must be below 1 (the decoder's "
                             f"cross-entropy keeps the rest of the loss), got {self.ctc_weight} + "
                             f"{self.phoneme_ctc_weight}")
        # checked only with a phoneme head: configs saved before the default became None carry layer 2 whatever
        # their depth, and one without the head never reads it
        if self.phoneme_ctc_weight > 0 and self.phoneme_ctc_layer is not None \
                and not 1 <= self.phoneme_ctc_layer <= e.n_layers:
            raise InputError(f"WhisperConfig.phoneme_ctc_layer={self.phoneme_ctc_layer}; allowed: an encoder block "
                             f"from 1 to encoder.n_layers={e.n_layers}")
        for name in ("timestamps", "translate_from_transcript", "learned_positions", "pad_to_window"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"WhisperConfig.{name} must be true or false, got {getattr(self, name)!r}")
        if self.learned_positions and d.positions != "none":
            raise InputError(f"WhisperConfig.learned_positions=True adds learned positions to the decoder's input, "
                             f"so decoder.positions must be 'none', got {d.positions!r}")
        if e.causal or e.cross_attention or e.positions != "none":
            raise InputError("WhisperConfig.encoder must be bidirectional (causal=False), without cross-attention, "
                             "with positions='none' (the model adds sinusoidal positions)")
        if not d.causal or not d.cross_attention or d.positions == "rope2d":
            raise InputError("WhisperConfig.decoder must be causal with cross_attention=True and 1-D positions")
        if (d.context_dim or d.dim) != e.dim:
            raise InputError(f"WhisperConfig.decoder.context_dim={d.context_dim or d.dim} must equal "
                             f"encoder.dim={e.dim} (cross-attention reads the audio features)")

    @property
    def phoneme_block(self) -> int:
        """The encoder block (1..encoder.n_layers) whose output feeds the phoneme head."""
        return self.phoneme_ctc_layer if self.phoneme_ctc_layer is not None else max(1, self.encoder.n_layers // 2)


def sinusoids(length: int, dim: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Transformer sinusoidal positions (Vaswani et al., 2017, sec. 3.5), Whisper's encoder positions: (length, dim)."""
    increment = math.log(max_timescale) / (dim // 2 - 1)
    inv_timescales = torch.exp(-increment * torch.arange(dim // 2))
    angles = torch.arange(length)[:, None] * inv_timescales[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class Whisper(nn.Module, PretrainedMixin):
    def __init__(self, config: WhisperConfig):
        super().__init__()
        self.config = c = config
        e, d = c.encoder, c.decoder
        self.conv1 = nn.Conv1d(c.n_mels, e.dim, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(e.dim, e.dim, kernel_size=3, stride=2, padding=1)  # 10 ms -> 20 ms per frame
        self.register_buffer("audio_positions", sinusoids(e.max_seq_len, e.dim), persistent=False)
        self.encoder = Transformer(e)
        self.embed = nn.Embedding(c.vocab_size, d.dim)
        self.text_positions = nn.Embedding(d.max_seq_len, d.dim) if c.learned_positions else None
        self.decoder = Transformer(d)
        self.head = nn.Linear(d.dim, c.vocab_size, bias=False)
        self.head.weight = self.embed.weight  # tied, as Whisper's decoder
        nn.init.normal_(self.embed.weight, std=0.02)
        if self.text_positions is not None:
            nn.init.normal_(self.text_positions.weight, std=0.02)
        # CTC over the transcript's UTF-8 bytes plus one blank (the last class): recipe.CTC_CLASSES
        self.ctc_head = nn.Linear(e.dim, recipe.CTC_CLASSES) if c.ctc_weight > 0 else None
        # The phoneme head reads the output of encoder block config.phoneme_block: the pre-norm residual stream,
        # which no norm has touched (each block normalises its branches' inputs, the encoder's final norm only
        # the top block's output). So the head brings its own norm: the final norm's gain is fitted to the top
        # block's statistics, and sharing it would pull it two ways.
        self.phoneme_head = (nn.Sequential(make_norm(e.norm, e.dim, e.norm_eps, e.bias),
                                           nn.Linear(e.dim, recipe.PHONEME_CLASSES))
                             if c.phoneme_ctc_weight > 0 else None)
        self.tokenizer = None  # attached by training / zoo.load (saved beside the weights)

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def max_seq_len(self) -> int:
        return self.config.decoder.max_seq_len

    # ------------------------------------------------------------------------------------------- encoder

    def embed_audio(self, mel: torch.Tensor, mel_mask: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """mel (B, n_mels, T) log-mel frames, mel_mask (B, T) True for real frames (right padding) ->
        audio features (B, S, d) and their mask (B, S), S = ceil(T / 2)."""
        c = self.config
        if mel.dim() != 3 or mel.shape[1] != c.n_mels:
            raise InputError(f"Whisper expects log-mel frames of shape (B, {c.n_mels}, T), got {tuple(mel.shape)}")
        if mel_mask is not None and mel_mask.shape != (mel.shape[0], mel.shape[2]):
            raise InputError(f"Whisper expects mel_mask of shape (B, T) = {(mel.shape[0], mel.shape[2])}, "
                             f"got {tuple(mel_mask.shape)}")
        if c.pad_to_window and mel.shape[2] <= 2 * c.encoder.max_seq_len:
            mel, mel_mask = self._pad_to_window(mel, mel_mask)
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # (B, S, d)
        S = x.shape[1]
        if S > c.encoder.max_seq_len:
            raise InputError(f"Whisper expects at most {2 * c.encoder.max_seq_len} mel frames "
                             f"({c.encoder.max_seq_len} encoder frames, 30 s), got {mel.shape[2]}; "
                             f"longer audio goes through transcribe(), window by window")
        mask = mel_mask[:, ::2] if mel_mask is not None else None  # frame s of the stride-2 conv is centred on 2s
        if mask is not None and bool(mask.all()):
            mask = None  # no padding: SDPA's unmasked path
        x = x + self.audio_positions[:S].to(x.dtype)
        return self.encoder(x, mask=mask), mask

    def _pad_to_window(self, mel: torch.Tensor, mel_mask: torch.Tensor | None) -> tuple[torch.Tensor, None]:
        """(B, n_mels, T) -> (B, n_mels, 2 * encoder.max_seq_len), no mask: every clip padded to a whole window
        with the log-mel of digital silence, as Whisper's front end pads the waveform with zeros (openai/whisper
        audio.py, log_mel_spectrogram(padding=N_SAMPLES)). Silence is floored at 8 log10 units below the clip's
        peak (but never below log10(LOG_FLOOR)), which zoo.speech.audio's (x + 4) / 4 maps to
        max(peak - 2, (log10(LOG_FLOOR) + 4) / 4) for the normalised peak."""
        B, n_mels, T = mel.shape
        real = (mel_mask[:, None, :] if mel_mask is not None
                else torch.ones(B, 1, T, dtype=torch.bool, device=mel.device))
        peak = mel.masked_fill(~real, -math.inf).amax(dim=(1, 2), keepdim=True)  # (B, 1, 1)
        silence = (peak - DYNAMIC_RANGE / 4).clamp(min=(math.log10(LOG_FLOOR) + 4) / 4)
        padded = silence.expand(B, n_mels, 2 * self.config.encoder.max_seq_len).clone()
        padded[:, :, :T] = torch.where(real, mel, silence)
        return padded, None

    # ------------------------------------------------------------------------------------------- decoder

    def logits(self, tokens: torch.Tensor, audio_features: torch.Tensor,
               audio_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher forcing: tokens (B, L), right-padded -> next-token logits (B, L, V). Right padding needs no
        mask: causal attention never looks ahead."""
        if tokens.dim() != 2 or tokens.shape[0] != audio_features.shape[0]:
            raise InputError(f"Whisper expects decoder tokens of shape (B, L) with B={audio_features.shape[0]}, "
                             f"got {tuple(tokens.shape)}")
        x = self.decoder(self.embed_text(tokens), context=audio_features, context_mask=audio_mask)
        return self.head(x)

    def embed_text(self, tokens: torch.Tensor, mask: torch.Tensor | None = None, cache=None) -> torch.Tensor:
        """(B, T) tokens -> (B, T, d) decoder input: the token embeddings, plus the learned positions when the
        config has them. Positions count each row's real tokens (mask: True for real ones; a cache: the ones
        decoded so far), so a left-padded prompt sits where the unpadded one would, as with RoPE."""
        x = self.embed(tokens)
        if self.text_positions is None:
            return x
        B, T = tokens.shape
        start = cache.length if cache is not None else 0
        if start + T > self.max_seq_len:
            raise InputError(f"sequence of {start + T} positions exceeds the limit of {self.max_seq_len} "
                             f"(the decoder's learned positions, max_seq_len)")
        real = mask.long() if mask is not None else torch.ones(B, T, dtype=torch.long, device=tokens.device)
        before = cache.valid[:, :start].sum(dim=1, keepdim=True) if cache is not None and cache.has_padding else start
        return x + self.text_positions((before + real.cumsum(dim=1) - 1).clamp(min=0))

    def forward(self, mel: torch.Tensor, tokens: torch.Tensor, mel_mask: torch.Tensor | None = None,
                ctc: bool = False):
        """(B, n_mels, T) log-mel, (B, L) decoder input tokens -> (B, L, V) logits; with ctc=True (training
        with the CTC heads: one forward, as DDP needs) -> (logits, the byte CTC head's (B, S, 257) logits, the
        phoneme head's (B, S, PHONEME_CLASSES) logits, the audio mask (B, S)), a head's logits None when the
        model has no such head, the mask None when nothing is padded."""
        if not ctc:
            return self.logits(tokens, *self.embed_audio(mel, mel_mask))
        if self.ctc_head is None and self.phoneme_head is None:
            raise InputError("this Whisper has no CTC head (config.ctc_weight = 0 and phoneme_ctc_weight = 0)")
        # The output of block config.phoneme_block, caught by a hook during this one forward: zoo.nn's Transformer
        # returns only its top, and a second encoder pass would double the cost (and DDP allows one forward).
        hidden = []
        hook = (self.encoder.blocks[self.config.phoneme_block - 1].register_forward_hook(
            lambda block, inputs, output: hidden.append(output)) if self.phoneme_head is not None else None)
        try:
            audio, audio_mask = self.embed_audio(mel, mel_mask)
        finally:  # never left on the block: decoding and evaluation run the encoder without it
            if hook is not None:
                hook.remove()
        logits = self.logits(tokens, audio, audio_mask)
        ctc_logits = self.ctc_head(audio) if self.ctc_head is not None else None
        phoneme_logits = self.phoneme_head(hidden[0]) if self.phoneme_head is not None else None
        return logits, ctc_logits, phoneme_logits, audio_mask

    # ------------------------------------------------------------- zoo.decoding.AutoregressiveModel

    def make_cache(self, batch: int, max_len: int | None = None):
        return self.decoder.make_cache(batch, max_len or self.max_seq_len)

    def prefill(self, tokens: torch.Tensor, mask: torch.Tensor | None, cache, audio_features: torch.Tensor,
                audio_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) left-padded prompts over the audio features -> (B, V) logits of each prompt's next token. The
        cross-attention keys/values of the audio are computed here, once, and kept in the cache."""
        x = self.decoder(self.embed_text(tokens, mask, cache), mask=mask, cache=cache, context=audio_features,
                         context_mask=audio_mask)
        return self.head(x[:, -1])

    def step(self, tokens: torch.Tensor, cache) -> torch.Tensor:
        """(B, 1) new tokens -> (B, V) next-token logits, appended to the cache."""
        return self.head(self.decoder(self.embed_text(tokens, cache=cache), cache=cache)[:, -1])

    # ------------------------------------------------- openai-whisper's API: model.transcribe, detect_language

    def _require_tokenizer(self, method: str):
        if self.tokenizer is None:
            raise InputError(f"Whisper.{method}() needs a tokenizer, and this model has none (model.tokenizer is "
                             f"None: a bare architecture); train it (zoo train) or load a trained model directory "
                             f"(zoo.load(DIR))")

    def transcribe(self, audio, *, task: str = "transcribe", language: str | None = None,
                   **options) -> dict | list[dict]:
        """Transcribe (or translate into English) audio of any length, window by window: openai-whisper's
        `model.transcribe(audio)`, which is zoo.speech.transcribe.transcribe(self, audio, ...) (its options:
        temperature, beam_size, best_of, initial_prompt, without_timestamps, ...).

        audio: a file path, a 16 kHz mono waveform (tensor or numpy array), or a list of them (-> a list of
        results). language: a code of the model's languages, or None to detect it from the first 30 s.
        Returns {"text": the whole transcript, "language": the code decoded with, "segments": [{"start", "end"
        (seconds), "text", "tokens", "avg_logprob", "no_speech_prob", ...}], "no_speech_prob": P(<|nospeech|>)
        of the first 30 s window}. Bad input (a missing or unreadable file, empty audio, an unknown language
        or task, options the temperature schedule cannot use) raises ValueError or FileNotFoundError.
        """
        from zoo.speech.transcribe import transcribe

        self._require_tokenizer("transcribe")
        return transcribe(self, audio, task=task, language=language, **options)

    def detect_language(self, audio_or_mel) -> tuple[str, dict[str, float]]:
        """The spoken language of the first 30 s window: openai-whisper's `_, probs = model.detect_language(mel)`.

        audio_or_mel: a file path, a 16 kHz mono waveform (1-D tensor or numpy array), or a log-mel (n_mels, T)
        tensor (zoo.speech.audio.log_mel_spectrogram). Returns the most likely code and {code: probability}
        over the model's language tokens (only languages compete, so the probabilities sum to 1)."""
        from zoo.speech.audio import N_FRAMES, log_mel_spectrogram
        from zoo.speech.decoding import detect_language
        from zoo.speech.transcribe import _load

        self._require_tokenizer("detect_language")
        n_mels = self.config.n_mels
        if isinstance(audio_or_mel, torch.Tensor) and audio_or_mel.dim() == 2:
            if audio_or_mel.shape[0] != n_mels:
                raise InputError(f"Whisper.detect_language() takes a path, a 1-D 16 kHz waveform or a log-mel of "
                                 f"shape ({n_mels}, T); got a tensor of shape {tuple(audio_or_mel.shape)}")
            mel = audio_or_mel
        else:
            mel = log_mel_spectrogram(_load(audio_or_mel), n_mels=n_mels)
        weight = self.conv1.weight
        return detect_language(self, mel[:, :N_FRAMES].to(weight.device, weight.dtype))


# ----------------------------------------------------------------------------------------------------------
# Registration: the family contract (zoo/registry.py) and the named sizes.

def _save_tokenizer(model: Whisper, directory):
    if model.tokenizer is not None:
        model.tokenizer.save(directory)


def _load_tokenizer(model: Whisper, directory):
    from zoo.speech.tokenizer import META_FILE, WhisperTokenizer

    # a bare architecture saved without training data has no tokenizer; a damaged one is an error
    model.tokenizer = WhisperTokenizer.load(directory) if (directory / META_FILE).exists() else None


def _whisper_dims(dim: int, layers: int, heads: int, vocab_size: int = 51865) -> WhisperConfig:
    """Whisper's published dimensions (Radford et al., 2022, table 1) with its block: LayerNorm, a 4x GELU MLP
    and biases."""
    block = dict(dim=dim, n_layers=layers, n_heads=heads, mlp="gelu", norm="layernorm", norm_eps=1e-5,
                 bias=True, gelu_approximate="none")
    return WhisperConfig(vocab_size=vocab_size, encoder=encoder_backbone(**block), decoder=decoder_backbone(**block))


register_family(Family(
    name="whisper", config_class=WhisperConfig, build=Whisper,
    data_config=recipe.SpeechDataConfig, prepare_data=recipe.prepare_data, loss=recipe.loss,
    evaluate=recipe.evaluate, collate=recipe.collate, example_batch=recipe.example_batch,
    blocks=lambda model: [*model.encoder.blocks, *model.decoder.blocks],
    save_extras=_save_tokenizer, load_extras=_load_tokenizer, commands=(TRANSCRIBE,),
    hf=HFFormat(reads=("whisper",), module="zoo.speech.hf"),  # transformers' format
    tiny={"vocab_size": 120, "encoder": {"n_layers": 1, "dim": 32, "n_heads": 2},
          "decoder": {"n_layers": 1, "dim": 32, "n_heads": 2}},
))


# The CPU recipe (`zoo train whisper-cpu`): the synthesised five-language corpus with twice the Mandarin
# training clips, each non-English clip trained both to transcribe and to translate (data.both_tasks), a
# translation read after the clip's transcript (consecutive decoding, Dong et al., 2021), joint CTC-attention
# training with a byte-level CTC head and an auxiliary phoneme CTC head on an intermediate encoder block
# (Toshniwal et al., 2017), length-grouped batches, a BPE small enough that the decoder spells, bf16 autocast where
# the CPU has bf16 units (precision auto: fp32 without them), dropout in the decoder; evaluated (and transcribe()
# decodes) with beam search joint with the byte CTC head (zoo.speech.joint). README "Speech" has the figures and
# what each of these bought.
@register_model("whisper-cpu", family="whisper",
                train={"steps": 7000, "batch_size": 24, "lr": 2e-3, "min_lr": 1e-4, "warmup": 200,
                       "eval_every": 1000, "checkpoint_every": 500, "weight_decay": 0.05, "precision": "auto"},
                data={"vocab_size": 2048, "eval_beam_size": 5, "eval_ctc_weight": 0.3, "both_tasks": True,
                      "corpus": {"train_clips": 14400, "train_languages": ("en", "es", "fr", "de", "zh", "zh"),
                                 "val_clips": 200, "test_clips": 300, "test_unseen_clips": 200}})
def whisper_cpu() -> WhisperConfig:
    """The CPU recipe's size (~3.6M): width 192, 3 heads, 4 encoder + 2 decoder layers (RMSNorm, GeGLU, RoPE in
    the decoder, dropout 0.1 in the decoder), a CTC head over UTF-8 bytes on the encoder (weight 0.5) and one over
    eSpeak's phonemes on encoder block 2 (weight 0.2, training only); translations read after the transcript."""
    small = dict(dim=192, n_heads=3)
    return WhisperConfig(ctc_weight=0.5, phoneme_ctc_weight=0.2, translate_from_transcript=True,
                         encoder=encoder_backbone(**small), decoder=decoder_backbone(n_layers=2, dropout=0.1, **small))


@register_model("whisper-tiny", family="whisper")
def whisper_tiny() -> WhisperConfig:
    """Whisper tiny's dimensions (39M with its 51,865-token vocabulary): width 384, 4 + 4 layers, 6 heads."""
    return _whisper_dims(384, 4, 6)


@register_model("whisper-base", family="whisper")
def whisper_base() -> WhisperConfig:
    """Whisper base's dimensions (74M with its 51,865-token vocabulary): width 512, 6 + 6 layers, 8 heads."""
    return _whisper_dims(512, 6, 8)
