"""Whisper's decoding of one window of audio (at most 30 s), on zoo's shared decoding core.

    from zoo.speech.decoding import DecodingOptions, decode, detect_language
    result = decode(model, mel, DecodingOptions(language="en"))   # mel (80, T): one DecodingResult
    results = decode(model, [mel_a, mel_b], DecodingOptions(beam_size=5))   # clips of any lengths, batched
    result.text, result.tokens, result.avg_logprob, result.no_speech_prob, result.compression_ratio
    codes, probs = detect_language(model, [mel_a, mel_b])   # ["de", "en"], [{"en": 0.02, "de": 0.97, ...}, ...]

This follows openai/whisper's decoding.py (Radford et al., 2022, "Robust Speech Recognition via Large-Scale
Weak Supervision"): a frozen `DecodingOptions`, logit filters that enforce the multitask format of sec. 2.3
(SuppressBlank, SuppressTokens, ApplyTimestampRules), a greedy / best-of-N sampler or a beam search, and a
maximum-likelihood ranker. The decoding loop itself (KV-cached prefill and steps, the sampler, BeamSearch
with patience and length penalty) is zoo.decoding's, the one the GPT family uses too; the rules here are
logit processors with `needs_history` (they see each row's tokens so far). Long audio (windows, temperature
fallback, previous-text prompts, segments) is zoo.speech.transcribe.

The decoder prompt (sec. 2.3, fig. 1) is
    [<|startofprev|> previous text]  <|startoftranscript|> <|xx|> <|transcribe|>|<|translate|> [<|notimestamps|>]
    [prefix]
and the model continues it with text (and timestamp tokens) up to <|endoftext|>.

Differences from whisper, on purpose:
- clips keep their own length: a 4 s clip is 400 mel frames, not 3000 (a batch of clips of different lengths
  is right-padded with a mask, and the model attends with it);
- the language and task tokens (and, without timestamps, the timestamp tokens) are suppressed like the other
  specials: in the middle of a transcript they mean nothing, and decode() would drop them from the text;
- the previous-text prompt keeps whisper's max_seq_len // 2 - 1 tokens but never more than leaves room for
  sample_len new tokens (whisper lets the sequence run into the context limit and stops there), and a
  prefix that does not fit is an error instead of being cut;
- `seed` makes sampling reproducible (a private torch.Generator; whisper draws from the global RNG).
"""

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from zoo import decoding as core
from zoo.errors import InputError, InputTypeError
from zoo.nn.packed import prepacked_linears
from zoo.speech.audio import MEL_PAD, SECONDS_PER_TOKEN
from zoo.speech.tokenizer import LANGUAGES, TASKS
from zoo.utils import eval_mode

# ----------------------------------------------------------------------------------------------------------
# the model interface


class SpeechModel(Protocol):
    """What decoding needs from a Whisper-style model (zoo.speech.whisper.Whisper implements it).

    tokenizer: a zoo.speech.tokenizer.WhisperTokenizer (special tokens, timestamps last).
    max_seq_len: the decoder's context in tokens (prompt + sampled tokens). vocab_size: width of the logits.
    embed_audio(mel (B, 80, T), mel_mask (B, T) bool | None) -> (audio_features (B, S, d), audio_mask (B, S)
        | None): the encoder, run once per window (also once across temperature fallbacks).
    make_cache / prefill(tokens, mask, cache, audio_features=, audio_mask=) / step: zoo.decoding's
        AutoregressiveModel; prefill keeps the audio's cross-attention keys/values and mask in the cache.
    logits(tokens (B, L), audio_features, audio_mask=None) -> (B, L, V): teacher forcing without a cache, for
        the distributions at <|startoftranscript|> (language detection, no-speech probability).
    """

    tokenizer: object
    max_seq_len: int
    vocab_size: int

    def embed_audio(self, mel: torch.Tensor, mel_mask: torch.Tensor | None): ...
    def make_cache(self, batch: int, max_len: int): ...
    def prefill(self, tokens, mask, cache, audio_features, audio_mask=None) -> torch.Tensor: ...
    def step(self, tokens, cache) -> torch.Tensor: ...
    def logits(self, tokens, audio_features, audio_mask=None) -> torch.Tensor: ...


# ----------------------------------------------------------------------------------------------------------
# options and results


@dataclass(frozen=True)
class DecodingOptions:
    """How to decode one window; validated on construction, immutable afterwards (openai/whisper's fields).

    task: "transcribe" (X -> X) or "translate" (X -> English). language: a code such as "en" (None: detect it
    per clip from the distribution after <|startoftranscript|>).
    temperature: 0 = greedy (or beam search with beam_size), > 0 = sampling. sample_len: the most tokens to
    sample (None: half the decoder's context, as whisper). best_of: sample this many per clip and keep the
    most likely (needs temperature > 0). beam_size: beam search with this many beams (needs temperature 0;
    transcribe() uses 5). patience: beam search stops once round(beam_size * patience) candidates finished
    (Kasai et al., 2022; needs beam_size). length_penalty: ranking of candidates (beams or best_of samples):
    None divides the summed log-prob by the length, alpha in [0, 1] by ((5 + length) / 6) ** alpha (Wu et al.,
    2016).
    prompt: previous text (str) or its token ids, given after <|startofprev|> (context, never output).
    prefix: text or ids that the transcript must start with (after the sot sequence).
    suppress_tokens: token ids never sampled, or a comma-separated string of them; -1 stands for the
    tokenizer's non_speech_tokens (whisper's default "-1"); None or "" for none. The special tokens are
    suppressed in any case. suppress_blank: at the first sampled step, suppress " " and <|endoftext|> (no
    empty or blank transcript). without_timestamps: text only (<|notimestamps|> in the prompt).
    max_initial_timestamp: the first timestamp is at most this many seconds (None: up to 30 s).
    seed: of the sampler's generator (None: a fresh random seed). prepack: zoo.decoding's CPU weight prepacking.
    ctc_weight: joint CTC/attention decoding (zoo.speech.joint) with this weight on the CTC prefix scores, for
    a model with a CTC head (0: the decoder alone, as whisper). ctc_candidates: the decoder's most likely tokens
    per hypothesis that the CTC head scores at each step (the others are ruled out).
    """

    task: str = "transcribe"
    language: str | None = None
    temperature: float = 0.0
    sample_len: int | None = None
    best_of: int | None = None
    beam_size: int | None = None
    patience: float | None = None
    length_penalty: float | None = None
    prompt: str | tuple[int, ...] | None = None
    prefix: str | tuple[int, ...] | None = None
    suppress_tokens: str | tuple[int, ...] | None = "-1"
    suppress_blank: bool = True
    without_timestamps: bool = False
    max_initial_timestamp: float | None = 1.0
    seed: int | None = None
    prepack: bool = True
    ctc_weight: float = 0.0
    ctc_candidates: int = 16

    def __post_init__(self):
        def fail(name, allowed):
            raise InputError(f"DecodingOptions.{name}={getattr(self, name)!r} is not allowed; {name} must be {allowed}")

        def is_int(value):
            return isinstance(value, int) and not isinstance(value, bool)

        def is_number(value):
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        if self.task not in TASKS:
            fail("task", " or ".join(repr(t) for t in TASKS))
        if self.language is not None and self.language not in LANGUAGES:
            fail("language", f"None (detect the language) or a language code, one of {', '.join(LANGUAGES)}")
        if not is_number(self.temperature) or self.temperature < 0:
            fail("temperature", "a finite number >= 0 (0 = greedy or beam search)")
        for name in ("sample_len", "best_of", "beam_size"):
            value = getattr(self, name)
            if value is not None and (not is_int(value) or value < 1):
                fail(name, "None or an integer >= 1")
        if self.patience is not None and (not is_number(self.patience) or self.patience <= 0):
            fail("patience", "None (= 1.0) or a finite number > 0")
        if self.length_penalty is not None and (not is_number(self.length_penalty)
                                                or not 0 <= self.length_penalty <= 1):
            fail("length_penalty", "None (divide by the length) or alpha in [0, 1]")
        for name in ("prompt", "prefix"):
            object.__setattr__(self, name, _text_or_ids(self, name))
        object.__setattr__(self, "suppress_tokens", _suppress_list(self))
        for name in ("suppress_blank", "without_timestamps", "prepack"):
            if not isinstance(getattr(self, name), bool):
                fail(name, "True or False")
        if self.max_initial_timestamp is not None and (not is_number(self.max_initial_timestamp)
                                                       or self.max_initial_timestamp < 0):
            fail("max_initial_timestamp", "None or a number of seconds >= 0")
        if self.seed is not None and not is_int(self.seed):
            fail("seed", "None or an integer")
        if not is_number(self.ctc_weight) or not 0 <= self.ctc_weight <= 1:
            fail("ctc_weight", "a number in [0, 1] (0: the decoder alone)")
        if not is_int(self.ctc_candidates) or self.ctc_candidates < 1:
            fail("ctc_candidates", "an integer >= 1")
        if self.ctc_weight > 0 and self.task != "transcribe":
            raise InputError(f"DecodingOptions.ctc_weight={self.ctc_weight} needs task='transcribe': the CTC head "
                             f"hears the spoken language's text, not its translation; use ctc_weight=0 to translate")

        # the combinations whisper refuses (DecodingTask._verify_options), and beam search needs temperature 0
        if self.beam_size is not None and self.best_of is not None:
            raise InputError(f"DecodingOptions.beam_size={self.beam_size} and best_of={self.best_of} cannot be given "
                             f"together: best_of samples (temperature > 0), beam_size searches (temperature 0)")
        if self.temperature == 0 and self.best_of is not None:
            raise InputError(f"DecodingOptions.best_of={self.best_of} needs temperature > 0: at temperature 0 every "
                             f"sample is the same greedy sequence; use beam_size, or a temperature above 0")
        if self.beam_size is not None and self.temperature != 0:
            raise InputError(f"DecodingOptions.beam_size={self.beam_size} needs temperature=0, got temperature="
                             f"{self.temperature!r}: beam search does not sample (use best_of to sample several)")
        if self.patience is not None and self.beam_size is None:
            raise InputError(f"DecodingOptions.patience={self.patience!r} needs beam_size: patience only affects "
                             f"beam search")
        if self.beam_size is not None and round(self.beam_size * (self.patience or 1.0)) < 1:
            raise InputError(f"DecodingOptions.patience={self.patience!r} with beam_size={self.beam_size} waits for "
                             f"round(beam_size * patience) = 0 finished candidates; patience must be above "
                             f"{0.5 / self.beam_size:g}")


def _text_or_ids(options: DecodingOptions, name: str):
    value = getattr(options, name)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0
                                                for t in value):
        return tuple(value)
    raise InputError(f"DecodingOptions.{name}={value!r} is not allowed; {name} must be None, a str or a sequence "
                     f"of token ids (integers >= 0)")


def _suppress_list(options: DecodingOptions) -> tuple[int, ...]:
    value = options.suppress_tokens
    if value is None or value == "":
        return ()
    try:
        ids = [int(t) for t in value.split(",")] if isinstance(value, str) else list(value)
        valid = all(isinstance(t, int) and not isinstance(t, bool) and t >= -1 for t in ids)
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise InputError(f"DecodingOptions.suppress_tokens={value!r} is not allowed; suppress_tokens must be token "
                         f"ids (integers >= 0, -1 = the tokenizer's non-speech tokens), as a sequence or a "
                         f"comma-separated string such as '-1' or '-1,220', or None")
    return tuple(ids)


@dataclass(frozen=True)
class DecodingResult:
    """One clip's transcript (whisper's DecodingResult).

    tokens: the sampled ids, timestamps included, without <|endoftext|>. text: their text (specials and
    timestamps dropped), stripped. language / language_probs: the language decoded with, and the detected
    distribution over the tokenizer's languages (None when the language was given). sum_logprob: the summed
    log-probabilities of the tokens and <|endoftext|>, at temperature 1 after the logit filters; avg_logprob:
    sum_logprob / (len(tokens) + 1) (whisper's). no_speech_prob: P(<|nospeech|>) at the <|startoftranscript|>
    position. temperature: the one decoded at. compression_ratio: of the text's UTF-8 bytes under zlib
    (repetitive text compresses well: a high ratio means the decoder looped).
    """

    tokens: list[int] = field(repr=False)
    text: str
    language: str
    language_probs: dict[str, float] | None = field(default=None, repr=False)
    avg_logprob: float = math.nan
    sum_logprob: float = math.nan
    no_speech_prob: float = math.nan
    temperature: float = math.nan
    compression_ratio: float = math.nan


def compression_ratio(text: str) -> float:
    """len(bytes) / len(zlib-compressed bytes) (whisper's utils.compression_ratio); 0 for empty text. Looping
    transcripts ("the the the ...") compress far better than speech: whisper retries above 2.4 (sec. 4.5)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


# ----------------------------------------------------------------------------------------------------------
# audio batches and language detection


def check_mel(mel: torch.Tensor):
    """At least one frame of finite floats: NaN would decode to confident nonsense, and an empty mel fails deep
    inside the encoder's convolutions."""
    allowed = "allowed: a log-mel spectrogram of at least one frame (zoo.speech.audio.log_mel_spectrogram)"
    if not mel.is_floating_point():
        raise InputTypeError(f"mel has dtype {mel.dtype}; {allowed}, floating point")
    if mel.numel() == 0:
        raise InputError(f"mel of shape {tuple(mel.shape)} holds no frames; {allowed}")
    if not bool(torch.isfinite(mel).all()):
        raise InputError(f"mel holds NaN or infinite values; {allowed}, finite")


def pad_mels(mels: torch.Tensor | Sequence[torch.Tensor], mel_mask: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """One mel (80, T), a batch (B, 80, T) with an optional (B, T) mask, or a list of (80, T_i) mels of any
    lengths -> (B, 80, T) right-padded with MEL_PAD, the (B, T) mask (None: no padding), and whether a single
    clip was given."""
    if isinstance(mels, torch.Tensor):
        check_mel(mels)
        if mels.dim() == 2:
            return mels[None], (mel_mask[None] if mel_mask is not None else None), True
        if mels.dim() != 3:
            raise InputError(f"mel must be (n_mels, T) or (B, n_mels, T), or a list of (n_mels, T), "
                             f"got shape {tuple(mels.shape)}")
        return mels, mel_mask, False
    if mel_mask is not None:
        raise InputError("mel_mask goes with a (B, n_mels, T) tensor; a list of mels is padded and masked here")
    mels = list(mels)
    if not mels or any(not isinstance(m, torch.Tensor) or m.dim() != 2 for m in mels):
        raise InputError("mel must be a non-empty list of (n_mels, T) tensors")
    for m in mels:
        check_mel(m)
    T = max(m.shape[1] for m in mels)
    batch = mels[0].new_full((len(mels), mels[0].shape[0], T), MEL_PAD)
    mask = torch.zeros(len(mels), T, dtype=torch.bool, device=mels[0].device)
    for i, m in enumerate(mels):
        batch[i, :, :m.shape[1]] = m
        mask[i, :m.shape[1]] = True
    return batch, (None if bool(mask.all()) else mask), False


def encode_audio(model: SpeechModel, mel: torch.Tensor, mel_mask: torch.Tensor | None, prepack: bool = True
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """model.embed_audio for inference. With prepack, on a CPU, the encoder's linears multiply by oneDNN-packed
    copies of their weights (zoo.nn.packed): its matrix multiplies are most of the encoder's time in a
    profile, and packing pays for itself within one batch of windows."""
    encoder = getattr(model, "encoder", None)
    if not prepack or not isinstance(encoder, torch.nn.Module):
        return model.embed_audio(mel, mel_mask)
    with torch.inference_mode(), prepacked_linears(encoder, rows=mel.shape[0] * math.ceil(mel.shape[-1] / 2)):
        return model.embed_audio(mel, mel_mask)


def select_rows(tensor: torch.Tensor | None, rows: Sequence[int]) -> torch.Tensor | None:
    if tensor is None:
        return None
    return tensor.index_select(0, torch.as_tensor(list(rows), dtype=torch.long, device=tensor.device))


def logits_at(model: SpeechModel, sequences: Sequence[Sequence[int]], audio_features: torch.Tensor,
              audio_mask: torch.Tensor | None) -> torch.Tensor:
    """(B, V) float logits after the last token of each sequence (one teacher-forced pass; sequences are
    right-padded, which causal attention never sees)."""
    lengths = [len(s) for s in sequences]
    tokens = torch.zeros(len(sequences), max(lengths), dtype=torch.long, device=audio_features.device)
    for i, s in enumerate(sequences):
        tokens[i, :len(s)] = torch.tensor(list(s), dtype=torch.long)
    logits = model.logits(tokens, audio_features, audio_mask)  # (B, L, V)
    last = torch.tensor(lengths, device=logits.device) - 1
    return logits[torch.arange(len(sequences), device=logits.device), last].float()


def language_distribution(tokenizer, logits_after_sot: torch.Tensor) -> tuple[list[str], list[dict[str, float]]]:
    """Language identification (sec. 2.3: the model predicts the language token right after
    <|startoftranscript|>): every token that is not a language token is masked, so only languages compete.
    (B, V) logits -> the most likely code per clip and each clip's {code: probability}."""
    language_tokens = torch.tensor(tokenizer.all_language_tokens, device=logits_after_sot.device)
    probs = logits_after_sot.float().index_select(1, language_tokens).softmax(dim=-1)  # (B, n_languages)
    best = probs.argmax(dim=-1).tolist()
    table = probs.tolist()
    return ([tokenizer.languages[i] for i in best],
            [dict(zip(tokenizer.languages, row)) for row in table])


def check_speech_model(model, call: str):
    """A model that follows the SpeechModel protocol and carries its tokenizer; checked by what it can do (not
    its family), so any encoder-decoder with embed_audio decodes, and a GPT fails here with a clear message."""
    if not callable(getattr(model, "embed_audio", None)):
        name = getattr(model, "zoo_name", None) or type(model).__name__
        raise InputError(f"{call} takes a speech model (one that embeds audio, e.g. whisper-cpu); {name} is not one")
    if getattr(model, "tokenizer", None) is None:
        raise InputError("this model has no tokenizer (model.tokenizer is None): load a trained model "
                         "(zoo.load(DIR)) or attach a zoo.speech.tokenizer.WhisperTokenizer")


@torch.inference_mode()
def detect_language(model: SpeechModel, mel: torch.Tensor | Sequence[torch.Tensor],
                    mel_mask: torch.Tensor | None = None) -> tuple[list[str] | str, list[dict] | dict]:
    """The most likely language of each clip and its distribution over the tokenizer's languages, from one
    decoder position (after <|startoftranscript|>) per clip, batched. A single (80, T) mel gives one code and
    one dict; a batch or a list gives lists."""
    check_speech_model(model, "language detection")
    batch, mask, single = pad_mels(mel, mel_mask)
    with eval_mode(model):
        features, audio_mask = encode_audio(model, batch, mask)
        codes, probs = language_distribution(model.tokenizer, logits_at(
            model, [[model.tokenizer.sot]] * len(batch), features, audio_mask))
    return (codes[0], probs[0]) if single else (codes, probs)


# ----------------------------------------------------------------------------------------------------------
# logit filters (whisper's LogitFilter), as zoo.decoding processors


class SuppressBlank(core.LogitProcessor):
    """At the first sampled step, no blank (" ") and no <|endoftext|>: an empty or blank transcript is never
    what a window of audio that reached the decoder says (whisper's SuppressBlank)."""

    needs_history = True

    def __init__(self, tokenizer):
        self.token_ids = list(tokenizer.blank_tokens)  # " " and <|endoftext|>

    def __call__(self, logits, seen, history):
        if history.step == 0:
            logits = logits.clone()
            logits[:, self.token_ids] = -math.inf
        return logits


class ApplyTimestampRules(core.LogitProcessor):
    """The timestamp grammar of the multitask format (sec. 2.3: "we predict the start and end time of each
    segment ... as tokens"), enforced on the logits (whisper's ApplyTimestampRules):

    - the first token is a timestamp, at most max_initial_timestamp (sec. 4.5 / Table 7, "initial timestamp
      constraint": whisper otherwise tends to skip the start of the audio);
    - timestamps come in pairs (end of a segment, start of the next): after a single timestamp that closes a
      segment comes another timestamp or <|endoftext|>, never text; after two in a row, text;
    - timestamps never decrease; a new segment may start where the last one ended, but a segment's end is
      after its start (no empty segments, which could loop forever);
    - when the timestamps together are more likely than every single text token, a timestamp is forced
      (their probability is spread over 1501 tokens, so each alone would lose to some text token);
    - no timestamp past the end of the row's audio (`last_index`, set per batch by DecodingTask): whisper
      pads every window to 30 s, zoo keeps a clip's own length, so a 5 s clip may not end a segment at 20 s.

    The time tokens are [timestamp_begin, last_timestamp]; `suppressed_text` is every other token that may not
    appear where a timestamp is due (all but <|endoftext|>).
    """

    needs_history = True

    def __init__(self, tokenizer, vocab_size: int, max_initial_timestamp: float | None):
        self.begin = tokenizer.timestamp_begin
        self.eot = tokenizer.eot
        self.no_timestamps = tokenizer.no_timestamps
        self.max_initial_index = None if max_initial_timestamp is None else round(
            max_initial_timestamp / SECONDS_PER_TOKEN)
        self.text = torch.ones(vocab_size, dtype=torch.bool)
        self.text[self.begin:] = False
        self.not_eot_text = self.text.clone()
        self.not_eot_text[self.eot] = False
        self.last_index: torch.Tensor | None = None  # (rows,) the last timestamp index each row's audio reaches

    def __call__(self, logits, seen, history):
        logits = logits.clone()
        logits[:, self.no_timestamps] = -math.inf  # timestamps on: <|notimestamps|> belongs to the prompt only
        device = logits.device
        text, not_eot_text = self.text.to(device), self.not_eot_text.to(device)
        if history.step == 0:
            logits[:, text] = -math.inf
            if self.max_initial_index is not None:
                logits[:, self.begin + self.max_initial_index + 1:] = -math.inf
        else:
            tokens = history.tokens  # (B, step)
            is_time = tokens >= self.begin
            last = is_time[:, -1]
            penultimate = is_time[:, -2] if history.step >= 2 else torch.ones_like(last)
            closing = last & ~penultimate  # a lone timestamp after text: the segment just ended
            logits[last & penultimate] = logits[last & penultimate].masked_fill(~text, -math.inf)  # text next
            logits[closing] = logits[closing].masked_fill(not_eot_text, -math.inf)  # a timestamp or the end next
            # monotonic: below the latest timestamp is banned; the latest itself only right after a closing one
            latest = torch.where(is_time, tokens, -1).amax(dim=1)  # (B,) -1 where no timestamp yet
            first_allowed = torch.where(closing, latest, latest + 1)
            ids = torch.arange(logits.shape[-1], device=device)
            banned = (ids >= self.begin) & (ids < first_allowed[:, None]) & (latest >= 0)[:, None]
            logits = logits.masked_fill(banned, -math.inf)
        if self.last_index is not None:
            ids = torch.arange(logits.shape[-1], device=device)
            logits = logits.masked_fill(ids > self.begin + self.last_index.to(device)[:, None], -math.inf)
        # force a timestamp when their summed probability beats the most likely text token
        logprobs = logits.float().log_softmax(dim=-1)
        time_mass = logprobs[:, self.begin:].logsumexp(dim=-1)
        best_text = logprobs[:, :self.begin].amax(dim=-1)
        force = time_mass > best_text
        logits[force] = logits[force].masked_fill(text, -math.inf)
        return logits


def suppressed_ids(tokenizer, vocab_size: int, options: DecodingOptions) -> list[int]:
    """The ids never sampled: options.suppress_tokens (-1: the tokenizer's non_speech_tokens), and every
    special token except <|endoftext|>: <|startoftranscript|>, <|startofprev|>, <|startoflm|> and
    <|nospeech|> (as whisper: no-speech is read at the <|startoftranscript|> position instead), the language
    and task tokens, and the timestamps when decoding without them (<|notimestamps|> too; with timestamps
    ApplyTimestampRules bans it). Also any id of the model's vocabulary beyond the tokenizer's."""
    ids = set(t for t in options.suppress_tokens if t >= 0)
    if -1 in options.suppress_tokens:
        ids.update(tokenizer.non_speech_tokens)
    ids.update([tokenizer.sot, tokenizer.sot_prev, tokenizer.sot_lm, tokenizer.no_speech, tokenizer.translate,
                tokenizer.transcribe, *tokenizer.all_language_tokens])
    if options.without_timestamps:
        ids.update(range(tokenizer.timestamp_begin, tokenizer.vocab_size))
        ids.add(tokenizer.no_timestamps)
    ids.update(range(tokenizer.vocab_size, vocab_size))
    bad = [t for t in ids if not 0 <= t < vocab_size]
    if bad:
        raise InputError(f"DecodingOptions.suppress_tokens holds token id {max(bad)}, but the model's vocabulary "
                         f"has {vocab_size} tokens (allowed ids: 0..{vocab_size - 1})")
    return sorted(ids)


# ----------------------------------------------------------------------------------------------------------
# decoding


class DecodingTask:
    """Decodes a batch of windows with one set of options (whisper's DecodingTask): the prompt of each clip,
    language detection where no language is given, the no-speech probability, the logit filters, the search
    (zoo.decoding's sampler or beam search) and the ranking of best_of samples.

    run() takes per-clip languages and previous-text prompts (transcribe() decodes several files at once, each
    with its own); options.language and options.prompt are the defaults for every clip.
    """

    def __init__(self, model: SpeechModel, options: DecodingOptions):
        check_speech_model(model, "decoding")
        if not isinstance(options, DecodingOptions):
            raise InputTypeError(f"options must be a zoo.speech.decoding.DecodingOptions (e.g. "
                                 f"DecodingOptions(language='en', beam_size=5)), got {type(options).__name__}")
        self.model, self.options = model, options
        self.tokenizer = tokenizer = model.tokenizer
        if options.language is not None and options.language not in tokenizer.languages:
            raise InputError(f"DecodingOptions.language={options.language!r} is not one of this model's languages; "
                             f"allowed: {', '.join(tokenizer.languages)} (or None to detect it)")
        n_ctx = model.max_seq_len
        self.sample_len = options.sample_len or n_ctx // 2
        self.n_group = options.beam_size or options.best_of or 1
        self.timestamps = not options.without_timestamps
        self.prefix = self.encode_text(options.prefix)
        sot_length = len(tokenizer.sot_sequence(tokenizer.languages[0], options.task, timestamps=self.timestamps))
        # the prompt gets what the sot sequence, the prefix and sample_len leave (at most whisper's n_ctx // 2 - 1)
        self.prompt_room = min(n_ctx // 2 - 1, n_ctx - self.sample_len - sot_length - len(self.prefix) - 1)
        if sot_length + len(self.prefix) + self.sample_len > n_ctx:
            raise InputError(f"the sot sequence ({sot_length} tokens) + prefix ({len(self.prefix)} tokens) + "
                             f"sample_len ({self.sample_len}) exceed the model's context of {n_ctx} tokens; "
                             f"lower DecodingOptions.sample_len or shorten the prefix")

        # the logit filters, in whisper's order; zoo.decoding applies them before its sampler / beam search
        self.processors: list[core.LogitProcessor] = []
        if options.suppress_blank:
            self.processors.append(SuppressBlank(tokenizer))
        self.processors.append(core.SuppressTokens(suppressed_ids(tokenizer, model.vocab_size, options)))
        self.timestamp_rules = None
        if self.timestamps:
            self.timestamp_rules = ApplyTimestampRules(tokenizer, model.vocab_size, options.max_initial_timestamp)
            self.processors.append(self.timestamp_rules)
        if options.ctc_weight > 0 and getattr(model, "ctc_head", None) is None:
            raise InputError(f"DecodingOptions.ctc_weight={options.ctc_weight} needs a model with a CTC head "
                             f"(trained with config.ctc_weight > 0, as whisper-cpu); this one has none: use 0")
        # the UTF-8 bytes of the text tokens, for the CTC prefix scores (ids past them count as no bytes)
        self.token_bytes = tokenizer.text_token_bytes if options.ctc_weight > 0 else None

    def encode_text(self, value) -> list[int]:
        if value is None:
            return []
        if isinstance(value, str):
            # a leading space, as whisper: the words of a prompt or prefix are inside a sentence
            return self.tokenizer.encode(" " + value.strip()) if value.strip() else []
        return list(value)

    def prompt_tokens(self, prompt) -> list[int]:
        """<|startofprev|> and the last prompt_room tokens of the previous text ([] for none)."""
        tokens = self.encode_text(prompt)
        if not tokens or self.prompt_room < 1:
            return []
        return [self.tokenizer.sot_prev, *tokens[-self.prompt_room:]]

    @torch.inference_mode()
    def run(self, audio_features: torch.Tensor, audio_mask: torch.Tensor | None,
            languages: Sequence[str | None] | None = None, prompts: Sequence | None = None) -> list[DecodingResult]:
        """Decode B windows from their encoder output (B, S, d) and mask (B, S). languages / prompts: one per
        clip (None: options.language / options.prompt)."""
        model, options, tokenizer = self.model, self.options, self.tokenizer
        B = audio_features.shape[0]
        languages = list(languages) if languages is not None else [options.language] * B
        prompts = list(prompts) if prompts is not None else [options.prompt] * B
        for code in languages:
            if code is not None and code not in tokenizer.languages:
                raise InputError(f"language {code!r} is not one of this model's languages; allowed: "
                                 f"{', '.join(tokenizer.languages)}")
        previous = [self.prompt_tokens(p) for p in prompts]

        with eval_mode(model):
            # The distribution at <|startoftranscript|> (given the previous text) holds <|nospeech|> (whisper's
            # no_speech_prob) and, without a previous text, the language tokens too: one pass serves both.
            at_sot = logits_at(model, [[*p, tokenizer.sot] for p in previous], audio_features, audio_mask)
            no_speech = at_sot.softmax(dim=-1)[:, tokenizer.no_speech].tolist()
            language_probs: list[dict | None] = [None] * B
            unknown = [i for i, code in enumerate(languages) if code is None]
            if unknown:
                with_prompt = [i for i in unknown if previous[i]]
                logits = at_sot.index_select(0, torch.tensor(unknown, device=at_sot.device))
                if with_prompt:  # language detection reads <|startoftranscript|> alone (whisper's detect_language)
                    alone = logits_at(model, [[tokenizer.sot]] * len(with_prompt),
                                      select_rows(audio_features, with_prompt), select_rows(audio_mask, with_prompt))
                    for j, i in enumerate(with_prompt):
                        logits[unknown.index(i)] = alone[j]
                codes, probs = language_distribution(tokenizer, logits)
                for i, code, table in zip(unknown, codes, probs):
                    languages[i], language_probs[i] = code, table

            initial = [[*p, *tokenizer.sot_sequence(code, options.task, timestamps=self.timestamps), *self.prefix]
                       for p, code in zip(previous, languages)]
            states = self._search(initial, audio_features, audio_mask)

        results = []
        for i in range(B):
            state = states[i]
            tokens = list(state.tokens)
            if tokenizer.eot in tokens:
                tokens = tokens[:tokens.index(tokenizer.eot)]
            text = tokenizer.decode(tokens).strip()
            sum_logprob = state.sum_logprob if state.sum_logprob is not None else math.nan
            results.append(DecodingResult(
                tokens=tokens, text=text, language=languages[i], language_probs=language_probs[i],
                avg_logprob=sum_logprob / (len(tokens) + 1), sum_logprob=sum_logprob, no_speech_prob=no_speech[i],
                temperature=options.temperature, compression_ratio=compression_ratio(text)))
        return results

    def _search(self, initial: list[list[int]], audio_features, audio_mask) -> list[core.TokenState]:
        """The best finished state per clip: the best beam, the best of best_of samples, or the greedy one."""
        options, eot = self.options, self.tokenizer.eot
        search = core.DecodingOptions(max_new_tokens=self.sample_len, temperature=options.temperature,
                                      beam_size=options.beam_size, patience=options.patience,
                                      length_penalty=options.length_penalty, seed=options.seed,
                                      prepack=options.prepack)
        context = dict(audio_features=audio_features, audio_mask=audio_mask)
        processors = self.processors
        if options.ctc_weight > 0:  # last: it fuses the filtered distribution with the CTC prefix scores
            processors = [*processors, self._ctc_scorer(audio_features, audio_mask)]
        if self.timestamp_rules is not None:  # one encoder frame is 20 ms, one timestamp step: frames = last index
            frames = (audio_mask.sum(1) if audio_mask is not None else
                      torch.full((len(initial),), audio_features.shape[1], device=audio_features.device))
            self.timestamp_rules.last_index = frames.repeat_interleave(self.n_group)  # rows [i*n, (i+1)*n): clip i
        if options.beam_size is not None:  # zoo's BeamSearch ranks with the same length normalisation
            ranked = core.beam_search(self.model, initial, search, [core.TokenState(eot) for _ in initial],
                                      processors, **context)
            return [candidates[0] for candidates in ranked]
        n = self.n_group  # best_of: n samples per clip, rows [i*n, (i+1)*n)
        rows = [row for row in initial for _ in range(n)]
        if n > 1:
            repeat = torch.arange(len(initial), device=audio_features.device).repeat_interleave(n)
            context = dict(audio_features=audio_features.index_select(0, repeat),
                           audio_mask=select_rows(audio_mask, repeat.tolist()))
        states = [core.TokenState(eot) for _ in rows]
        for _ in core.sample(self.model, rows, search, states, processors, logprobs=True, **context):
            pass
        return [max(states[i * n:(i + 1) * n], key=self._score) for i in range(len(initial))]

    def _ctc_scorer(self, audio_features: torch.Tensor, audio_mask: torch.Tensor | None):
        from zoo.speech.joint import CTCPrefixScorer

        ctc_logprobs = self.model.ctc_head(audio_features).float().log_softmax(dim=-1)
        return CTCPrefixScorer(ctc_logprobs, audio_mask, self.token_bytes, self.tokenizer.eot,
                               self.options.ctc_weight, group=self.n_group, candidates=self.options.ctc_candidates)

    def _score(self, state: core.TokenState) -> float:
        """whisper's MaximumLikelihoodRanker: the summed log-prob over the length (or the NMT length penalty);
        the length does not count <|endoftext|>. max() keeps the first of equals, as numpy's argmax."""
        return core.length_normalized(state.sum_logprob, state.n_scored, self.options.length_penalty)


def decode(model: SpeechModel, mel: torch.Tensor | Sequence[torch.Tensor], options: DecodingOptions | None = None,
           mel_mask: torch.Tensor | None = None,
           prompts: Sequence | None = None) -> DecodingResult | list[DecodingResult]:
    """Decode one window (mel (80, T), T <= 3000 frames: one DecodingResult) or a batch ((B, 80, T) with an
    optional (B, T) mask, or a list of (80, T_i) mels of any lengths: a list of results, in order). prompts:
    one previous text (str or token ids) per window of a batch, instead of options.prompt for all."""
    options = options or DecodingOptions()
    task = DecodingTask(model, options)
    batch, mask, single = pad_mels(mel, mel_mask)
    if prompts is not None and (single or len(prompts) != batch.shape[0]):
        raise InputError(f"decode() prompts: one per window of a batch; got {len(prompts)} for "
                         f"{'one window' if single else f'{batch.shape[0]} windows'} (a single window takes "
                         f"options.prompt)")
    with torch.inference_mode(), eval_mode(model):
        features, audio_mask = encode_audio(model, batch, mask, options.prepack)
    results = task.run(features, audio_mask, prompts=prompts)
    return results[0] if single else results
