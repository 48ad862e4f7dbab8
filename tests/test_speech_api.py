"""The Whisper model's openai-whisper API (model.transcribe, model.detect_language) and bad input at the API and
`zoo transcribe` layers.

The model is a tiny random Whisper with a real WhisperTokenizer, saved as a model directory and loaded back, as
a user's trained model would be. Its transcripts are noise, so the tests compare paths that must agree (the
method and the function, a stereo 44.1 kHz file and the mono 16 kHz signal) rather than the words. The
loader's own errors (tests/test_speech_audio.py) and DecodingOptions' (tests/test_speech_decoding.py) are
tested there; here each bad input goes through the layers a user calls.
"""

import json
import math
import re

import numpy as np
import pytest
import soundfile
import torch

import zoo
from zoo.cli import main
from zoo.speech import transcribe as transcribe_module
from zoo.speech.audio import N_FRAMES, SAMPLE_RATE, load_audio, log_mel_spectrogram
from zoo.speech.decoding import DecodingOptions, decode
from zoo.speech.decoding import detect_language as detect_language_of_mel
from zoo.speech.tokenizer import WhisperTokenizer
from zoo.speech.transcribe import transcribe
from zoo.speech.whisper import Whisper, WhisperConfig, decoder_backbone, encoder_backbone

LANGUAGES = ("en", "es", "fr", "de")
FAST = dict(temperature=0.0, beam_size=None, sample_len=8)  # greedy and short: a random model rarely ends


def signal(seconds: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Two tones under a fade in and out (so resampling has no edges to ring at), float32 at `rate`."""
    t = np.arange(round(seconds * rate)) / rate
    fade = np.sin(np.pi * t / seconds) ** 2
    return (fade * (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1250 * t))).astype(np.float32)


def tiny_whisper(tokenizer: WhisperTokenizer | None) -> Whisper:
    torch.manual_seed(0)
    small = dict(dim=32, n_layers=1, n_heads=2)
    model = Whisper(WhisperConfig(vocab_size=1789, encoder=encoder_backbone(**small),
                                  decoder=decoder_backbone(**small)))
    model.tokenizer = tokenizer
    return model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    tokenizer = WhisperTokenizer.train(["the cat sat", "el gato", "le chat", "die katze"], 1900, LANGUAGES)
    assert tokenizer.vocab_size == 1789
    return tiny_whisper(tokenizer).save_pretrained(tmp_path_factory.mktemp("whisper") / "tiny")


@pytest.fixture(scope="module")
def model(model_dir) -> Whisper:
    return zoo.load(str(model_dir)).eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One good file and the bad ones; missing.wav is never written."""
    root = tmp_path_factory.mktemp("audio")
    soundfile.write(root / "speech.wav", signal(2.0), SAMPLE_RATE, subtype="FLOAT")
    (root / "notes.wav").write_text("this is not audio\n" * 50)
    soundfile.write(root / "empty.wav", np.zeros(0, np.float32), SAMPLE_RATE)
    soundfile.write(root / "click.wav", signal(0.005), SAMPLE_RATE, subtype="FLOAT")  # 80 samples
    tiny_whisper(None).save_pretrained(root / "bare")  # an architecture without a tokenizer
    return root


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """`zoo transcribe ARGS` in-process: (exit status, stdout, stderr); argparse errors exit via SystemExit."""
    try:
        status = main(["transcribe", *args])
    except SystemExit as exit:
        status = exit.code
    out, err = capsys.readouterr()
    return status, out, err


# ----------------------------------------------------------------------------------------------------------
# model.transcribe and model.detect_language


def test_model_transcribe_is_transcribe_with_the_documented_result(model):
    wave = torch.from_numpy(signal(3.0))
    for options in (FAST, dict(FAST, language="fr", task="translate", without_timestamps=True)):
        result = model.transcribe(wave, **options)
        assert result == transcribe(model, wave, **options)
    result = model.transcribe(wave, **FAST)
    assert set(result) == {"text", "segments", "language", "no_speech_prob"}
    assert result["language"] in LANGUAGES and isinstance(result["text"], str) and result["segments"]
    for segment in result["segments"]:
        assert {"start", "end", "text", "tokens", "avg_logprob", "no_speech_prob"} <= set(segment)
        assert 0 <= segment["start"] < segment["end"]
    # the file's no_speech_prob is its first window's: P(<|nospeech|>) after <|startoftranscript|>
    first = decode(model, log_mel_spectrogram(wave), DecodingOptions(language=result["language"], sample_len=1))
    assert 0 < result["no_speech_prob"] < 1
    assert result["no_speech_prob"] == pytest.approx(first.no_speech_prob, abs=1e-6)
    assert result["segments"][0]["no_speech_prob"] == pytest.approx(result["no_speech_prob"], abs=1e-6)
    # several files: a list, each as alone
    both = model.transcribe([wave, wave[:SAMPLE_RATE]], **FAST)
    assert both == transcribe(model, [wave, wave[:SAMPLE_RATE]], **FAST)
    assert [s["tokens"] for s in both[0]["segments"]] == [s["tokens"] for s in result["segments"]]


def test_the_encoder_runs_on_packed_weights_unless_prepack_is_off(model, monkeypatch):
    """prepack (the default): each window's encoding runs with the encoder's linears on oneDNN-packed weights
    (zoo.nn.packed: an instance-level forward), restored after; prepack=False encodes on the plain weights. Both
    give the same transcript (the features agree to fp32 rounding)."""
    wave = torch.from_numpy(signal(3.0))
    linears = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Linear)]
    packed_at_call, encode = [], model.embed_audio
    monkeypatch.setattr(model, "embed_audio", lambda mel, mel_mask=None: packed_at_call.append(
        all("forward" in m.__dict__ for m in linears)) or encode(mel, mel_mask))
    packed = model.transcribe(wave, language="en", **FAST)
    assert packed_at_call == [True] and not any("forward" in m.__dict__ for m in linears)
    plain = model.transcribe(wave, language="en", prepack=False, **FAST)
    assert packed_at_call == [True, False] and plain["text"] == packed["text"]
    mel = log_mel_spectrogram(wave)
    with torch.inference_mode():
        torch.testing.assert_close(encode(mel[None])[0], transcribe_module.encode_audio(model, mel[None], None)[0],
                                   atol=1e-5, rtol=1e-5)


def test_transcribe_decodes_timestamps_only_for_a_model_that_learnt_them(model):
    """zoo's recipe trains <|notimestamps|> targets (config.timestamps False): timestamps are off by default."""
    import dataclasses

    wave = torch.from_numpy(signal(3.0))
    assert not model.config.timestamps
    assert transcribe(model, wave, **FAST) == transcribe(model, wave, without_timestamps=True, **FAST)
    trained_with = dataclasses.replace(model.config, timestamps=True)
    original, model.config = model.config, trained_with
    try:
        assert transcribe(model, wave, **FAST) == transcribe(model, wave, without_timestamps=False, **FAST)
        assert transcribe(model, wave, **FAST) != transcribe(model, wave, without_timestamps=True, **FAST)
    finally:
        model.config = original


def test_model_detect_language_is_the_first_windows_distribution(model, files):
    wave = torch.from_numpy(signal(3.0))
    mel = log_mel_spectrogram(wave)
    code, probs = model.detect_language(wave)
    assert code in model.tokenizer.languages and list(probs) == list(model.tokenizer.languages)
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-6) and code == max(probs, key=probs.get)
    expected_code, expected_probs = detect_language_of_mel(model, mel)
    assert code == expected_code and probs == pytest.approx(expected_probs, abs=1e-6)
    assert model.detect_language(mel) == (code, probs)  # a log-mel is taken as it is
    assert model.detect_language(wave.numpy())[0] == code
    assert model.transcribe(wave, **FAST)["language"] == code  # transcribe() detects the same way

    on_file = model.detect_language(files / "speech.wav")  # a path: loaded as transcribe() loads it
    assert on_file[1] == pytest.approx(detect_language_of_mel(model, log_mel_spectrogram(
        load_audio(files / "speech.wav")))[1], abs=1e-6)

    long = torch.from_numpy(signal(45.0))  # more than the encoder's 30 s: the first window decides
    long_mel = log_mel_spectrogram(long)
    code, probs = model.detect_language(long)
    expected_code, expected_probs = detect_language_of_mel(model, long_mel[:, :N_FRAMES])
    assert code == expected_code and probs == pytest.approx(expected_probs, abs=1e-6)
    assert model.detect_language(long_mel)[1] == pytest.approx(probs, abs=1e-6)
    with pytest.raises(ValueError, match=r"detect_language\(\) takes .* a log-mel of shape \(80, T\); got a "
                                         r"tensor of shape \(40, 300\)"):
        model.detect_language(torch.zeros(40, 300))


# ----------------------------------------------------------------------------------------------------------
# bad input, through `zoo transcribe` and model.transcribe

BAD_INPUT = [
    # id, file, CLI flags, model.transcribe options, exception, message (API; and CLI unless a second is given)
    ("missing file", "missing.wav", [], {}, FileNotFoundError, r"audio file \S*missing\.wav does not exist", None),
    ("text named .wav", "notes.wav", [], {}, ValueError,
     r"notes\.wav is not a readable audio file \(.*\); formats libsndfile reads: .*WAV", None),
    ("empty audio", "empty.wav", [], {}, ValueError, r"empty\.wav holds no audio samples \(0 frames\)", None),
    ("too short for a mel", "click.wav", [], {}, ValueError,
     r"audio of 80 samples is too short for a log-mel spectrogram; it needs more than 200 samples", None),
    ("unknown language", "speech.wav", ["--language", "xx"], dict(language="xx"), ValueError,
     r"language='xx' is not one of this model's languages; allowed: en, es, fr, de, or None to detect it", None),
    ("language the model lacks", "speech.wav", ["--language", "ja"], dict(language="ja"), ValueError,
     r"language='ja' is not one of this model's languages; allowed: en, es, fr, de", None),
    ("beam_size with best_of", "speech.wav", ["--temperature", "0", "--beam-size", "5", "--best-of", "5"],
     dict(temperature=0.0, beam_size=5, best_of=5), ValueError,
     r"got beam_size=5 and best_of=5, but at temperature=0\.0 only beam_size would be used: beam_size applies at "
     r"temperature 0, best_of above 0; give one of them, or a schedule with 0 and temperatures above 0", None),
    ("best_of at temperature 0", "speech.wav", ["--temperature", "0", "--best-of", "3"],
     dict(temperature=0.0, best_of=3), ValueError,
     r"best_of=3 needs a temperature above 0, got temperature=0\.0: .* use beam_size, or a temperature above 0",
     None),
    ("beam_size when sampling", "speech.wav", ["--temperature", "0.5", "--beam-size", "3"],
     dict(temperature=0.5, beam_size=3), ValueError,
     r"beam_size=3 needs temperature 0 in the schedule, got temperature=0\.5: .* use best_of", None),
    ("unknown task", "speech.wav", ["--task", "summarize"], dict(task="summarize"), ValueError,
     r"task='summarize' is not allowed; task must be 'transcribe' or 'translate'",
     r"argument --task: invalid choice: 'summarize' \(choose from 'transcribe', 'translate'\)"),
]


@pytest.mark.parametrize("file, flags, options, error, message, cli_message",
                         [case[1:] for case in BAD_INPUT], ids=[case[0] for case in BAD_INPUT])
def test_bad_input_is_refused_with_what_is_allowed(model, model_dir, files, capsys, file, flags, options, error,
                                                   message, cli_message):
    with pytest.raises(error, match=message):
        model.transcribe(files / file, **options)
    status, out, err = run_cli([str(model_dir), str(files / file), *flags], capsys)
    assert status == 2 and out == ""
    assert re.search(cli_message or message, err), err
    assert err.startswith("zoo transcribe: error: ") or "usage: zoo transcribe" in err


def test_a_model_without_a_tokenizer_is_refused(files, capsys):
    bare = zoo.load(str(files / "bare"))
    assert bare.tokenizer is None
    for method in (bare.transcribe, bare.detect_language):
        with pytest.raises(ValueError, match=r"\(\) needs a tokenizer, and this model has none \(model.tokenizer is "
                                             r"None: a bare architecture\); train it .* or load a trained model"):
            method(files / "speech.wav")
    status, out, err = run_cli([str(files / "bare"), str(files / "speech.wav")], capsys)
    assert status == 2 and "this model has no tokenizer (model.tokenizer is None): load a trained model" in err


def test_beam_size_and_best_of_together_are_whispers_defaults_over_the_fallback_schedule(model, model_dir, files,
                                                                                         capsys, monkeypatch):
    """Not an error where both apply: beams at temperature 0, best_of samples on the fallback temperatures."""
    result = model.transcribe(files / "speech.wav", beam_size=2, best_of=2, sample_len=4, seed=0)
    assert result["language"] in LANGUAGES
    calls = []  # the CLI's options, reaching transcribe() (capped at 4 tokens a try: a random model never ends)
    monkeypatch.setattr(transcribe_module, "transcribe", lambda *args, **options: calls.append(options) or
                        transcribe(*args, **options, sample_len=4))
    status, out, err = run_cli([str(model_dir), str(files / "speech.wav"), "--beam-size", "2", "--best-of", "2"],
                               capsys)
    assert status == 0 and err == "" and out.startswith(f"{files / 'speech.wav'} [")
    assert calls[0]["beam_size"] == 2 and calls[0]["best_of"] == 2 and "temperature" not in calls[0]


# ----------------------------------------------------------------------------------------------------------
# what a user's files look like: stereo at 44.1 kHz, more than 30 s


def test_stereo_44k_is_downmixed_and_resampled_to_the_mono_16k_result(model, model_dir, tmp_path, capsys):
    mono, high = signal(3.0), signal(3.0, 44100)
    other = 0.1 * np.sin(2 * np.pi * 700 * np.arange(len(high)) / 44100).astype(np.float32)
    soundfile.write(tmp_path / "stereo.wav", np.stack([high + other, high - other], 1), 44100, subtype="FLOAT")
    soundfile.write(tmp_path / "mono.wav", mono, SAMPLE_RATE, subtype="FLOAT")
    assert soundfile.info(tmp_path / "stereo.wav").channels == 2

    stereo_mel = log_mel_spectrogram(load_audio(tmp_path / "stereo.wav"))  # the channels' mean is the signal
    torch.testing.assert_close(stereo_mel, log_mel_spectrogram(torch.from_numpy(mono)), atol=2e-3, rtol=0)
    options = dict(FAST, language="en", without_timestamps=True)
    from_stereo = model.transcribe(tmp_path / "stereo.wav", **options)
    from_mono = model.transcribe(torch.from_numpy(mono), **options)
    assert [s["tokens"] for s in from_stereo["segments"]] == [s["tokens"] for s in from_mono["segments"]]
    assert from_stereo["text"] == from_mono["text"] != ""
    assert model.detect_language(tmp_path / "stereo.wav")[1] == pytest.approx(
        model.detect_language(torch.from_numpy(mono))[1], abs=1e-4)

    status, out, err = run_cli([str(model_dir), str(tmp_path / "stereo.wav"), str(tmp_path / "mono.wav"),
                                "--temperature", "0", "--language", "en", "--json"], capsys)
    assert status == 0 and err == ""
    stereo_line, mono_line = (json.loads(line) for line in out.splitlines())
    assert stereo_line["file"] == str(tmp_path / "stereo.wav") and stereo_line["text"] == mono_line["text"]


def test_audio_longer_than_30_s_is_decoded_in_windows(model, model_dir, tmp_path, capsys, monkeypatch):
    wave = torch.from_numpy(signal(45.0))
    windows = []  # the mel frames of every batch the encoder saw
    encode = model.embed_audio
    monkeypatch.setattr(model, "embed_audio", lambda mel, mel_mask=None: windows.append(mel.shape[-1]) or
                        encode(mel, mel_mask))
    result = model.transcribe(wave, language="en", without_timestamps=True, **FAST)
    assert windows == [N_FRAMES, N_FRAMES // 2]  # 30 s then 15 s; the language was given, so no detection pass
    # without timestamps each window is one segment, placed at its window
    assert [(s["seek"], s["start"], s["end"]) for s in result["segments"]] == [(0, 0.0, 30.0), (3000, 30.0, 45.0)]
    assert not math.isnan(result["no_speech_prob"])

    windows.clear()
    result = model.transcribe(wave, **FAST)  # language detection reads the first 30 s only, once
    assert windows[0] == N_FRAMES and result["segments"][-1]["end"] > 30.0
    # and the first window's decoding reuses that encoding: no window is encoded twice
    assert windows == [N_FRAMES, N_FRAMES // 2]
    assert result == model.transcribe(wave, language=result["language"], **FAST)

    soundfile.write(tmp_path / "long.flac", signal(45.0), SAMPLE_RATE)
    status, out, err = run_cli([str(model_dir), str(tmp_path / "long.flac"), "--temperature", "0", "--json"], capsys)
    assert status == 0 and err == ""
    segments = json.loads(out)["segments"]
    assert [(s["seek"], s["start"], s["end"]) for s in segments] == [(0, 0.0, 30.0), (3000, 30.0, 45.0)]
