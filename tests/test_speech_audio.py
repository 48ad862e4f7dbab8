"""The Whisper front end: log-mel features against a written-out reference, loading, resampling, errors."""

import math

import numpy as np
import pytest
import soundfile
import torch
import torchaudio.functional as AF

from zoo.speech import audio as A
from zoo.speech.audio import load_audio, log_mel_spectrogram, pad_or_trim, split_windows


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_frequency(signal: torch.Tensor, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal.numpy().astype(np.float64)))
    return float(np.argmax(spectrum) * rate / len(signal))


# ----------------------------------------------------------------------------------------------------------
# constants


def test_constants_derive_from_the_paper():
    assert (A.SAMPLE_RATE, A.N_FFT, A.HOP_LENGTH, A.N_MELS, A.CHUNK_LENGTH) == (16000, 400, 160, 80, 30)
    assert A.N_FFT / A.SAMPLE_RATE == 0.025 and A.HOP_LENGTH / A.SAMPLE_RATE == 0.010  # 25 ms windows, 10 ms hop
    assert (A.N_SAMPLES, A.N_FRAMES, A.FRAMES_PER_SECOND) == (480000, 3000, 100)
    assert (A.N_SAMPLES_PER_TOKEN, A.TOKENS_PER_SECOND, A.N_AUDIO_CTX) == (320, 50, 1500)
    assert A.SECONDS_PER_TOKEN == 0.02


# ----------------------------------------------------------------------------------------------------------
# log-mel against a reference written out in numpy


def slaney_mel_filterbank(n_mels: int) -> np.ndarray:
    """librosa.filters.mel(sr=16000, n_fft=400, n_mels) (Slaney scale, area norm) written out in float64."""
    def hz_to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        return np.where(f < 1000, f / (200 / 3), 15 + np.log(np.maximum(f, 1e-12) / 1000) / (np.log(6.4) / 27))

    def mel_to_hz(m):
        return np.where(m < 15, m * (200 / 3), 1000 * np.exp((np.log(6.4) / 27) * (m - 15)))

    fft_freqs = np.linspace(0, 8000, 201)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(8000.0), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    weights = np.zeros((n_mels, 201))
    for i in range(n_mels):
        weights[i] = np.maximum(0, np.minimum(-ramps[i] / fdiff[i], ramps[i + 2] / fdiff[i + 1]))
    return weights * (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]


def reference_log_mel(audio: np.ndarray, n_mels: int = 80) -> np.ndarray:
    """Whisper's log_mel_spectrogram in float64 numpy: centered reflect-padded frames, periodic Hann window,
    rfft power, mel, drop the last frame, log10 with clamp, 8-unit floor below the peak, (x + 4) / 4."""
    audio = audio.astype(np.float64)
    padded = np.pad(audio, (200, 200), mode="reflect")
    n_frames = 1 + len(audio) // 160
    frames = np.stack([padded[i * 160:i * 160 + 400] for i in range(n_frames)])
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)  # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2  # (frames, 201)
    mel = slaney_mel_filterbank(n_mels) @ power[:-1].T
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


@pytest.mark.parametrize("n_mels", [80, 128])
def test_mel_filterbank_is_librosas_slaney(n_mels):
    filters = A.mel_filters(torch.device("cpu"), n_mels)
    assert filters.shape == (n_mels, 201)
    np.testing.assert_allclose(filters.numpy(), slaney_mel_filterbank(n_mels), rtol=1e-5, atol=1e-6)  # float32


def test_log_mel_matches_reference():
    rng = np.random.default_rng(0)
    # speech-like: two tones, noise, and a silent stretch so the 8-unit floor is exercised
    audio = tone(220, 2.5, 16000, 0.3) + tone(1800, 2.5, 16000, 0.1) + 0.01 * rng.standard_normal(40000)
    audio[16000:24000] = 0.0
    reference = reference_log_mel(audio)
    assert reference.shape == (80, 250)
    assert reference.min() == pytest.approx((reference.max() - 2.0), abs=1e-9)  # the floor was reached
    ours = log_mel_spectrogram(torch.from_numpy(audio))  # float64 in, float64 out
    assert ours.dtype == torch.float64
    np.testing.assert_allclose(ours.numpy(), reference, atol=1e-5)
    # the float32 path: FFT rounding (~1e-7 of a frame's peak) only shows in bands ~80 dB below it
    ours32 = log_mel_spectrogram(torch.from_numpy(audio.astype(np.float32))).numpy()
    assert ours32.dtype == np.float32
    np.testing.assert_allclose(ours32, reference, atol=1e-4)
    assert np.quantile(np.abs(ours32 - reference), 0.99) < 1e-5


def test_log_mel_batch_is_each_clip_on_its_own():
    rng = np.random.default_rng(1)
    loud = torch.from_numpy(rng.standard_normal(16000).astype(np.float32))
    quiet = torch.from_numpy(tone(500, 1.0, 16000, 0.001))
    batch = log_mel_spectrogram(torch.stack([loud, quiet]), n_mels=80)
    assert batch.shape == (2, 80, 100)
    torch.testing.assert_close(batch[0], log_mel_spectrogram(loud), atol=1e-5, rtol=0)
    torch.testing.assert_close(batch[1], log_mel_spectrogram(quiet), atol=1e-5, rtol=0)


@pytest.mark.parametrize("seconds,frames", [(3.0, 300), (1.0, 100), (0.5, 50), (30.0, 3000), (7.25, 725)])
def test_clip_keeps_its_length(seconds, frames):
    audio = torch.from_numpy(tone(440, seconds, 16000))
    assert log_mel_spectrogram(audio).shape == (80, frames)
    assert log_mel_spectrogram(audio, n_mels=128).shape == (128, frames)


def test_a_tone_at_each_band_centre_lands_in_that_band():
    # Slaney mel band centres: the inner points of n_mels + 2 points evenly spaced on the mel scale
    hz_to_mel = lambda f: f / (200 / 3) if f < 1000 else 15 + math.log(f / 1000) / (math.log(6.4) / 27)
    mel_to_hz = lambda m: m * (200 / 3) if m < 15 else 1000 * math.exp((math.log(6.4) / 27) * (m - 15))
    centres = [mel_to_hz(m) for m in np.linspace(0, hz_to_mel(8000), 82)[1:-1]]
    assert centres[0] == pytest.approx(37.24, abs=0.01) and centres[-1] == pytest.approx(7698.59, abs=0.01)
    tones = torch.from_numpy(np.stack([tone(freq, 1.0, 16000) for freq in centres]))
    mel = log_mel_spectrogram(tones)  # (80 tones, 80 bands, 100 frames)
    assert mel.mean(dim=2).argmax(dim=1).tolist() == list(range(80))
    # 1 kHz (mel 15, the corner of the Slaney scale) is nearest band 26's centre, 1006 Hz
    assert round(centres[26]) == 1006
    assert int(log_mel_spectrogram(torch.from_numpy(tone(1000.0, 1.0, 16000))).mean(1).argmax()) == 26


def test_filterbank_and_window_are_cached_per_device():
    cpu = torch.device("cpu")
    assert A.mel_filters(cpu, 80) is A.mel_filters(cpu, 80)
    assert A.hann_window(cpu) is A.hann_window(cpu)
    before = A.mel_filters.cache_info().hits
    log_mel_spectrogram(torch.zeros(16000))
    log_mel_spectrogram(torch.zeros(16000))
    assert A.mel_filters.cache_info().hits >= before + 2


def test_log_mel_rejects_bad_input():
    with pytest.raises(ValueError, match="too short.*more than 200 samples"):
        log_mel_spectrogram(torch.zeros(200))
    with pytest.raises(ValueError, match=r"\(samples,\) or \(batch, samples\)"):
        log_mel_spectrogram(torch.zeros(1, 2, 16000))
    with pytest.raises(ValueError, match="floating-point"):
        log_mel_spectrogram(torch.zeros(16000, dtype=torch.int16))
    with pytest.raises(TypeError, match="torch tensor"):
        log_mel_spectrogram(np.zeros(16000, dtype=np.float32))


# ----------------------------------------------------------------------------------------------------------
# loading and resampling


@pytest.mark.parametrize("rate,freq", [(8000, 1000.0), (22050, 440.0), (44100, 3000.0), (48000, 5000.0)])
def test_resampling_to_16k_keeps_a_tones_frequency(rate, freq):
    audio = load_audio(tone(freq, 2.0, rate), sample_rate=rate)
    assert audio.dtype == torch.float32 and audio.ndim == 1
    assert audio.shape == (32000,)  # 2 s at 16 kHz
    assert peak_frequency(audio, 16000) == pytest.approx(freq, abs=0.5)  # 0.5 Hz bins over 2 s
    # the level is kept too: a 0.5-amplitude sine has RMS 0.5 / sqrt(2) away from the edges
    assert float(audio[1000:-1000].pow(2).mean().sqrt()) == pytest.approx(0.5 / math.sqrt(2), rel=0.01)


def test_resampling_from_a_file(tmp_path):
    path = tmp_path / "tone.flac"
    soundfile.write(path, tone(440.0, 1.0, 44100), 44100)
    audio = load_audio(path)
    assert audio.shape == (16000,) and peak_frequency(audio, 16000) == pytest.approx(440.0, abs=1.0)
    expected = AF.resample(torch.from_numpy(soundfile.read(path, dtype="float32")[0]), 44100, 16000)
    torch.testing.assert_close(audio, expected)


def test_16k_wav_is_read_exactly(tmp_path):
    samples = tone(300.0, 0.5, 16000)
    soundfile.write(tmp_path / "a.wav", samples, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(tmp_path / "a.wav").numpy(), samples)
    np.testing.assert_array_equal(load_audio(str(tmp_path / "a.wav"), sample_rate=16000).numpy(), samples)
    soundfile.write(tmp_path / "b.wav", samples, 16000, subtype="PCM_16")  # int16 on disk
    np.testing.assert_allclose(load_audio(tmp_path / "b.wav").numpy(), samples, atol=1 / 2**15)


def test_stereo_is_downmixed_by_averaging(tmp_path):
    left, right = tone(440.0, 1.0, 16000, 0.6), tone(1000.0, 1.0, 16000, 0.2)
    expected = (left + right) / 2
    stereo = np.stack([left, right], axis=1)  # soundfile layout (samples, channels)
    soundfile.write(tmp_path / "stereo.wav", stereo, 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(tmp_path / "stereo.wav").numpy(), expected, atol=1e-7)
    np.testing.assert_allclose(load_audio(stereo, sample_rate=16000).numpy(), expected, atol=1e-7)
    # torchaudio layout (channels, samples)
    np.testing.assert_allclose(load_audio(torch.from_numpy(stereo.T), 16000).numpy(), expected, atol=1e-7)
    # stereo OGG at 48 kHz: downmix and resample together, both tones survive
    soundfile.write(tmp_path / "stereo.ogg", np.stack([tone(440, 1, 48000, .6), tone(1000, 1, 48000, .2)], 1), 48000)
    spectrum = np.abs(np.fft.rfft(load_audio(tmp_path / "stereo.ogg").numpy()))
    assert set(np.argsort(spectrum)[-2:]) == {440, 1000}


def test_int_pcm_arrays_are_scaled():
    pcm = np.array([0, 16384, -32768, 32767], dtype=np.int16)
    np.testing.assert_allclose(load_audio(pcm, 16000).numpy(), [0, 0.5, -1, 32767 / 32768])
    pcm32 = np.array([0, 2**30, -(2**31)], dtype=np.int32)
    np.testing.assert_allclose(load_audio(pcm32, 16000).numpy(), [0, 0.5, -1])


def test_clipped_samples_are_kept_unchanged():
    samples = np.array([0.0, 1.5, -2.0, 0.25, 1.0], dtype=np.float32)
    np.testing.assert_array_equal(load_audio(samples, 16000).numpy(), samples)


# ----------------------------------------------------------------------------------------------------------
# errors


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.wav does not exist"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(ValueError, match="is not a file"):
        load_audio(tmp_path)


def test_text_file_named_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 50)
    with pytest.raises(ValueError, match=r"notes\.wav is not a readable audio file.*WAV"):
        load_audio(path)


def test_corrupt_file(tmp_path):
    soundfile.write(tmp_path / "good.wav", tone(440.0, 0.5, 16000), 16000)
    data = bytearray((tmp_path / "good.wav").read_bytes())
    data[8:16] = b"XXXXXXXX"  # the RIFF type "WAVE" and the "fmt " chunk id are gone
    (tmp_path / "corrupt.wav").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"corrupt\.wav is not a readable audio file"):
        load_audio(tmp_path / "corrupt.wav")
    (tmp_path / "zero.flac").write_bytes(b"")
    with pytest.raises(ValueError, match=r"zero\.flac is not a readable audio file"):
        load_audio(tmp_path / "zero.flac")


def test_empty_audio(tmp_path):
    soundfile.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(ValueError, match=r"empty\.wav holds no audio samples"):
        load_audio(tmp_path / "empty.wav")
    for empty in (np.zeros(0, np.float32), torch.zeros(0), np.zeros((0, 2), np.float32)):
        with pytest.raises(ValueError, match="no audio samples"):
            load_audio(empty, sample_rate=16000)


def test_nan_and_infinite_samples(tmp_path):
    samples = tone(440.0, 1.0, 16000)
    samples[[8000, 8001, 12000]] = [np.nan, np.inf, -np.inf]
    with pytest.raises(ValueError, match=r"3 NaN or infinite samples, the first at sample 8000 \(0\.500 s\)"):
        load_audio(samples, sample_rate=16000)
    soundfile.write(tmp_path / "nan.wav", samples, 16000, subtype="FLOAT")
    with pytest.raises(ValueError, match=r"nan\.wav has 3 NaN or infinite samples, the first at sample 8000"):
        load_audio(tmp_path / "nan.wav")


def test_sample_rate_errors(tmp_path):
    with pytest.raises(ValueError, match="needs its sample_rate"):
        load_audio(np.zeros(100, np.float32))
    for bad in (0, -16000, 22050.5, "16000", float("nan"), True):
        with pytest.raises(ValueError, match="positive whole number of Hz"):
            load_audio(np.zeros(100, np.float32), sample_rate=bad)
    soundfile.write(tmp_path / "a.wav", tone(440.0, 0.1, 8000), 8000)
    with pytest.raises(ValueError, match="sampled at 8000 Hz but sample_rate=16000"):
        load_audio(tmp_path / "a.wav", sample_rate=16000)


def test_array_shape_and_type_errors():
    with pytest.raises(ValueError, match="1-D .* or 2-D"):
        load_audio(np.zeros((2, 2, 100), np.float32), 16000)
    with pytest.raises(ValueError, match="square"):
        load_audio(np.zeros((2, 2), np.float32), 16000)
    with pytest.raises(ValueError, match="dtype uint8 is not supported"):
        load_audio(np.zeros(100, np.uint8), 16000)
    with pytest.raises(TypeError, match="file path"):
        load_audio([0.0, 0.1], 16000)


# ----------------------------------------------------------------------------------------------------------
# windows


def test_75_seconds_split_into_30_30_15():
    audio = torch.arange(75 * 16000, dtype=torch.float32)
    windows = split_windows(audio)
    assert [start for start, _ in windows] == [0.0, 30.0, 60.0]
    assert [chunk.shape[0] for _, chunk in windows] == [480000, 480000, 240000]
    torch.testing.assert_close(torch.cat([chunk for _, chunk in windows]), audio)
    assert [log_mel_spectrogram(chunk).shape[1] for _, chunk in windows] == [3000, 3000, 1500]


def test_split_windows_other_sizes_and_errors():
    audio = torch.zeros(16000 * 5 + 7)
    windows = split_windows(audio, window_seconds=2.0)
    assert [(s, c.shape[0]) for s, c in windows] == [(0.0, 32000), (2.0, 32000), (4.0, 16007)]
    assert split_windows(torch.zeros(0)) == []
    assert [c.shape[0] for _, c in split_windows(torch.zeros(16000), 0.03)][:2] == [480, 480]
    for bad in (0.0, -1.0, 31.0, 0.005):
        with pytest.raises(ValueError, match=r"window_seconds must be in \(0, 30\]"):
            split_windows(audio, window_seconds=bad)
    with pytest.raises(ValueError, match="1-D waveform"):
        split_windows(torch.zeros(2, 100))


def test_pad_or_trim():
    audio = torch.arange(5, dtype=torch.float32)
    assert pad_or_trim(audio, 8).tolist() == [0, 1, 2, 3, 4, 0, 0, 0]
    assert pad_or_trim(audio, 3).tolist() == [0, 1, 2]
    assert pad_or_trim(torch.ones(16000)).shape == (A.N_SAMPLES,)
    mel = log_mel_spectrogram(torch.ones(16000))
    padded = pad_or_trim(mel, A.N_FRAMES)
    assert padded.shape == (80, 3000) and torch.equal(padded[:, :100], mel) and not padded[:, 100:].any()
    batch = pad_or_trim(torch.ones(2, 80, 10), 4, axis=1)
    assert batch.shape == (2, 4, 10)
    array = pad_or_trim(np.ones((3, 4)), 6, axis=0)
    assert array.shape == (6, 4) and array[3:].sum() == 0
    assert pad_or_trim(np.arange(10), 4).tolist() == [0, 1, 2, 3]
