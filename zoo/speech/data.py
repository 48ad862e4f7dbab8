"""The multilingual synthetic speech corpus: eSpeak NG speech of grammar sentences, augmented, plus no-speech clips.

    config = SpeechCorpusConfig(train_clips=2000)
    root = build_corpus(config, "~/.cache/zoo")        # root/train.jsonl, root/train/000000.wav, ...
    audio = synthesize("Hola, ¿qué tal?", "es", VoiceParams(variant="f3", rate=150))  # float32, 16 kHz

Speech comes from eSpeak NG, loaded with ctypes from the `espeakng-loader` wheel (it ships the library and
its voice data; no system package, no download). Each speech clip is a sentence from zoo.speech.grammar with
its English translation, spoken by a random voice variant (m1-m7, f1-f5 or the default) at a random rate,
pitch, pitch range and volume, resampled from eSpeak's 22050 Hz to 16 kHz, optionally put in a small
synthetic room (a decaying-noise impulse response), padded with random silence and mixed with white or pink
noise at a chosen SNR (or left clean). No-speech clips are digital silence, faint noise, white and pink
noise, mains hum with harmonics, pure tones and music-like chords.

Determinism: clip `index` of `split` is a pure function of (config, split, index): its own generators are
seeded with (seed, split, index), and eSpeak, which keeps state between utterances inside one process (the
same text comes out a few samples different the second time; espeak_ng_SetRandSeed and re-initialising do
not reset it), speaks every clip in a freshly forked child of an initialised, never-used engine, with libc's
rand() (the breathy variants' noise) seeded in the child. So any worker count and any scheduling give
byte-identical WAVs and manifests.

The corpus is cached under a hash of the config and the generator version, published with one atomic rename
(a second call returns at once; concurrent builders each write their own copy and the first one wins).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
import multiprocessing as mp
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from tqdm import tqdm

from zoo.errors import CorruptFileError, InputError, MissingFileError
from zoo.speech.audio import SAMPLE_RATE
from zoo.speech.grammar import LANGUAGES, SPLITS, SentenceGenerator, check_language, check_split
from zoo.utils import written_atomically

# Bump whenever the audio or rows a given (config, split, index) produces change: it is part of the cache key.
GENERATOR_VERSION = 2
# eSpeak voice per Whisper language code: Mandarin is "cmn" in eSpeak (ISO 639-3), "zh" in Whisper.
ESPEAK_VOICES = {"en": "en", "es": "es", "fr": "fr", "de": "de", "zh": "cmn"}
# eSpeak's voice variants (espeak-ng-data/voices/!v): seven male, five female, and the language's default.
VARIANTS: tuple[str, ...] = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
NO_SPEECH_KINDS: tuple[str, ...] = ("silence", "low_noise", "white_noise", "pink_noise", "hum", "tone", "chords")
NOISE_KINDS: tuple[str, ...] = ("white", "pink")
PEAK_LIMIT = 0.99  # the whole mix is scaled down below this (keeps the SNR) so PCM16 never clips
MAX_SENTENCE_DRAWS = 50  # redraws when a sentence comes out too short or long; ~10% of draws are redrawn

# eSpeak NG's C API (speak_lib.h): output mode, parameter ids, text encoding.
AUDIO_OUTPUT_SYNCHRONOUS = 0x02
ESPEAK_RATE, ESPEAK_VOLUME, ESPEAK_PITCH, ESPEAK_RANGE = 1, 2, 3, 4
ESPEAK_CHARS_UTF8 = 1
# espeak_TextToPhonemes' phonememode: bit 1 clear, eSpeak's ASCII phoneme mnemonics (not IPA, which keeps one
# character per Mandarin tone and so merges tones: see phonemize); bits 8-23 the code point eSpeak writes between
# two phonemes of a word, PHONEME_SEPARATOR. No phoneme name of the five voices holds a "/", so a reading splits
# into eSpeak's names exactly (checked on 5,000 of zoo.speech.grammar's sentences for each split and language:
# read without a separator they hold no "/", and read with it they are the same less the "/"s)
PHONEME_SEPARATOR = "/"
ESPEAK_PHONEMES_ASCII = ord(PHONEME_SEPARATOR) << 8
SYNTH_RAND_SEED = 1
SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


@dataclass(frozen=True)
class VoiceParams:
    """How eSpeak speaks: variant ("" is the language's default voice), rate in words per minute (eSpeak's
    default 175), pitch and pitch range 0-100 (default 50), volume 0-200 (default 100)."""

    variant: str = ""
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50
    volume: int = 100

    def voice_name(self, language: str) -> str:
        if self.variant not in VARIANTS:
            allowed = ", ".join(v or "'' (default)" for v in VARIANTS)
            raise InputError(f"unknown voice variant {self.variant!r}; allowed: {allowed}")
        base = ESPEAK_VOICES[check_language(language)]
        return f"{base}+{self.variant}" if self.variant else base


@dataclass(frozen=True)
class SpeechCorpusConfig:
    languages: tuple[str, ...] = LANGUAGES
    # The training split's language cycle, when it should differ from the balanced one: a language named twice
    # gets twice the training clips (more data for the language learnt slowest) while validation and test stay
    # balanced over `languages`, so their figures compare with a balanced run's. Empty: `languages`.
    train_languages: tuple[str, ...] = ()
    train_clips: int = 2000
    val_clips: int = 200
    test_clips: int = 200
    test_unseen_clips: int = 200  # speech only: it scores words never heard in training
    no_speech_share: float = 0.1  # of train, val and test clips
    snr_db: tuple[float | None, ...] = (None, None, 30.0, 20.0, 10.0, 5.0)  # drawn uniformly; None is clean
    noise_kinds: tuple[str, ...] = NOISE_KINDS
    reverb_share: float = 0.3
    rt60_s: tuple[float, float] = (0.1, 0.4)  # a small room: reverberation time range
    rate_wpm: tuple[int, int] = (130, 210)
    pitch: tuple[int, int] = (25, 75)
    pitch_range: tuple[int, int] = (20, 80)
    volume: tuple[int, int] = (60, 140)
    peak_dbfs: tuple[float, float] = (-20.0, -1.0)  # level of the clip after augmentation
    speech_s: tuple[float, float] = (1.5, 10.0)  # spoken sentence length before padding
    silence_s: tuple[float, float] = (0.05, 0.6)  # leading and trailing silence, each
    no_speech_s: tuple[float, float] = (1.0, 10.0)
    seed: int = 0

    def __post_init__(self):
        for lang in self.languages:
            check_language(lang)
        if not self.languages:
            raise InputError(f"languages is empty; allowed: {', '.join(LANGUAGES)}")
        if self.train_languages and set(self.train_languages) != set(self.languages):
            raise InputError(f"train_languages {list(self.train_languages)} must name each of languages "
                             f"{list(self.languages)} and no other (a language twice for twice its clips): "
                             f"evaluation scores every language, and the tokenizer learns those it trains on")
        bad = [k for k in self.noise_kinds if k not in NOISE_KINDS]
        if bad:
            raise InputError(f"unknown noise kinds {bad}; allowed: {', '.join(NOISE_KINDS)}")
        if not 0.0 <= self.no_speech_share <= 1.0 or not 0.0 <= self.reverb_share <= 1.0:
            raise InputError("no_speech_share and reverb_share are probabilities in [0, 1]")
        object.__setattr__(self, "languages", tuple(self.languages))
        object.__setattr__(self, "train_languages", tuple(self.train_languages))
        object.__setattr__(self, "snr_db", tuple(self.snr_db))

    def clips(self, split: str) -> int:
        return getattr(self, f"{check_split(split)}_clips")


# -----------------------------------------------------------------------------
# eSpeak NG through ctypes


class Espeak:
    """The process's eSpeak NG engine. Every utterance is spoken, and every text read into phonemes, in a
    forked child, so this engine never does either and its internal state stays as initialised: the same
    request always gives the same samples."""

    def __init__(self):
        import espeakng_loader  # the wheel with the library and voice data

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                          ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        # const char *espeak_TextToPhonemes(const void **textptr, int textmode, int phonememode)
        self.lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self.lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
        data = espeakng_loader.get_data_path().encode()
        self.sample_rate = self.lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed ({self.sample_rate}) with data at {data.decode()}")
        self._chunks: list[bytes] = []
        self._callback = SYNTH_CALLBACK(self._collect)  # keep a reference: ctypes does not
        self.lib.espeak_SetSynthCallback(self._callback)
        self.pid = os.getpid()

    def _collect(self, wav, n: int, events) -> int:
        if n > 0 and wav:
            self._chunks.append(ctypes.string_at(wav, 2 * n))
        return 0  # 0: continue synthesis

    def _set_voice(self, voice: str):
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise InputError(f"eSpeak has no voice {voice!r}")

    def _speak_here(self, text: str, voice: str, params: VoiceParams) -> bytes:
        # The breathy variants (f2, f4, ...) add noise from libc's rand(), whose state a forked child inherits
        # from whatever ran in the parent: seed both generators eSpeak may use.
        ctypes.CDLL(None).srand(SYNTH_RAND_SEED)
        self.lib.espeak_ng_SetRandSeed(ctypes.c_long(SYNTH_RAND_SEED))
        self._set_voice(voice)
        for param, value in ((ESPEAK_RATE, params.rate), (ESPEAK_VOLUME, params.volume),
                             (ESPEAK_PITCH, params.pitch), (ESPEAK_RANGE, params.pitch_range)):
            self.lib.espeak_SetParameter(param, int(value), 0)
        data = text.encode()
        if self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, ESPEAK_CHARS_UTF8, None, None) != 0:
            raise RuntimeError(f"espeak_Synth failed on {text!r}")
        self.lib.espeak_Synchronize()
        return b"".join(self._chunks)

    def _phonemes_here(self, texts: list[str], voice: str) -> bytes:
        self._set_voice(voice)
        readings = []
        for text in texts:
            data = text.encode()  # kept alive: eSpeak moves `pointer` along this buffer
            pointer, clauses = ctypes.c_char_p(data), []
            while pointer.value:  # one clause a call; eSpeak leaves the pointer after it (NULL at the end)
                clauses.append(self.lib.espeak_TextToPhonemes(ctypes.byref(pointer), ESPEAK_CHARS_UTF8,
                                                              ESPEAK_PHONEMES_ASCII))
            readings.append(" ".join(c.decode() for c in clauses if c))  # None: a clause without phonemes
        return json.dumps(readings).encode()

    def _in_child(self, work, voice: str, what: str) -> bytes:
        """The bytes `work()` returns, computed in a forked child (see the class docstring) and sent back
        through a pipe; the child leaves without running any parent cleanup."""
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.close(read_fd)
                with os.fdopen(write_fd, "wb") as pipe:
                    pipe.write(work())
            except ValueError:  # _set_voice's InputError: the only bad input a child meets
                code = 2
            except BaseException:
                code = 1
            os._exit(code)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code == 2:
            raise InputError(f"eSpeak has no voice {voice!r}")
        if code != 0:
            raise RuntimeError(f"eSpeak child failed (exit {code}) {what} with voice {voice!r}")
        return data

    def speak(self, text: str, voice: str, params: VoiceParams) -> np.ndarray:
        """int16 samples at self.sample_rate, spoken by a forked child (see the class docstring)."""
        data = self._in_child(lambda: self._speak_here(text, voice, params), voice, f"speaking {text!r}")
        return np.frombuffer(data, dtype=np.int16)

    def phonemes(self, texts: list[str], voice: str) -> list[str]:
        """eSpeak's phonemes of each text (see phonemize), the clauses joined by a space: all of them in one
        forked child, so this engine's state stays as initialised and the corpus's audio does not change."""
        return json.loads(self._in_child(lambda: self._phonemes_here(texts, voice), voice,
                                         f"phonemising {len(texts)} texts"))


_ENGINE: Espeak | None = None


def engine() -> Espeak:
    """This process's engine (created on first use; a spawned worker creates its own)."""
    global _ENGINE
    if _ENGINE is None or _ENGINE.pid != os.getpid():
        _ENGINE = Espeak()
    return _ENGINE


def synthesize(text: str, language: str, voice: VoiceParams = VoiceParams()) -> np.ndarray:
    """`text` spoken in `language` (a Whisper code: en, es, fr, de, zh): float32 mono in [-1, 1] at 16 kHz."""
    eng = engine()
    pcm = eng.speak(text, voice.voice_name(language), voice)
    wave = torch.from_numpy(pcm.astype(np.float32) / 32768.0)
    return AF.resample(wave, eng.sample_rate, SAMPLE_RATE).numpy()


def phonemize(texts: list[str], language: str) -> list[str]:
    """eSpeak NG's phonemes of each text in `language` (a Whisper code), in eSpeak's ASCII phoneme mnemonics (its
    phoneme names, as in its dictionaries: "S" for IPA ʃ, "@" for ə, "tS;" for tɕ), as eSpeak writes them: the
    names of a word's phonemes joined by PHONEME_SEPARATOR "/", a space between words, stress marks (' primary,
    , secondary) before a name, pauses ("_", "_:", "_!", "_|", and combined: German "_!_|"), and a word eSpeak
    reads by another language's rules between its voice-switch markers (the Mandarin voice reads 熊 as English:
    "(en)/k/S/@/N/t/'u:/(cmn)"). A Mandarin syllable's final ends in its whole tone contour: 55, 35, 214, 51 for
    tones 1-4 and 11 for the neutral tone, so phonemize(["妈骂麻马"], "zh") == ["m/'A55/_| m/'A51/_| m/'A35/_|
    m/'A214/_|"]. Not IPA: eSpeak's IPA keeps one character per tone, the first (55) and fourth (51) both "5"
    and the second (35) "ɜ", and so reads 妈 and 骂 alike. zoo.speech.recipe.phoneme_units turns a reading into
    the phoneme head's units. The corpus's speech does not change: the texts are read in a forked child
    (Espeak.phonemes)."""
    return engine().phonemes(list(texts), ESPEAK_VOICES[check_language(language)])


# -----------------------------------------------------------------------------
# augmentation


def db_to_gain(db: float) -> float:
    return 10.0 ** (db / 20.0)


def white_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(n)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f power noise: white noise shaped by 1/sqrt(f) in the frequency domain, unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spectrum.size, dtype=np.float64)
    f[0] = 1.0  # keep DC finite (it is removed below)
    spectrum /= np.sqrt(f)
    spectrum[0] = 0.0
    x = np.fft.irfft(spectrum, n)
    return x / (np.sqrt(np.mean(x ** 2)) + 1e-12)


def add_noise(x: np.ndarray, snr_db: float, kind: str, rng: np.random.Generator,
              speech: slice | None = None) -> np.ndarray:
    """x plus stationary `kind` noise at `snr_db`: the speech power is measured over `speech` (the spoken
    part, not the padding) and the noise power over the whole clip."""
    if kind not in NOISE_KINDS:
        raise InputError(f"unknown noise kind {kind!r}; allowed: {', '.join(NOISE_KINDS)}")
    noise = (white_noise if kind == "white" else pink_noise)(x.size, rng)
    signal_power = np.mean(x[speech if speech is not None else slice(None)].astype(np.float64) ** 2)
    noise *= math.sqrt(signal_power / 10.0 ** (snr_db / 10.0) / np.mean(noise ** 2))
    return x + noise


def measured_snr_db(clean: np.ndarray, noisy: np.ndarray, speech: slice | None = None) -> float:
    noise = noisy.astype(np.float64) - clean
    s = clean[speech if speech is not None else slice(None)].astype(np.float64)
    return 10.0 * math.log10(np.mean(s ** 2) / np.mean(noise ** 2))


def reverberate(x: np.ndarray, rt60_s: float, drr_db: float, rng: np.random.Generator) -> np.ndarray:
    """A small room: convolution with a direct path plus exponentially decaying noise that falls by 60 dB in
    `rt60_s` (Sabine's reverberation time; the Polack statistical model of late reverb), the tail's energy
    `drr_db` below the direct path. The output is longer by the tail."""
    n = max(2, int(rt60_s * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-math.log(1000.0) * t / rt60_s)  # 60 dB = factor 1000 in amplitude
    tail[0] = 0.0
    tail *= math.sqrt(10.0 ** (-drr_db / 10.0) / np.sum(tail ** 2))
    ir = tail
    ir[0] = 1.0
    size = x.size + n - 1
    nfft = 1 << (size - 1).bit_length()
    return np.fft.irfft(np.fft.rfft(x, nfft) * np.fft.rfft(ir, nfft), nfft)[:size]


# -----------------------------------------------------------------------------
# no-speech clips


def _envelope(n: int, attack_s: float, release_s: float) -> np.ndarray:
    env = np.ones(n)
    a, r = min(n, int(attack_s * SAMPLE_RATE)), min(n, int(release_s * SAMPLE_RATE))
    if a:
        env[:a] = np.linspace(0.0, 1.0, a)
    if r:
        env[n - r:] *= np.linspace(1.0, 0.0, r)
    return env


def _rms_to(x: np.ndarray, dbfs: float) -> np.ndarray:
    return x * (db_to_gain(dbfs) / (np.sqrt(np.mean(x ** 2)) + 1e-12))


def no_speech(kind: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A clip without speech; levels are RMS in dBFS, chosen so nothing clips."""
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    if kind == "silence":
        return np.zeros(n)
    if kind == "low_noise":  # a quiet room or a mic's self-noise
        return _rms_to(white_noise(n, rng), rng.uniform(-70.0, -50.0))
    if kind in ("white_noise", "pink_noise"):
        x = white_noise(n, rng) if kind == "white_noise" else pink_noise(n, rng)
        return _rms_to(x, rng.uniform(-40.0, -18.0))
    if kind == "hum":  # mains hum: 50 or 60 Hz and its harmonics, 1/k amplitudes with random phases
        f0 = rng.choice([50.0, 60.0])
        x = sum(rng.uniform(0.5, 1.0) / k * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi))
                for k in range(1, 6))
        return _rms_to(x, rng.uniform(-40.0, -18.0)) + _rms_to(white_noise(n, rng), -70.0)
    if kind == "tone":  # a pure tone, log-uniform 100 Hz - 4 kHz, with 20 ms fades
        f = math.exp(rng.uniform(math.log(100.0), math.log(4000.0)))
        return _rms_to(np.sin(2 * np.pi * f * t) * _envelope(n, 0.02, 0.02), rng.uniform(-30.0, -9.0))
    if kind == "chords":  # music-like: 2-5 triads (some with a 7th), 3 harmonics a note, plucked envelopes
        x = np.zeros(n)
        bounds = np.linspace(0, n, rng.integers(2, 6) + 1).astype(int)
        for start, stop in zip(bounds[:-1], bounds[1:]):
            root = rng.integers(48, 73)  # MIDI C3-C5
            third = 4 if rng.random() < 0.5 else 3  # major or minor
            notes = [root, root + third, root + 7] + ([root + 10] if rng.random() < 0.3 else [])
            seg_t = t[: stop - start]
            decay = np.exp(-seg_t / rng.uniform(0.3, 1.5))
            for note in notes:
                f = 440.0 * 2.0 ** ((note - 69) / 12)
                tone = sum(0.6 ** (h - 1) * np.sin(2 * np.pi * h * f * seg_t) for h in (1, 2, 3))
                x[start:stop] += tone * decay * _envelope(stop - start, rng.uniform(0.005, 0.05), 0.03)
        return _rms_to(x, rng.uniform(-30.0, -12.0))
    raise InputError(f"unknown no-speech kind {kind!r}; allowed: {', '.join(NO_SPEECH_KINDS)}")


# -----------------------------------------------------------------------------
# one clip, a pure function of (config, split, index)


@dataclass
class Clip:
    audio: np.ndarray  # float32 at SAMPLE_RATE
    row: dict = field(default_factory=dict)  # the manifest row, less the audio path


def clip_rng(config: SpeechCorpusConfig, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, SPLITS.index(check_split(split)), index])


def _draw_voice(config: SpeechCorpusConfig, rng: np.random.Generator) -> VoiceParams:
    return VoiceParams(str(rng.choice(VARIANTS)), int(rng.integers(config.rate_wpm[0], config.rate_wpm[1] + 1)),
                       int(rng.integers(config.pitch[0], config.pitch[1] + 1)),
                       int(rng.integers(config.pitch_range[0], config.pitch_range[1] + 1)),
                       int(rng.integers(config.volume[0], config.volume[1] + 1)))


def make_clip(config: SpeechCorpusConfig, split: str, index: int) -> Clip:
    rng = clip_rng(config, split, index)
    if split != "test_unseen" and rng.random() < config.no_speech_share:
        kind = NO_SPEECH_KINDS[int(rng.integers(len(NO_SPEECH_KINDS)))]
        audio = no_speech(kind, rng.uniform(*config.no_speech_s), rng)
        return Clip(audio.astype(np.float32), {"language": None, "text": "", "translation": "", "no_speech": True,
                                               "kind": kind, "voice": None, "snr_db": None, "reverb": False})
    cycle = config.train_languages if split == "train" and config.train_languages else config.languages
    language = cycle[index % len(cycle)]  # the languages in turn: balanced unless train_languages repeats one
    generator, sentence_rng = SentenceGenerator(language), random.Random(int(rng.integers(2 ** 63)))
    for _ in range(MAX_SENTENCE_DRAWS):
        sentence, voice = generator.sample(sentence_rng, split), _draw_voice(config, rng)
        speech = synthesize(sentence.text, language, voice).astype(np.float64)
        if config.speech_s[0] <= speech.size / SAMPLE_RATE <= config.speech_s[1]:
            break
    else:
        raise RuntimeError(f"no sentence of {config.speech_s} s in {MAX_SENTENCE_DRAWS} draws ({split} {index})")
    reverb = bool(rng.random() < config.reverb_share)
    if reverb:
        speech = reverberate(speech, rng.uniform(*config.rt60_s), rng.uniform(3.0, 12.0), rng)
    speech *= db_to_gain(rng.uniform(*config.peak_dbfs)) / (np.max(np.abs(speech)) + 1e-12)
    lead, trail = (int(rng.uniform(*config.silence_s) * SAMPLE_RATE) for _ in range(2))
    audio = np.concatenate([np.zeros(lead), speech, np.zeros(trail)])
    snr = config.snr_db[int(rng.integers(len(config.snr_db)))]
    noise_kind = str(rng.choice(config.noise_kinds))
    if snr is not None:
        audio = add_noise(audio, snr, noise_kind, rng, slice(lead, lead + speech.size))
    peak = np.max(np.abs(audio))
    if peak > PEAK_LIMIT:
        audio *= PEAK_LIMIT / peak
    return Clip(audio.astype(np.float32), {
        "language": language, "text": sentence.text, "translation": sentence.translation, "no_speech": False,
        "kind": "speech", "voice": voice.voice_name(language), "rate": voice.rate, "pitch": voice.pitch,
        "pitch_range": voice.pitch_range, "volume": voice.volume, "snr_db": snr,
        "noise": noise_kind if snr is not None else None, "reverb": reverb, "structure": sentence.kind,
        "speech_start": round(lead / SAMPLE_RATE, 4), "speech_end": round((lead + speech.size) / SAMPLE_RATE, 4),
    })


# -----------------------------------------------------------------------------
# the corpus on disk


def config_key(config: SpeechCorpusConfig) -> str:
    from importlib.metadata import version  # the wheel's version changes the voices: part of the key

    fields = asdict(config)
    if not fields["train_languages"]:  # the field's default builds what configs before it built: same key
        del fields["train_languages"]
    blob = json.dumps({"config": fields, "generator": GENERATOR_VERSION,
                       "espeakng_loader": version("espeakng-loader")}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _write_clip(job: tuple[SpeechCorpusConfig, str, int, str]) -> dict:
    config, split, index, root = job
    torch.set_num_threads(1)  # parallelism is across clips
    clip = make_clip(config, split, index)
    rel = f"{split}/{index:06d}.wav"
    sf.write(os.path.join(root, rel), clip.audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return {"audio": rel, "duration": round(clip.audio.size / SAMPLE_RATE, 4), **clip.row}


def build_corpus(config: SpeechCorpusConfig, cache_dir: str | os.PathLike, workers: int | None = None,
                 progress: bool = True) -> Path:
    """Write the corpus (WAV files, 16 kHz mono PCM16, and one JSONL manifest per split) under
    cache_dir/speech-<config hash>; return that directory. A finished corpus is returned at once.

    workers: processes (None: all CPUs; 0 or 1: this process). Clips do not depend on it."""
    final = Path(cache_dir).expanduser() / f"speech-{config_key(config)}"
    if (final / "config.json").exists():
        return final
    jobs = [(config, split, i) for split in SPLITS for i in range(config.clips(split))]
    workers = (os.cpu_count() or 1) if workers is None else workers
    with written_atomically(final, directory=True, replace_existing=False) as tmp:
        for split in SPLITS:
            (tmp / split).mkdir()
        work = [(c, s, i, str(tmp)) for c, s, i in jobs]
        bar = tqdm(total=len(work), desc="speech corpus", unit="clip", disable=not progress)
        if workers <= 1:
            rows = []
            for job in work:
                rows.append(_write_clip(job))
                bar.update()
        else:  # fork where there is one (as DataLoader workers do: no __main__ guard needed, instant start)
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            with mp.get_context(method).Pool(workers) as pool:
                rows = []
                for row in pool.imap(_write_clip, work, chunksize=4):
                    rows.append(row)
                    bar.update()
        bar.close()
        for split in SPLITS:
            with open(tmp / f"{split}.jsonl", "w", encoding="utf-8") as f:
                for row in rows:
                    if row["audio"].startswith(split + "/"):
                        f.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
        (tmp / "config.json").write_text(json.dumps({"config": asdict(config), "generator": GENERATOR_VERSION},
                                                    indent=1, sort_keys=True))
    return final


def read_manifest(root: str | os.PathLike, split: str) -> list[dict]:
    """The manifest rows of a built corpus split; a damaged manifest is a CorruptFileError that says how to
    rebuild the corpus."""
    path = Path(root) / f"{check_split(split)}.jsonl"
    if not path.is_file():
        raise MissingFileError(f"{path} is missing: {root} is not a built speech corpus (build_corpus writes one)")
    rows = []
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            try:
                row = json.loads(line.decode("utf-8"))
            except ValueError as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
                row, problem = None, str(error)
            else:
                problem = "not a JSON object with an audio path"
            if not isinstance(row, dict) or not isinstance(row.get("audio"), str):
                raise CorruptFileError(f"{path} line {number}: {problem}; delete {root} to build the corpus again")
            rows.append(row)
    return rows
