"""Fuzzing (issue 13, requirement 8): hypothesis drives the tokenizers, the audio loader, the image loader and the
caption/prompt path with any Unicode, random bytes, extreme sizes, rates, shapes and modes. Every input either
works as documented or raises one of zoo's errors naming what was wrong; never a raw library exception."""

import io
import math
import struct
import warnings
import zlib

import numpy as np
import pytest
import soundfile
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays
from PIL import Image
from torchvision.transforms import v2

import zoo
from zoo.data.shapes import BACKGROUNDS, SHAPES
from zoo.diffusion.data import (
    BACKGROUND_COLOURS,
    COLOUR_NAMES,
    POSITIONS,
    SIZE_WORDS,
    Attributes,
    CaptionTokenizer,
    caption_words,
    parse_caption,
)
from zoo.diffusion.pipeline import as_prompts, check_words
from zoo.errors import InputError, InputTypeError
from zoo.registry import get_family
from zoo.speech import audio as A
from zoo.speech.audio import load_audio, log_mel_spectrogram, split_windows
from zoo.speech.tokenizer import WhisperTokenizer, special_token_names
from zoo.text.tokenizer import MAX_NAMED, BPETokenizer, CharTokenizer
from zoo.vision.data import image_to_tensor, load_image

CORPUS = [
    "def add(a, b):\n    return a + b\n\nclass Point:\n    x: int = 0\n",
    "The quick brown fox jumps over the lazy dog. It's a \"test\" (of sorts) -- with [brackets].",
    "El rápido zorro marrón salta sobre el perro perezoso. ¿Dónde está la biblioteca?",
    "敏捷的棕色狐狸跳过了懒狗。今天天气很好。 שלום עולם مرحبا بالعالم 🙂🚀 naïve café\t\r\n",
] * 30
LANGUAGES = ["en", "es", "zh"]
MEGABYTE = 1 << 20
FILE_FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ----------------------------------------------------------------------------------------------------------
# text strategies: every code point UTF-8 can hold (surrogates cannot be), and runs of the scripts and
# characters that break naive tokenizers

RANGES = [
    (0x0000, 0x001F),  # C0 controls, NUL included
    (0x0300, 0x036F),  # combining diacritical marks
    (0x0590, 0x06FF),  # Hebrew and Arabic: right to left
    (0x200B, 0x202E),  # zero-width space and joiners, direction marks and overrides
    (0x4E00, 0x9FFF),  # CJK ideographs
    (0xE000, 0xF8FF),  # private use
    (0xFFF0, 0xFFFF),  # specials and noncharacters
    (0x1F300, 0x1FAFF),  # emoji
    (0x10FFF0, 0x10FFFF),  # the last plane
]
SEQUENCES = ["👩\u200d💻", "🇫🇷", "❤\ufe0f", "e\u0301", "\u202eevil", "\r\n", "\ufeff", "\x00", " \u3000 "]
ANY_TEXT = st.text(st.characters(codec="utf-8"))
SCRIPT_RUNS = st.lists(st.one_of([st.text(st.characters(min_codepoint=a, max_codepoint=b)) for a, b in RANGES]
                                 + [st.sampled_from(SEQUENCES)]), max_size=8).map("".join)
UNICODE = st.one_of(ANY_TEXT, SCRIPT_RUNS)


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    return BPETokenizer.train(CORPUS, vocab_size=320)


@pytest.fixture(scope="module")
def whisper() -> WhisperTokenizer:
    return WhisperTokenizer.train(CORPUS, vocab_size=256 + 64 + len(special_token_names(LANGUAGES)),
                                  languages=LANGUAGES)


@pytest.fixture(scope="module")
def char() -> CharTokenizer:
    return CharTokenizer.train("".join(CORPUS))


@pytest.fixture(scope="module")
def captions() -> CaptionTokenizer:
    return CaptionTokenizer.build()


# ----------------------------------------------------------------------------------------------------------
# tokenizers


@settings(max_examples=200, deadline=None)
@given(text=UNICODE)
def test_byte_level_tokenizers_round_trip_any_unicode(bpe, whisper, text):
    assert bpe.decode(bpe.encode(text)) == text
    ids = whisper.encode(text)
    assert all(0 <= i < whisper.eot for i in ids)  # plain text never yields a special or timestamp id
    assert whisper.decode(ids) == text and whisper.decode_with_timestamps(ids) == text


SPECIAL_TEXTS = [*special_token_names(LANGUAGES)[:12], "<|30.00|>", "<|endoftext|>", "<|", "|>", "<pad>", "<unk>"]
WITH_SPECIALS = st.lists(st.one_of(st.sampled_from(SPECIAL_TEXTS), UNICODE), min_size=1, max_size=6).map("".join)


@settings(max_examples=150, deadline=None)
@given(text=WITH_SPECIALS)
def test_special_token_text_typed_by_a_user_stays_text(bpe, whisper, captions, text):
    """As tiktoken with disallowed_special=(): a special token's spelling in user text is ordinary text; only
    code that appends the ids makes special tokens (there is no option to allow them from text)."""
    assert bpe.eot_id not in bpe.encode(text) and bpe.decode(bpe.encode(text)) == text
    assert max(whisper.encode(text), default=0) < whisper.eot
    try:
        ids = captions.encode(text)
    except InputError as error:  # more words than a caption holds
        assert f"at most {captions.max_length}" in str(error)
    else:
        assert captions.pad_id not in ids  # "<pad>" is the unknown word "pad"


@settings(max_examples=200, deadline=None)
@given(text=st.one_of(UNICODE, st.text(st.sampled_from(sorted(set("".join(CORPUS)))))))
def test_char_tokenizer_round_trips_its_alphabet_and_names_every_missing_character(char, text):
    """A char vocabulary has no unknown token: text within it round-trips, other text is an InputError that
    names the first missing character, its position, and (up to MAX_NAMED) the other missing ones."""
    missing = list(dict.fromkeys(c for c in text if c not in char.chars))
    if not missing:
        assert char.decode(char.encode(text)) == text
        return
    with pytest.raises(InputError) as raised:
        char.encode(text)
    message = str(raised.value)
    assert f"character {missing[0]!r} at position {text.index(missing[0])}" in message
    assert all(repr(c) in message for c in missing[:MAX_NAMED + 1])
    if len(missing) > MAX_NAMED + 1:
        assert f"and {len(missing) - MAX_NAMED - 1} more" in message


def test_char_tokenizer_lists_missing_characters_once_each(char):
    with pytest.raises(InputError, match=r"character 'Ω' at position 1 .*nor are '€', '☃'; a char-level"):
        char.encode("aΩ€Ω☃€")


@pytest.mark.parametrize("bad", [None, 5, b"bytes", ["a"]])
def test_tokenizers_refuse_non_text_with_a_type_error(bpe, whisper, char, captions, bad):
    for encode in (bpe.encode, whisper.encode, char.encode, captions.encode, captions.words):
        with pytest.raises(InputTypeError, match=f"got {type(bad).__name__}"):
            encode(bad)


def test_tokenizers_refuse_a_str_as_a_batch(bpe, whisper, char, captions):
    for encode_batch in (bpe.encode_batch, whisper.encode_batch, char.encode_batch, captions.encode_batch):
        with pytest.raises(InputTypeError, match="got one str"):
            encode_batch("a red ring")


@pytest.mark.parametrize("text,position", [("a\ud800b", 1), ("\udfff", 0), ("red \udc80star", 4)])
def test_lone_surrogates_are_an_input_error_naming_the_position(bpe, whisper, captions, text, position):
    for encode in (bpe.encode, whisper.encode, captions.encode, captions.unknown_words, parse_caption):
        with pytest.raises(InputError, match=f"lone surrogate .* at position {position};"):
            encode(text)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_decoding_any_ids_in_range_gives_text_and_out_of_range_is_an_input_error(bpe, whisper, char, captions,
                                                                                    data):
    for tokenizer, decodes in ((bpe, [bpe.decode]), (char, [char.decode]), (captions, [captions.decode]),
                               (whisper, [whisper.decode, whisper.decode_with_timestamps])):
        ids = data.draw(st.lists(st.integers(0, tokenizer.vocab_size - 1), max_size=40))
        outside = data.draw(st.one_of(st.integers(max_value=-1), st.integers(min_value=tokenizer.vocab_size)))
        for decode in decodes:
            assert isinstance(decode(ids), str)
            with pytest.raises(InputError, match="out of range"):
                decode([*ids, outside])


@settings(max_examples=2, deadline=None)
@given(piece=st.text(st.characters(codec="utf-8"), min_size=1, max_size=12))
def test_a_megabyte_of_text_round_trips(bpe, char, piece):
    """No timing assertion: a quadratic step over 2**20 characters (10**12 operations) would never finish."""
    text = (piece * (MEGABYTE // len(piece) + 1))[:MEGABYTE]
    assert bpe.decode(bpe.encode(text)) == text
    alphabet = "".join(c for c in text[:64] if c in char.chars) or "a"
    own = (alphabet * (MEGABYTE // len(alphabet) + 1))[:MEGABYTE]
    assert char.decode(char.encode(own)) == own


# ----------------------------------------------------------------------------------------------------------
# captions and prompts (the diffusion pipeline's text path, up to its text encoder)

CAPTION_PIECES = st.one_of(st.sampled_from(caption_words()), st.sampled_from(["Center", "GRAY", "top-left,", "RED!",
                                                                            "  ", "\t", "\u3000", "ＲＥＤ", "huge"]),
                           UNICODE)
PROMPTS = st.lists(CAPTION_PIECES, max_size=22).map(" ".join)


@pytest.fixture(scope="module")
def text_encoder():
    torch.manual_seed(0)
    return zoo.load("dit-shapes", **get_family("dit").tiny).eval()


@settings(max_examples=100, deadline=None)
@given(prompt=PROMPTS)
def test_any_prompt_encodes_word_by_word_or_is_refused_clearly(captions, text_encoder, prompt):
    """Known words -> their ids, unknown words -> <unk> (the pipeline refuses them), more than max_length words
    -> an InputError (no silent truncation); what the pipeline accepts reaches its text encoder as finite states."""
    words = captions.words(prompt)
    vocab = captions.hf.get_vocab()
    unknown = [w for w in words if w not in vocab]
    assert captions.unknown_words(prompt) == unknown
    if len(words) > captions.max_length:
        with pytest.raises(InputError, match=f"has {len(words)} words; .* at most {captions.max_length}"):
            captions.encode(prompt)
    else:
        assert captions.encode(prompt) == [vocab.get(w, captions.unk_id) for w in words]
    try:
        check_words(captions, as_prompts(prompt))
    except InputError as error:
        assert unknown or len(words) > captions.max_length
        assert (f"word(s) this model does not know: {unknown[0]}" in str(error) if unknown
                else f"at most {captions.max_length}" in str(error))
        return
    tokens, mask = captions.encode_batch(["", prompt])  # the empty prompt: unconditional, the learned null
    with torch.no_grad():
        context, context_mask, pooled = text_encoder.encode_text(tokens, mask)
    assert torch.isfinite(context).all() and torch.isfinite(pooled).all()
    assert context_mask.sum(dim=1).tolist() == [1, 1 + len(words)]


def test_a_megabyte_caption_is_refused_with_a_short_message(captions):
    text = "a red ring " * (MEGABYTE // 11)
    with pytest.raises(InputError, match=f"has {3 * (MEGABYTE // 11)} words; this tokenizer takes at most 17") as error:
        captions.encode(text)
    assert len(str(error.value)) < 400
    with pytest.raises(InputError, match="not a caption of the form") as error:
        parse_caption(text)
    assert len(str(error.value)) < 400


ATTRIBUTES = st.builds(
    lambda shape, colour, size, position, background, colours: Attributes(
        shape, colour, size, position, background, colours if background == "gradient" else colours[:1]),
    st.sampled_from(SHAPES), st.sampled_from(COLOUR_NAMES), st.sampled_from(SIZE_WORDS), st.sampled_from(POSITIONS),
    st.sampled_from(BACKGROUNDS), st.tuples(st.sampled_from(BACKGROUND_COLOURS), st.sampled_from(BACKGROUND_COLOURS)),
)


@settings(max_examples=150, deadline=None)
@given(attributes=ATTRIBUTES, noise=UNICODE, upper=st.booleans())
def test_parse_caption_reads_every_caption_back_and_refuses_anything_else(captions, attributes, noise, upper):
    caption = attributes.caption()
    spaced = "  " + caption.replace(" ", " \t ") + "\n"
    assert parse_caption(spaced.upper() if upper else spaced) == attributes
    assert captions.decode(captions.encode(caption)) == caption
    assert not captions.unknown_words(caption)
    try:
        parsed = parse_caption(caption + noise)
    except InputError as error:
        assert "not a caption" in str(error) or "wrong article" in str(error)
    else:
        assert parsed == attributes and not noise.strip()  # only trailing whitespace keeps it a caption


# ----------------------------------------------------------------------------------------------------------
# audio

AUDIO_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".mp3": "MP3", ".ogg": "OGG"}


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def real_audio() -> dict[str, bytes]:
    """The bytes of a short real file per format, whose headers the fuzzers cut and append noise to."""
    tone = (0.3 * np.sin(np.arange(4000) * 0.1)).astype(np.float32)
    files = {}
    for ext, fmt in AUDIO_FORMATS.items():
        buffer = io.BytesIO()
        soundfile.write(buffer, tone, 16000, format=fmt)
        files[ext] = buffer.getvalue()
    return files


def assert_waveform(audio: torch.Tensor, length: int | None = None):
    assert audio.dtype == torch.float32 and audio.ndim == 1 and audio.shape[0] >= 1
    assert torch.isfinite(audio).all() and float(audio.abs().max()) <= 2 * A.MAX_LEVEL
    if length is not None:
        assert audio.shape[0] == length


@FILE_FUZZ
@given(ext=st.sampled_from([*AUDIO_FORMATS, ""]), keep=st.integers(0, 4000), noise=st.binary(max_size=1500),
       header=st.booleans())
def test_random_bytes_as_audio_files_decode_or_raise_naming_the_file(real_audio, fuzz_dir, ext, keep, noise,
                                                                     header):
    real = real_audio[ext or ".wav"]
    path = fuzz_dir / f"clip{ext}"
    path.write_bytes((real[:keep] if header else b"") + noise)
    try:
        audio = load_audio(path)
    except InputError as error:  # anything else (a libsndfile or numpy exception) fails the test
        assert str(path) in str(error)
    else:
        assert_waveform(audio)


@st.composite
def recordings(draw):
    rate = draw(st.one_of(st.sampled_from([1, 8000, 16000, 44100, 192000, 384000]), st.integers(1, 400_000)))
    frames = draw(st.integers(0, min(2000, 20 * rate)))  # at most 20 s of audio
    channels = draw(st.sampled_from([1, 2, 8]))
    samples = np.random.default_rng(frames).uniform(-1, 1, (frames, channels)).astype(np.float32)
    return rate, samples


@settings(max_examples=50, deadline=None)
@given(recording=recordings())
def test_any_rate_and_channel_count_is_resampled_to_16k_mono_of_the_right_length(fuzz_dir, recording):
    rate, samples = recording  # WAV holds any rate up to 2**32 - 1 Hz
    path = fuzz_dir / "rec.wav"
    soundfile.write(path, samples, rate, subtype="FLOAT")
    if len(samples) == 0:
        with pytest.raises(InputError, match="holds no audio samples"):
            load_audio(path)
        return
    audio = load_audio(path)
    assert_waveform(audio, length=math.ceil(len(samples) * 16000 / rate))
    if rate == 16000:  # no resampling: the exact channel mean
        np.testing.assert_allclose(audio.numpy(), samples.mean(axis=1), atol=1e-7)


@pytest.mark.parametrize("rate", [8000, 44100, 192000, 384000])
@pytest.mark.parametrize("channels", [1, 2, 8])
def test_compressed_files_at_extreme_rates_and_channel_counts(fuzz_dir, rate, channels):
    samples = np.random.default_rng(rate + channels).uniform(-0.5, 0.5, (rate // 10, channels))
    path = fuzz_dir / f"rec{rate}x{channels}.flac"
    soundfile.write(path, samples, rate)
    assert_waveform(load_audio(path), length=1600)


@pytest.mark.parametrize("rate", [44101, 22051, 7919, 191999, 2**31 - 1])
def test_odd_rates_resample_without_torchaudios_huge_kernel(monkeypatch, rate):
    """At 44101 Hz torchaudio's kernel is 16000 x 44135 floats (2.8 GB); resample must not ask for it."""
    resample = A.AF.resample

    def bounded(waveform, orig_freq, new_freq, **kwargs):
        g = math.gcd(orig_freq, new_freq)
        assert new_freq // g * (orig_freq // g) <= A.RESAMPLE_KERNEL_LIMIT, f"a kernel for {orig_freq} Hz"
        return resample(waveform, orig_freq, new_freq, **kwargs)

    monkeypatch.setattr(A.AF, "resample", bounded)
    seconds = 0.25 if rate < 10**6 else 1e-3
    n = round(seconds * rate)
    tone = np.sin(2 * np.pi * 1000 * np.arange(n) / rate).astype(np.float32) * 0.5
    audio = load_audio(tone, sample_rate=rate)
    assert_waveform(audio, length=math.ceil(n * 16000 / rate))
    if rate < 10**6:  # the tone is still 1 kHz
        spectrum = np.abs(np.fft.rfft(audio.numpy()))
        assert np.argmax(spectrum) * 16000 / len(audio) == pytest.approx(1000, abs=16000 / len(audio))


@pytest.mark.parametrize("rate", [1, 1000, 8000, 11025, 22050, 44100, 48000, 96000, 384000])
def test_tap_by_tap_resampling_is_torchaudios_filter(monkeypatch, rate):
    x = torch.from_numpy(np.random.default_rng(rate).uniform(-1, 1, max(3, rate // 20)).astype(np.float32))
    expected = A.AF.resample(x, rate, 16000)
    monkeypatch.setattr(A, "RESAMPLE_KERNEL_LIMIT", 0)  # every rate goes tap by tap
    torch.testing.assert_close(load_audio(x, sample_rate=rate), expected, atol=1e-4, rtol=0)


def test_declared_frame_counts_are_not_trusted(fuzz_dir, real_audio):
    """A FLAC header may declare 2**36 frames; soundfile would allocate them all (256 GiB) before reading."""
    flac = bytearray(real_audio[".flac"])
    info = int.from_bytes(flac[18:26], "big")  # STREAMINFO: 20 bits rate, 3 channels, 5 bits depth, 36 frames
    flac[18:26] = (info | (1 << 36) - 1).to_bytes(8, "big")
    (fuzz_dir / "bomb.flac").write_bytes(flac)
    assert soundfile.info(fuzz_dir / "bomb.flac").frames == (1 << 36) - 1
    try:
        audio = load_audio(fuzz_dir / "bomb.flac")
    except InputError as error:
        assert "bomb.flac" in str(error)
    else:
        assert_waveform(audio, length=4000)


def test_audio_longer_than_max_seconds_is_refused(fuzz_dir, monkeypatch):
    monkeypatch.setattr(A, "MAX_SECONDS", 2)
    soundfile.write(fuzz_dir / "long.flac", np.zeros(3 * 8000, np.int16), 8000)
    with pytest.raises(InputError, match=r"long\.flac is longer than 2 s"):
        load_audio(fuzz_dir / "long.flac")
    with pytest.raises(InputError, match="array is longer than 2 s"):
        load_audio(np.zeros(3), sample_rate=1)  # 3 s at 1 Hz would be 48000 samples at 16 kHz
    assert_waveform(load_audio(np.zeros(2), sample_rate=1), length=32000)


def test_minutes_of_silence_are_windowed_not_padded(fuzz_dir):
    """3 minutes at 8 kHz: 16 kHz samples of the right count, 30 s windows, and mel frames of the clip's own
    length (whisper's 30 s padding is per window, never the whole clip held in a padded buffer)."""
    soundfile.write(fuzz_dir / "silence.flac", np.zeros(180 * 8000, np.int16), 8000)
    audio = load_audio(fuzz_dir / "silence.flac")
    assert_waveform(audio, length=180 * 16000)
    assert [(start, len(chunk)) for start, chunk in split_windows(audio)] == [(30.0 * i, 480000) for i in range(6)]
    mel = log_mel_spectrogram(audio)
    assert mel.shape == (80, 18000) and torch.isfinite(mel).all()


def test_zero_and_one_sample():
    with pytest.raises(InputError, match="no audio samples"):
        load_audio(np.zeros(0, np.float32), sample_rate=16000)
    one = load_audio(np.full(1, 0.5, np.float32), sample_rate=16000)
    assert one.tolist() == [0.5]
    with pytest.raises(InputError, match="too short for a log-mel spectrogram"):
        log_mel_spectrogram(one)
    assert_waveform(load_audio(np.full(1, 0.5, np.float32), sample_rate=8000), length=2)


ODD_ARRAYS = [
    (np.array([0, 16384, -32768], np.int16), [0, 0.5, -1]),
    (np.array([0, 16384, -32768], ">i2"), [0, 0.5, -1]),  # big-endian PCM
    (np.array([0, 2**30, -(2**31)], np.int32), [0, 0.5, -1]),
    (np.array([0, 0.25, -1], np.float64), [0, 0.25, -1]),
    (np.array([0, 0.25, -1], np.float16), [0, 0.25, -1]),
    (torch.tensor([0, 0.25, -1], dtype=torch.bfloat16), [0, 0.25, -1]),  # numpy has no bfloat16
    (torch.tensor([0, 0.25, -1], requires_grad=True), [0, 0.25, -1]),
    (torch.tensor([0, 0.25, -1]).to_sparse(), [0, 0.25, -1]),
    (torch.tensor([[0, 0.5, -1], [0, 0, 0]]).T, [0, 0.25, -0.5]),  # (samples, channels), not contiguous
    (np.array([[0.5, 0.5]] * 3 + [[0.0, 1.0]]), [0.5, 0.5, 0.5, 0.5]),  # 4 samples of 2 channels
    (np.tile(np.array([[1.0], [0.0]]), (4, 9)), [0.5] * 9),  # 8 channels
]


@pytest.mark.parametrize("array,expected", ODD_ARRAYS, ids=[
    "int16", "int16-big-endian", "int32", "float64", "float16", "bfloat16-tensor", "grad-tensor", "sparse-tensor",
    "samples-by-channels", "2-channels", "8-channels"])
def test_odd_arrays_and_tensors_load_as_their_channel_mean(array, expected):
    np.testing.assert_allclose(load_audio(array, sample_rate=16000).numpy(), expected, atol=1e-3)


@pytest.mark.parametrize("array,message", [
    (np.zeros(8, np.uint8), "dtype uint8 is not supported"),
    (np.zeros(8, np.int64), "dtype int64 is not supported"),
    (np.zeros(8, np.complex64), "dtype complex64 is not supported"),
    (np.zeros(8, bool), "dtype bool is not supported"),
    (np.array(["a"] * 8), "dtype <U1 is not supported"),
    (np.zeros((2, 2), np.float32), "square"),
    (np.zeros((1, 1), np.float32), "square"),
    (np.zeros((2, 3, 4), np.float32), r"1-D .* or 2-D"),
    (np.zeros((), np.float32), r"1-D .* or 2-D"),
    (np.array([0.0, np.nan, np.inf]), "2 NaN or infinite samples, the first at sample 1"),
    (np.array([0.0, 1e20], np.float32), "samples as large as 1e\\+20"),
    (np.array([0.0, 40000.0]), "samples as large as 4e\\+04"),  # int16 values passed as floats beyond full scale
    (torch.zeros(8, device="meta"), "meta device"),
])
def test_unusable_arrays_are_an_input_error_saying_why(array, message):
    with pytest.raises(InputError, match=message):
        load_audio(array, sample_rate=16000)


@settings(max_examples=200, deadline=None)
@given(array=arrays(st.sampled_from(["float32", "float64", "float16", "int16", "int32", ">i2", "uint8", "bool"]),
                    array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=40)),
       rate=st.sampled_from([8000, 16000, 44100]))
def test_any_array_loads_or_is_an_input_error(array, rate):
    try:
        audio = load_audio(array, sample_rate=rate)
    except InputError:
        return
    samples = max(array.shape) if array.ndim == 2 else array.shape[0]
    assert_waveform(audio, length=math.ceil(samples * 16000 / rate))


# ----------------------------------------------------------------------------------------------------------
# images


def png_header(width: int, height: int) -> bytes:
    """A PNG declaring width x height RGB pixels and holding none: what a decompression bomb starts like."""
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def real_images() -> dict[str, bytes]:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 20, 3), dtype=np.uint8))
    files = {}
    for ext, fmt in ((".png", "PNG"), (".jpg", "JPEG"), (".gif", "GIF"), (".webp", "WEBP")):
        buffer = io.BytesIO()
        image.save(buffer, fmt)
        files[ext] = buffer.getvalue()
    return files


@FILE_FUZZ
@given(ext=st.sampled_from([".png", ".jpg", ".gif", ".webp", ""]), keep=st.integers(0, 1200),
       noise=st.binary(max_size=600), header=st.booleans())
def test_random_bytes_as_images_decode_to_rgb_or_raise_naming_the_file(real_images, fuzz_dir, ext, keep, noise,
                                                                       header):
    path = fuzz_dir / f"picture{ext}"
    path.write_bytes((real_images[ext or ".png"][:keep] if header else b"") + noise)
    try:
        image = load_image(path)
    except InputError as error:
        assert str(path) in str(error)
    else:
        assert image.mode == "RGB" and image_to_tensor(image, 16).shape == (3, 16, 16)


@pytest.mark.parametrize("size", [(100_000, 100_000), (2**31 - 1, 1), (10_000, 10_000)])
def test_decompression_bombs_are_refused_with_zoos_error(fuzz_dir, size):
    """Above 2x MAX_IMAGE_PIXELS PIL raises DecompressionBombError, between 1x and 2x it only warns (and would
    decode 10000 x 10000 pixels); both are zoo's InputError naming the file and the limit."""
    path = fuzz_dir / "bomb.png"
    path.write_bytes(png_header(*size))
    with pytest.raises(InputError, match=rf"bomb\.png.*{size[0] * size[1]} pixels.*MAX_IMAGE_PIXELS"):
        load_image(path)


@pytest.mark.parametrize("size", [(0, 0), (1, 0), (0, 7)])
def test_empty_declared_images_are_refused(fuzz_dir, size):
    path = fuzz_dir / "empty.png"
    path.write_bytes(png_header(*size))
    with pytest.raises(InputError, match=r"cannot read image .*empty\.png"):
        load_image(path)


def save(image: Image.Image, path) -> str:
    image.save(path)
    return str(path)


@pytest.mark.parametrize("mode,fmt,pixel,rgb", [
    ("1", "png", 1, (255, 255, 255)),
    ("L", "jpg", 128, (128, 128, 128)),
    ("LA", "png", (0, 0), (255, 255, 255)),  # transparent -> white
    ("RGBA", "webp", (10, 20, 30, 0), (255, 255, 255)),
    ("PA", "tif", (0, 0), (255, 255, 255)),
    ("CMYK", "jpg", (0, 255, 255, 0), (254, 0, 0)),
    ("CMYK", "tif", (0, 0, 0, 255), (0, 0, 0)),
    ("I;16", "png", 65535, (255, 255, 255)),  # 16-bit grey: rescaled, not clipped
    ("I;16", "png", 257 * 100, (100, 100, 100)),
    ("I", "tif", 257 * 200, (200, 200, 200)),
    ("F", "tif", 0.5, (128, 128, 128)),  # float grey in [0, 1]
    ("F", "tif", float("nan"), (0, 0, 0)),
    ("YCbCr", "tif", (255, 128, 128), (255, 255, 255)),
])
def test_image_modes_are_converted_to_rgb(fuzz_dir, mode, fmt, pixel, rgb):
    path = save(Image.new(mode, (5, 3), pixel), fuzz_dir / f"mode.{fmt}")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # numpy's "invalid value encountered in cast" for NaN
        image = load_image(path)
    assert image.mode == "RGB" and image.size == (5, 3)
    assert image.getpixel((2, 1)) == pytest.approx(rgb, abs=2)


def test_palette_with_transparency_composites_on_white(fuzz_dir):
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.putpixel((0, 0), 0)
    image.save(fuzz_dir / "palette.png", transparency=0)
    rgb = load_image(fuzz_dir / "palette.png")
    assert rgb.getpixel((0, 0)) == (255, 255, 255) and rgb.getpixel((1, 1)) == (255, 0, 0)


@settings(max_examples=100, deadline=None)
@given(width=st.integers(1, 200), height=st.integers(1, 200), size=st.sampled_from([16, 17, 32, 64]))
def test_resizing_matches_torchvisions_resize_then_centre_crop(width, height, size):
    """image_to_tensor resizes only the region the crop keeps; the pixels are torchvision's within one level
    (PIL rounds between its two passes), and exactly them for square images."""
    image = Image.fromarray(np.random.default_rng(width * 1000 + height).integers(0, 256, (height, width, 3),
                                                                                  dtype=np.uint8))
    expected = v2.functional.pil_to_tensor(v2.functional.center_crop(v2.functional.resize(image, size), size))
    got = image_to_tensor(image, size)
    assert got.shape == expected.shape == (3, size, size)
    assert (got.int() - expected.int()).abs().max() <= (0 if width == height else 1)


@pytest.mark.parametrize("width,height", [(1, 2_000_000), (2_000_000, 1), (1, 1)])
def test_extreme_aspect_ratios_never_build_the_whole_resized_image(monkeypatch, width, height):
    """A 1 x 2,000,000 strip (under the bomb limit) resized on its short side first would be 32 x 64,000,000
    pixels (6 GB); only the 32 x 32 the crop keeps may be built."""
    resize = Image.Image.resize

    def bounded(self, size, *args, **kwargs):
        assert size[0] * size[1] <= 32 * 32, f"resize to {size}"
        return resize(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", bounded)
    strip = Image.new("RGB", (width, height), (200, 10, 10))
    assert image_to_tensor(strip, 32)[:, 16, 16].tolist() == [200, 10, 10]
