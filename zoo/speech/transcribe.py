"""Long-form transcription: Whisper's sequential 30-second windows and the heuristics that make it reliable.

    from zoo.speech.transcribe import transcribe
    result = transcribe(model, "talk.wav")   # {"text", "segments": [{start, end, ...}], "language", "no_speech_prob"}
    results = transcribe(model, ["a.wav", "b.flac"], language="en", beam_size=None)   # several files, batched

This follows openai/whisper's transcribe.py and the strategies of Radford et al., 2022, "Robust Speech
Recognition via Large-Scale Weak Supervision", sec. 4.5 and Table 7:
- the audio is decoded window by window (at most 30 s, the encoder's context); a window ends at the last
  complete segment its timestamps close, so the next window starts there (sec. 3.8: "shifting the window
  according to the timestamps predicted by the model");
- beam search with 5 beams at temperature 0; when the result looks wrong (its gzip compression ratio is above
  2.4, i.e. the decoder looped, or its average log-probability is below -1), the window is decoded again at
  the next temperature of 0.2, 0.4, ... 1.0 (sampling, best of 5): "temperature fallback";
- voice activity detection: a window is silence when P(<|nospeech|>) > 0.6 and the average log-probability
  is below -1; it yields no text, so the decoder's guesses on silence are not printed;
- the previous window's text is the prompt (<|startofprev|>) of the next one ("previous text conditioning"),
  except after a window that needed a temperature above 0.5: a badly decoded text would mislead the next.

Differences from whisper, on purpose: a short clip (or the last window) keeps its own length instead of
being padded to 30 s; a window with a single segment starts at its opening timestamp (whisper starts it at
the window's start); several files are transcribed together, their windows batched through the encoder and
the decoder (each file with its own language, prompt and position); segments without text are dropped from
`segments` rather than kept with empty text.
"""

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from zoo.errors import InputError, InputTypeError
from zoo.speech.audio import FRAMES_PER_SECOND, N_FRAMES, N_MELS, SAMPLE_RATE, load_audio, log_mel_spectrogram
from zoo.speech.decoding import (
    DecodingOptions,
    DecodingResult,
    DecodingTask,
    SpeechModel,
    check_speech_model,
    encode_audio,
    language_distribution,
    logits_at,
    pad_mels,
    select_rows,
)
from zoo.utils import eval_mode

TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
DEFAULT_SEARCH = dict(beam_size=5, best_of=5)  # whisper's command-line defaults, the paper's Table 7
# Transcripts of a model with a CTC head are decoded jointly with it (zoo.speech.joint) at this weight, measured
# on the recipe's validation clips (README "Speech"); 0.3 is also ESPnet's usual decoding weight.
DEFAULT_CTC_WEIGHT = 0.3
MANAGED = ("temperature", "task", "language", "prompt")  # set by transcribe() itself, not decode options


def transcribe(model: SpeechModel, audio, *, task: str = "transcribe", language: str | None = None,
               temperature: float | Sequence[float] = TEMPERATURES, compression_ratio_threshold: float | None = 2.4,
               logprob_threshold: float | None = -1.0, no_speech_threshold: float | None = 0.6,
               condition_on_previous_text: bool = True, initial_prompt: str | None = None,
               **decode_options) -> dict | list[dict]:
    """Transcribe (or translate into English) audio of any length.

    audio: a file path, a 16 kHz waveform (tensor or numpy array, (samples,)), or a list of those (-> a list
    of results, decoded together). language: a code, or None to detect it on each file's first window.
    temperature: one value or the fallback sequence. compression_ratio_threshold / logprob_threshold: a
    window is decoded again at the next temperature when its compression ratio is above the first or its
    average log-prob below the second (None: that test is off). no_speech_threshold: a window is silence when
    its no-speech probability is above it and its average log-prob below logprob_threshold (None: off).
    condition_on_previous_text: prompt each window with the text so far (since the last reset).
    initial_prompt: text that prompts the first window (a spelling or style hint).
    decode_options: DecodingOptions fields (beam_size, best_of, patience, length_penalty, suppress_tokens,
    suppress_blank, without_timestamps, max_initial_timestamp, sample_len, prefix, seed, prepack, ctc_weight);
    beam_size and best_of default to 5; beam_size and patience apply at temperature 0, best_of above it;
    timestamps are decoded when the model learnt them (its config.timestamps; zoo's recipe does not teach them);
    a model with a CTC head transcribes with joint CTC/attention decoding, ctc_weight DEFAULT_CTC_WEIGHT (0 turns
    it off; translations never use it), and then a low average log-prob alone does not resample a window
    (Fallback.retry_unlikely). A model trained to translate from the transcript (config.translate_from_transcript)
    transcribes each window first, as task="transcribe" would, and that transcript is the prompt of the window's
    translation (an English window's translation is its transcript: such a model never learnt English to English);
    condition_on_previous_text does not apply to its translations, and initial_prompt is refused.

    Returns {"text", "segments", "language", "no_speech_prob"} per file; a segment is {"id", "seek" (mel frame
    of its window), "start", "end" (seconds), "text", "tokens", "temperature", "avg_logprob",
    "compression_ratio", "no_speech_prob"}. Without timestamps, each window with text is one segment. The
    file's no_speech_prob is its first window's P(<|nospeech|>) (the same at every temperature), kept even
    when that window is silence and yields no segment.

    Refused with ValueError before any audio is decoded: a language the model does not know, and a beam_size,
    patience or best_of that the temperature schedule would never use (whisper drops them silently).
    """
    check_speech_model(model, "transcribe()")
    _check_decode_options(decode_options)
    if initial_prompt is not None and not isinstance(initial_prompt, str):
        raise InputTypeError(f"transcribe() initial_prompt must be a str (text that prompts the first window) or "
                             f"None, got {type(initial_prompt).__name__}")
    temperatures = _temperatures(temperature)
    _check_search(decode_options, temperatures)
    languages = getattr(model.tokenizer, "languages", None)
    if language is not None and languages is not None and language not in languages:
        raise InputError(f"transcribe() language={language!r} is not one of this model's languages; allowed: "
                         f"{', '.join(languages)}, or None to detect it")
    for name, value in (("compression_ratio_threshold", compression_ratio_threshold),
                        ("logprob_threshold", logprob_threshold), ("no_speech_threshold", no_speech_threshold)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise InputError(f"transcribe() {name} must be a number or None (off), got {value!r}")
    config = getattr(model, "config", None)
    from_transcript = task == "translate" and getattr(config, "translate_from_transcript", False)
    if from_transcript and initial_prompt is not None:
        raise InputError("transcribe(task='translate') with this model prompts each window's translation with its "
                         "transcript (config.translate_from_transcript), so initial_prompt has no place; "
                         "allowed: initial_prompt=None")
    joint_weight = DEFAULT_CTC_WEIGHT if getattr(model, "ctc_head", None) is not None else 0.0
    search = {**DEFAULT_SEARCH, "without_timestamps": not getattr(config, "timestamps", True),
              "ctc_weight": joint_weight if task == "transcribe" else 0.0, **decode_options}
    # one DecodingTask per temperature, built (and so validated) before any audio is decoded; with
    # from_transcript a second set transcribes each window first (as task="transcribe" would)
    tasks = [DecodingTask(model, _options_at(t, task, language, search)) for t in temperatures]
    hearing = [DecodingTask(model, _options_at(t, "transcribe", language,
                                               {**search, "ctc_weight": joint_weight, "prefix": None}))
               for t in temperatures] if from_transcript else []  # a prefix is the translation's, not the transcript's
    prepack = tasks[0].options.prepack  # the encoder's too (encode_audio)
    fallback, hearing_fallback = (Fallback(compression_ratio_threshold, logprob_threshold, no_speech_threshold,
                                           retry_unlikely=t[0].options.ctc_weight == 0) if t else None
                                  for t in (tasks, hearing))

    single = not isinstance(audio, (list, tuple))
    sources = [audio] if single else list(audio)
    if not sources:
        raise InputError("transcribe() got an empty list of audio; give a path, a waveform or a list of them")
    tokenizer = model.tokenizer
    prompt = tasks[0].encode_text(initial_prompt)
    weight = next(model.parameters(), None)  # features go where the model is, in its dtype
    place = dict(device=weight.device, dtype=weight.dtype) if weight is not None else {}
    n_mels = getattr(getattr(model, "config", None), "n_mels", N_MELS)  # 128 for large-v3
    files = [File(log_mel_spectrogram(_load(source), n_mels=n_mels).to(**place), language, list(prompt))
             for source in sources]

    with torch.inference_mode(), eval_mode(model):
        # the first windows' encoding, when language detection made it: decoding reuses it (whisper's
        # transcribe() runs the encoder on the first window twice, once to detect and once to decode)
        first = _detect_languages(model, files, prepack) if language is None else None
        while active := [f for f in files if f.seek < f.frames]:
            if first is not None and len(active) == len(files):  # every file is at its first window
                features, mask = first
            else:
                windows = [f.mel[:, f.seek:f.seek + f.window_frames] for f in active]
                features, mask = encode_audio(model, *pad_mels(windows)[:2], prepack)  # once per window
            first = None
            languages = [f.language for f in active]
            if hearing:  # the window's own transcript, its text tokens (none for silence), prompts its translation
                heard = hearing_fallback.decode(hearing, features, mask, languages, [[] for _ in active])
                prompts = [[] if hearing_fallback.is_silence(r) else [t for t in r.tokens if t < tokenizer.eot]
                           for r in heard]
            else:
                prompts = [f.tokens[f.prompt_since:] for f in active]
            results = fallback.decode(tasks, features, mask, languages, prompts)
            if hearing:  # English speech needs no translation into English: its transcript is the translation
                results = [heard_result if code == "en" else result
                           for code, heard_result, result in zip(languages, heard, results)]
            for f, result in zip(active, results):
                f.add(result, tokenizer, fallback, condition_on_previous_text)

    out = [{"text": tokenizer.decode(f.tokens[len(prompt):]), "segments": f.segments, "language": f.language,
            "no_speech_prob": f.no_speech_prob} for f in files]
    return out[0] if single else out


def _check_decode_options(decode_options: dict):
    managed = [name for name in MANAGED if name in decode_options]
    if managed:
        raise InputError(f"transcribe() sets {', '.join(managed)} itself; pass task=, language=, temperature= "
                         f"and initial_prompt= as its own arguments")
    known = [f.name for f in dataclasses.fields(DecodingOptions) if f.name not in MANAGED]
    unknown = [name for name in decode_options if name not in known]
    if unknown:
        raise InputError(f"transcribe() got unknown option(s) {', '.join(unknown)}; allowed: its own arguments and "
                         f"the DecodingOptions fields {', '.join(known)}")


def _temperatures(temperature) -> tuple[float, ...]:
    values = (temperature,) if isinstance(temperature, (int, float)) else tuple(temperature)
    if not values or not all(isinstance(t, (int, float)) and not isinstance(t, bool) and t >= 0 for t in values):
        raise InputError(f"transcribe() temperature must be a number >= 0 or a non-empty sequence of them "
                         f"(the fallback order), got {temperature!r}")
    return tuple(float(t) for t in values)


def _check_search(options: dict, temperatures: tuple[float, ...]):
    """beam_size and patience apply at temperature 0, best_of above it (_options_at): refuse the ones the
    schedule never reaches instead of dropping them. Both beam_size and best_of are fine when the schedule has
    both kinds of temperature (whisper's defaults)."""
    greedy, sampled = 0.0 in temperatures, any(t > 0 for t in temperatures)
    at = f"temperature={temperatures[0]!r}" if len(temperatures) == 1 else f"temperatures {temperatures}"
    beam_size, best_of = options.get("beam_size"), options.get("best_of")
    if beam_size is not None and best_of is not None and not (greedy and sampled):
        raise InputError(f"transcribe() got beam_size={beam_size} and best_of={best_of}, but at {at} only "
                         f"{'beam_size' if greedy else 'best_of'} would be used: beam_size applies at "
                         f"temperature 0, best_of above 0; give one of them, or a schedule with 0 and "
                         f"temperatures above 0 (the default {TEMPERATURES}) to use both")
    if best_of is not None and not sampled:
        raise InputError(f"transcribe() best_of={best_of} needs a temperature above 0, got {at}: at temperature 0 "
                         f"every sample is the same greedy sequence; use beam_size, or a temperature above 0")
    for name in ("beam_size", "patience"):
        if options.get(name) is not None and not greedy:
            raise InputError(f"transcribe() {name}={options[name]!r} needs temperature 0 in the schedule, got "
                             f"{at}: beam search does not sample; use best_of to sample several, or add 0")


def _options_at(temperature: float, task: str, language: str | None, search: dict) -> DecodingOptions:
    """whisper's rule: beam search (and its patience) at temperature 0, best_of when sampling."""
    fields = dict(search)
    if temperature > 0:
        fields.pop("beam_size", None)
        fields.pop("patience", None)
    else:
        fields.pop("best_of", None)
    return DecodingOptions(task=task, language=language, temperature=temperature, **fields)


def _load(source) -> torch.Tensor:
    if isinstance(source, (str, Path)):
        return load_audio(source)
    if isinstance(source, (torch.Tensor, np.ndarray)):
        return load_audio(source, sample_rate=SAMPLE_RATE)  # arrays are 16 kHz waveforms, as whisper takes them
    raise InputTypeError(f"transcribe() takes a path, a 16 kHz waveform (tensor or numpy array) or a list of "
                         f"them, got {type(source).__name__}")


def _detect_languages(model: SpeechModel, files: list["File"], prepack: bool
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Each file's language from its first window (whisper detects once per file), batched; returns the first
    windows' encoder output and mask, which are what decoding the first windows needs."""
    features, mask = encode_audio(model, *pad_mels([f.mel[:, :N_FRAMES] for f in files])[:2], prepack)
    logits = logits_at(model, [[model.tokenizer.sot]] * len(files), features, mask)
    codes, _ = language_distribution(model.tokenizer, logits)
    for f, code in zip(files, codes):
        f.language = code
    return features, mask


# ----------------------------------------------------------------------------------------------------------
# temperature fallback


@dataclass(frozen=True)
class Fallback:
    """When a window's decoding is redone at the next temperature, and when it is silence (sec. 4.5)."""

    compression_ratio_threshold: float | None
    logprob_threshold: float | None
    no_speech_threshold: float | None
    # Whether a low average log-prob alone sends a window to the next temperature. Not under joint CTC decoding:
    # there the score is low wherever the decoder and the CTC head disagree, and sampling with the CTC scores
    # spells worse than the beam it replaces (README "Speech"); loops (the compression ratio) are still retried.
    retry_unlikely: bool = True

    def is_silence(self, result: DecodingResult) -> bool:
        """No speech: the model says <|nospeech|> and does not believe its own text. A confident transcript
        is kept even when no_speech_prob is high."""
        return (self.no_speech_threshold is not None and result.no_speech_prob > self.no_speech_threshold
                and (self.logprob_threshold is None or result.avg_logprob < self.logprob_threshold))

    def needs_retry(self, result: DecodingResult) -> bool:
        too_repetitive = (self.compression_ratio_threshold is not None
                          and result.compression_ratio > self.compression_ratio_threshold)
        too_unlikely = (self.retry_unlikely and self.logprob_threshold is not None
                        and result.avg_logprob < self.logprob_threshold)
        return (too_repetitive or too_unlikely) and not self.is_silence(result)  # silence: nothing to retry

    def decode(self, tasks: list[DecodingTask], features: torch.Tensor, mask: torch.Tensor | None,
               languages: list[str], prompts: list[list[int]]) -> list[DecodingResult]:
        """Decode every window at the first temperature, then only those that need it at the next, and so on;
        a window that fails at every temperature keeps its last result (as whisper)."""
        results: list[DecodingResult | None] = [None] * len(languages)
        pending = list(range(len(languages)))
        for task in tasks:
            decoded = task.run(select_rows(features, pending), select_rows(mask, pending),
                               [languages[i] for i in pending], [prompts[i] for i in pending])
            for i, result in zip(pending, decoded):
                results[i] = result
            pending = [i for i, result in zip(pending, decoded) if self.needs_retry(result)]
            if not pending:
                break
        return results


# ----------------------------------------------------------------------------------------------------------
# one file's progress: where the next window starts, its text so far, its segments


@dataclass
class File:
    mel: torch.Tensor  # (80, frames): the whole file, sliced into windows
    language: str | None
    tokens: list[int]  # the initial prompt, then every segment's tokens (timestamps included, as whisper)
    segments: list[dict] = field(default_factory=list)
    seek: int = 0  # mel frame where the next window starts
    prompt_since: int = 0  # tokens[prompt_since:] prompt the next window
    no_speech_prob: float = math.nan  # the first window's, the file's no_speech_prob

    @property
    def frames(self) -> int:
        return self.mel.shape[1]

    @property
    def window_frames(self) -> int:
        return min(N_FRAMES, self.frames - self.seek)

    def add(self, result: DecodingResult, tokenizer, fallback: Fallback, condition_on_previous_text: bool):
        """Cut the window's tokens into segments and move `seek` to where the next window starts."""
        size, window_start = self.window_frames, self.seek
        if window_start == 0:
            self.no_speech_prob = result.no_speech_prob
        if fallback.is_silence(result):
            self.seek += size  # voice activity detection: skip the window, print nothing
            return
        offset = self.seek / FRAMES_PER_SECOND
        tokens = result.tokens
        is_time = [t >= tokenizer.timestamp_begin for t in tokens]
        seconds = [tokenizer.timestamp_seconds(t) if time else None for t, time in zip(tokens, is_time)]
        # two timestamps in a row end one segment and start the next; a lone timestamp at the very end closes
        # the last segment, which means the window was transcribed to its end
        single_ending = is_time[-2:] == [False, True]
        boundaries = [i + 1 for i in range(len(tokens) - 1) if is_time[i] and is_time[i + 1]]
        new = []
        if boundaries:
            cuts = boundaries + ([len(tokens)] if single_ending else [])
            start = 0
            for end in cuts:
                piece = tokens[start:end]
                new.append((offset + seconds[start], offset + seconds[end - 1], piece))
                start = end
            if single_ending:
                self.seek += size
            else:  # the last segment is unfinished: the next window starts where the last complete one ended
                self.seek += max(round(seconds[start - 1] * FRAMES_PER_SECOND), 1)
        else:  # one segment (or no timestamps at all): the window is one segment, to its last timestamp
            times = [s for s in seconds if s is not None]
            start = times[0] if is_time[:1] == [True] else 0.0
            end = times[-1] if times and times[-1] > start else size / FRAMES_PER_SECOND
            new.append((offset + start, offset + end, tokens))
            self.seek += size

        for start, end, piece in new:
            text = tokenizer.decode(piece)
            if start == end or not text.strip():
                continue  # an instantaneous segment or one without text (whisper clears them)
            self.segments.append(dict(
                id=len(self.segments), seek=window_start, start=round(start, 3), end=round(end, 3),
                text=text, tokens=list(piece), temperature=result.temperature, avg_logprob=result.avg_logprob,
                compression_ratio=result.compression_ratio, no_speech_prob=result.no_speech_prob))
            self.tokens += piece
        if not condition_on_previous_text or result.temperature > 0.5:
            self.prompt_since = len(self.tokens)  # no prompt, or a prompt that a bad decoding might mislead
