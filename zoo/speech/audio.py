"""The Whisper speech front end: audio loading, 80-bin log-mel spectrograms, 30-second windows.

The numbers follow openai/whisper's audio.py (Radford et al., 2022, "Robust Speech Recognition via
Large-Scale Weak Supervision", section 2.2): audio is re-sampled to 16 kHz, and "an 80-channel log-magnitude
Mel spectrogram representation is computed on 25-millisecond windows with a stride of 10 milliseconds";
the encoder's convolutional stem has stride 2, so one encoder frame (and one timestamp step) is 20 ms.

Differences from whisper, on purpose:
- `log_mel_spectrogram` keeps a clip's own length (3 s -> 300 frames); pad with `pad_or_trim` to get the
  fixed 30 s (3000-frame) input that whisper always builds.
- a batch (B, T) is normalised per clip (whisper takes one max over the whole tensor), so a clip's
  features never depend on what else is in its batch.
- `load_audio` reads files with soundfile (libsndfile: WAV, FLAC, OGG/Vorbis, ...), not an ffmpeg subprocess.
- samples beyond [-1, 1] are kept as they are (whisper's ffmpeg->int16 path would hard-clip them); see
  `load_audio`.
- audio longer than MAX_SECONDS is refused (a few kilobytes of FLAC can declare days of silence), and rates
  whose torchaudio resampling kernel would be huge are resampled with the same filter tap by tap (`resample`).
"""

import functools
import math
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional as AF

from zoo.errors import InputError, InputTypeError, MissingFileError

SAMPLE_RATE = 16000  # Hz, the one rate the model sees
N_FFT = 400  # 25 ms analysis window at 16 kHz
HOP_LENGTH = 160  # 10 ms stride at 16 kHz
N_MELS = 80  # the paper's 80 channels (large-v3 uses 128; pass n_mels=128)
CHUNK_LENGTH = 30  # seconds of audio per encoder input
N_SAMPLES = CHUNK_LENGTH * SAMPLE_RATE  # 480000 samples in a 30 s window
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 mel frames in a 30 s window
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100 mel frames per second (10 ms each)
ENCODER_STRIDE = 2  # the second conv of the encoder stem has stride 2
N_SAMPLES_PER_TOKEN = HOP_LENGTH * ENCODER_STRIDE  # 320 samples per encoder frame
TOKENS_PER_SECOND = SAMPLE_RATE // N_SAMPLES_PER_TOKEN  # 50 encoder frames per second
SECONDS_PER_TOKEN = N_SAMPLES_PER_TOKEN / SAMPLE_RATE  # 0.02 s: also the timestamp-token resolution
N_AUDIO_CTX = N_FRAMES // ENCODER_STRIDE  # 1500 encoder positions in a 30 s window

LOG_FLOOR = 1e-10  # power below this is treated as silence before log10
DYNAMIC_RANGE = 8.0  # log10 units (80 dB) kept below each clip's peak
MEL_PAD = 0.0  # log-mel value of padded frames in a batch: the model's stem convolution pads with zeros too, so a
# clip's features are the same padded in a batch or alone (attention masks the padded frames)
INT_SCALES = {np.dtype("int16"): 2.0**15, np.dtype("int32"): 2.0**31}  # PCM integers -> [-1, 1)
# Float samples are meant to lie in [-1, 1]; beyond int16 full scale they are corrupt data (random bytes read as
# floats) or unscaled PCM, and from about 1e17 their power overflows float32 in the spectrogram.
MAX_LEVEL = 2.0**15
# The longest audio load_audio takes, in seconds; like PIL's Image.MAX_IMAGE_PIXELS a module setting to raise
# for longer recordings. It bounds memory whatever a header claims: 4 h at 16 kHz is 0.9 GB of float32 samples.
MAX_SECONDS = 4 * 3600
READ_BLOCK_FRAMES = 1 << 20  # files are decoded in blocks of this many frames
# torchaudio.functional.resample's defaults (sinc_interp_hann), which `resample` keeps for every rate
LOWPASS_WIDTH = 6
ROLLOFF = 0.99
RESAMPLE_KERNEL_LIMIT = 1 << 22  # kernel elements (16 MB of float32) above which `resample` goes tap by tap
RESAMPLE_BLOCK = 1 << 22  # output samples x taps the tap-by-tap path weighs at once (its working memory)


# ----------------------------------------------------------------------------------------------------------
# loading


def load_audio(source, sample_rate: int | None = None) -> torch.Tensor:
    """Return `source` as a mono float32 waveform at 16 kHz, shape (samples,).

    source: a path to any file libsndfile reads (WAV, FLAC, OGG/Vorbis, ...; its own rate is used, and
    `sample_rate`, if given, must agree with it), or a numpy array / torch tensor with its `sample_rate`.
    Arrays are (samples,) for mono or 2-D with channels along the shorter axis, so both torchaudio's
    (channels, samples) and soundfile's (samples, channels) work. Float arrays are taken as is; int16 and
    int32 PCM are scaled to [-1, 1).

    - several channels are downmixed by averaging them;
    - other rates (8, 22.05, 44.1, 48 kHz, ...) are resampled with torchaudio's windowed-sinc resampler;
    - clipping: values beyond [-1, 1] are kept unchanged, not clipped or rescaled. Hard clipping adds
      distortion, rescaling changes the level of the whole clip, and resampling a full-scale signal
      legitimately overshoots 1 a little; the log-mel normalisation is relative to each clip's peak;
    - refused with zoo's InputError (a ValueError): empty audio, NaN or infinite samples (with their count and
      the first index, since they would poison every mel frame they touch), samples beyond +-MAX_LEVEL, audio
      longer than MAX_SECONDS, a file that is not audio or is corrupt, an array without its sample rate. A
      missing file is a FileNotFoundError.
    """
    if isinstance(source, (str, Path)):
        samples, rate, name = _read_file(Path(source), sample_rate)
    elif isinstance(source, (np.ndarray, torch.Tensor)):
        samples, rate, name = _from_array(source, sample_rate), _check_rate(sample_rate, "the array"), "array"
        _check_duration(samples.shape[1], rate, name)
    else:
        raise InputTypeError(f"load_audio takes a file path (str or Path), a numpy array or a torch tensor, "
                             f"got {type(source).__name__}")
    _check_samples(samples, rate, name)
    audio = torch.from_numpy(np.ascontiguousarray(samples.mean(axis=0, dtype=np.float64), dtype=np.float32))
    return resample(audio, rate).contiguous()


def _check_samples(samples: np.ndarray, rate: int, name: str) -> None:
    """(channels, samples): at least one sample, all finite and within +-MAX_LEVEL."""
    if samples.shape[1] == 0:
        raise InputError(f"{name} holds no audio samples (0 frames); nothing to transcribe")
    bad = ~np.isfinite(samples)
    if bad.any():
        first = int(np.argmax(bad.any(axis=0)))
        raise InputError(f"{name} has {int(bad.sum())} NaN or infinite samples, the first at sample {first} "
                         f"({first / rate:.3f} s); all samples must be finite")
    peak = max(float(samples.max()), -float(samples.min()))
    if peak > MAX_LEVEL:
        raise InputError(f"{name} has samples as large as {peak:.3g}; float audio lies in [-1, 1], and beyond "
                         f"+-{MAX_LEVEL:g} (int16 full scale) samples are corrupt data or unscaled PCM integers "
                         f"(divide int16 PCM by 2**15, int32 by 2**31, or pass the integer array itself)")


def _check_duration(frames: int, rate: int, name: str) -> None:
    if frames > MAX_SECONDS * rate:
        raise InputError(f"{name} is longer than {MAX_SECONDS} s ({frames} samples at {rate} Hz); allowed: at "
                         f"most zoo.speech.audio.MAX_SECONDS, a setting to raise for longer recordings")


def _read_file(path: Path, sample_rate: int | None) -> tuple[np.ndarray, int, str]:
    if not path.exists():
        raise MissingFileError(f"audio file {path} does not exist")
    if not path.is_file():
        raise InputError(f"audio path {path} is not a file")
    try:
        file = soundfile.SoundFile(str(path))
    except (RuntimeError, TypeError) as error:  # LibsndfileError: unknown format, bad header; TypeError: RAW
        raise _unreadable(path, error) from None
    with file:
        rate = _check_rate(file.samplerate, str(path))
        if sample_rate is not None and sample_rate != rate:
            raise InputError(f"{path} is sampled at {rate} Hz but sample_rate={sample_rate} was given; leave "
                             f"sample_rate out for files (their header says it)")
        try:
            data = _read_frames(file, str(path))
        except RuntimeError as error:  # LibsndfileError: data damaged after a good header
            raise _unreadable(path, error) from None
    return data.T, rate, str(path)  # (channels, samples)


def _unreadable(path: Path, error: Exception) -> InputError:
    return InputError(f"{path} is not a readable audio file ({error}); formats libsndfile reads: "
                      f"{', '.join(sorted(soundfile.available_formats()))}")


def _read_frames(file: soundfile.SoundFile, name: str) -> np.ndarray:
    """Every frame of `file`, (samples, channels) float32, decoded in blocks. The header's frame count is not
    trusted: soundfile allocates what it declares, and a FLAC header may declare 2**36 frames."""
    blocks, frames = [], 0
    while len(block := file.read(READ_BLOCK_FRAMES, dtype="float32", always_2d=True)):
        blocks.append(block)
        frames += len(block)
        _check_duration(frames, file.samplerate, name)
    return np.concatenate(blocks) if blocks else np.zeros((0, file.channels), dtype=np.float32)


def _from_array(source, sample_rate) -> np.ndarray:
    if sample_rate is None:
        raise InputError("an array needs its sample_rate (e.g. load_audio(samples, sample_rate=44100)); only "
                         "files carry their own rate")
    array = _tensor_to_numpy(source) if isinstance(source, torch.Tensor) else np.asarray(source)
    if array.size == 0:
        return np.zeros((1, 0))  # refused as empty by the caller, whatever its layout
    if array.ndim == 1:
        array = array[None, :]
    elif array.ndim == 2:
        if array.shape[0] == array.shape[1]:
            raise InputError(f"cannot tell channels from samples in a square {tuple(array.shape)} array; pass "
                             f"(channels, samples) with fewer channels than samples")
        if array.shape[0] > array.shape[1]:
            array = array.T  # soundfile's (samples, channels)
    else:
        raise InputError(f"audio array must be 1-D (samples,) or 2-D (channels, samples), got shape "
                         f"{tuple(array.shape)}")
    scale = INT_SCALES.get(array.dtype.newbyteorder("="))  # big-endian PCM too
    if scale is not None:
        return array.astype(np.float64) / scale
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"audio array dtype {array.dtype} is not supported; allowed: float arrays in [-1, 1] "
                         f"or int16/int32 PCM")
    return array


def _tensor_to_numpy(tensor: torch.Tensor) -> np.ndarray:
    if tensor.is_meta:
        raise InputError("the audio tensor is on the meta device and holds no samples")
    tensor = tensor.detach().cpu()
    if tensor.layout != torch.strided:  # sparse
        tensor = tensor.to_dense()
    if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16
        tensor = tensor.float()
    return tensor.numpy()


def _check_rate(sample_rate, what: str) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float, np.integer, np.floating)):
        raise InputError(f"sample_rate of {what} must be a positive whole number of Hz, got {sample_rate!r}")
    if not (math.isfinite(sample_rate) and sample_rate > 0 and float(sample_rate).is_integer()):
        raise InputError(f"sample_rate of {what} must be a positive whole number of Hz, got {sample_rate!r}")
    return int(sample_rate)


def resample(audio: torch.Tensor, rate: int) -> torch.Tensor:
    """A (samples,) waveform at `rate` Hz -> SAMPLE_RATE, with torchaudio's windowed-sinc filter; the result has
    ceil(samples * 16000 / rate) samples, as torchaudio gives.

    torchaudio's kernel holds one row per output phase, each spanning a whole input period: (16000 / g) x
    (rate / g + 2 * width) for g = gcd(rate, 16000). That is small for the usual rates (160 x 475 at 44.1 kHz)
    but 16000 x 44135 floats, 2.8 GB and a minute of work, at 44101 Hz, which a damaged header can declare.
    Such rates get the same filter evaluated only at the taps each output sample reaches (`_sinc_resample`)."""
    if rate == SAMPLE_RATE:
        return audio
    g = math.gcd(rate, SAMPLE_RATE)
    orig, new = rate // g, SAMPLE_RATE // g
    width = math.ceil(LOWPASS_WIDTH * orig / (min(orig, new) * ROLLOFF))  # as torchaudio computes it
    if new * (orig + 2 * width) <= RESAMPLE_KERNEL_LIMIT:
        return AF.resample(audio, orig_freq=rate, new_freq=SAMPLE_RATE)
    return _sinc_resample(audio, rate)


def _sinc_resample(audio: torch.Tensor, rate: int) -> torch.Tensor:
    """torchaudio's sinc_interp_hann filter, computed for blocks of output samples: output j (at input position
    j * rate / 16000) sums the inputs k within LOWPASS_WIDTH zero crossings, weighted by
    sinc(t) * cos(pi t / 2 / LOWPASS_WIDTH)**2 * cutoff / rate with t = (k / rate - j / 16000) * cutoff."""
    cutoff = min(rate, SAMPLE_RATE) * ROLLOFF  # Hz
    reach = math.ceil(LOWPASS_WIDTH * rate / cutoff)  # input samples on either side of an output sample
    offsets = torch.arange(-reach, reach + 2)
    to_t = cutoff / (rate * SAMPLE_RATE)  # (k * 16000 - j * rate) -> t
    padded = torch.nn.functional.pad(audio.float(), (reach, reach + 1))  # zeros beyond the ends, as torchaudio
    n_out = -(-audio.shape[0] * SAMPLE_RATE // rate)
    out = torch.empty(n_out, dtype=torch.float32)
    block = max(1, RESAMPLE_BLOCK // len(offsets))
    for start in range(0, n_out, block):
        j = torch.arange(start, min(start + block, n_out))
        first = j * rate // SAMPLE_RATE  # the input at or before output j, exact in int64
        lag = (first * SAMPLE_RATE - j * rate).float() * to_t  # an integer in (-16000, 0] before scaling: no loss
        t = (lag[:, None] + offsets.float() * (SAMPLE_RATE * to_t)).clamp(-LOWPASS_WIDTH, LOWPASS_WIDTH)
        weights = torch.special.sinc(t) * torch.cos(t * (math.pi / (2 * LOWPASS_WIDTH))) ** 2
        out[start:start + len(j)] = (padded[first[:, None] + (offsets + reach)] * weights).sum(dim=1)
    return (out * (cutoff / rate)).to(audio.dtype)


# ----------------------------------------------------------------------------------------------------------
# features


@functools.cache
def mel_filters(device: torch.device, n_mels: int = N_MELS, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The (n_mels, N_FFT // 2 + 1) mel filterbank, cached per device and dtype: librosa's default (Slaney mel
    scale and area normalisation) over 0..8 kHz, which is what whisper ships in mel_filters.npz."""
    fbanks = AF.melscale_fbanks(n_freqs=N_FFT // 2 + 1, f_min=0.0, f_max=SAMPLE_RATE / 2, n_mels=n_mels,
                                sample_rate=SAMPLE_RATE, norm="slaney", mel_scale="slaney")
    return fbanks.T.contiguous().to(device=device, dtype=dtype)


@functools.cache
def hann_window(device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The periodic Hann window of N_FFT samples (torch's default, as whisper uses), cached per device."""
    return torch.hann_window(N_FFT, dtype=dtype, device=device)


def log_mel_spectrogram(audio: torch.Tensor, n_mels: int = N_MELS) -> torch.Tensor:
    """Whisper's log-mel features: (samples,) -> (n_mels, samples // 160), (B, samples) -> (B, n_mels, frames).

    STFT with a 400-sample Hann window and hop 160 (centered, reflect padding), power spectrum, mel
    filterbank; the last STFT frame is dropped as whisper does, so frames = samples // 160 and a 3 s clip
    gives 300 frames. Then log10(max(mel, 1e-10)), floored at 8 below the clip's peak, and (x + 4) / 4,
    which puts speech roughly in [-1, 1].

    Computed in float32 (float64 input stays float64, for references; half precisions are upcast).
    """
    if not isinstance(audio, torch.Tensor):
        raise InputTypeError(f"log_mel_spectrogram takes a torch tensor, got {type(audio).__name__}; use "
                             f"load_audio for files and arrays")
    if audio.ndim not in (1, 2):
        raise InputError(f"audio must be (samples,) or (batch, samples), got shape {tuple(audio.shape)}")
    if audio.shape[-1] <= N_FFT // 2:  # reflect padding needs more samples than the pad
        raise InputError(f"audio of {audio.shape[-1]} samples is too short for a log-mel spectrogram; it needs "
                         f"more than {N_FFT // 2} samples ({(N_FFT // 2) / SAMPLE_RATE * 1000:.1f} ms at 16 kHz)")
    if not torch.is_floating_point(audio):
        raise InputError(f"audio must be a floating-point waveform, got dtype {audio.dtype}")
    if audio.dtype != torch.float64:
        audio = audio.float()
    stft = torch.stft(audio, N_FFT, HOP_LENGTH, window=hann_window(audio.device, audio.dtype), return_complex=True)
    power = stft[..., :-1].abs() ** 2  # (..., freqs, frames)
    mel = mel_filters(audio.device, n_mels, audio.dtype) @ power  # (..., n_mels, frames)
    log_spec = torch.clamp(mel, min=LOG_FLOOR).log10()
    peak = log_spec.amax(dim=(-2, -1), keepdim=True)  # per clip
    log_spec = torch.maximum(log_spec, peak - DYNAMIC_RANGE)
    return (log_spec + 4.0) / 4.0


# ----------------------------------------------------------------------------------------------------------
# windows


def pad_or_trim(array, length: int = N_SAMPLES, *, axis: int = -1):
    """Zero-pad or cut `array` (tensor or numpy array) along `axis` to exactly `length`, as whisper does for
    its fixed 30 s encoder input (N_SAMPLES samples, or N_FRAMES mel frames)."""
    if length < 0:
        raise InputError(f"length must be >= 0, got {length}")
    size = array.shape[axis]
    if isinstance(array, torch.Tensor):
        if size > length:
            return array.narrow(axis, 0, length)
        if size < length:
            pad = [0, 0] * (array.ndim - 1 - axis % array.ndim) + [0, length - size]
            return torch.nn.functional.pad(array, pad)
        return array
    if size > length:
        return np.take(array, np.arange(length), axis=axis)
    if size < length:
        widths = [(0, 0)] * array.ndim
        widths[axis] = (0, length - size)
        return np.pad(array, widths)
    return array


def split_windows(audio: torch.Tensor, window_seconds: float = float(CHUNK_LENGTH)) -> list[tuple[float, torch.Tensor]]:
    """Cut a 16 kHz waveform into consecutive windows of `window_seconds` (the last one shorter), returned as
    (start_seconds, chunk) pairs; chunks are views. A 75 s signal gives windows at 0, 30 and 60 s of 30, 30
    and 15 s. Windows are at most 30 s (the encoder's context) and a whole number of 10 ms mel frames."""
    if not isinstance(audio, torch.Tensor) or audio.ndim != 1:
        raise InputError(f"split_windows takes a 1-D waveform tensor at {SAMPLE_RATE} Hz, got "
                         f"{getattr(audio, 'shape', type(audio).__name__)}")
    frames = window_seconds * FRAMES_PER_SECOND
    if not (0 < window_seconds <= CHUNK_LENGTH) or abs(frames - round(frames)) > 1e-6:
        raise InputError(f"window_seconds must be in (0, {CHUNK_LENGTH}] and a multiple of "
                         f"{1 / FRAMES_PER_SECOND} s (one mel frame), got {window_seconds}")
    step = round(frames) * HOP_LENGTH
    return [(start / SAMPLE_RATE, audio[start:start + step]) for start in range(0, audio.shape[0], step)]
