"""Validated input everywhere: every bad input a user can give the `zoo` command or a family's Python API is
refused with one of zoo's own error types (zoo/errors.py) and a message naming what was wrong and what is
allowed; never a raw traceback, and never a partial output file.

Two tables. API rows call a function and expect a specific ZooError subclass whose message holds the listed
words. CLI rows run `zoo ...` in-process and expect exit status 2, one `zoo VERB: error: ...` line on stderr
holding the listed words, and not one file added or removed under the working directory, the input files'
directory or ZOO_HOME (temporaries included). argparse's own refusals (an unknown choice, a non-integer for an
integer option) exit 2 with its usage line, and have a small table of their own.

The models are the shipped ones (gpt-nano, whisper-cpu, alexnet-mini, dit-shapes), named as a user would name
them; every refusal below comes before any decoding, sampling or training, so the tables stay fast.
"""

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

import zoo
from zoo.cli import main
from zoo.diffusion.pipeline import TextToImagePipeline
from zoo.errors import InputError, InputTypeError, MissingFileError, UnsafeFileError, ZooError
from zoo.models import trained_dir
from zoo.speech.audio import SAMPLE_RATE
from zoo.speech.decoding import DecodingOptions, decode, detect_language
from zoo.speech.transcribe import transcribe
from zoo.text.generate import GenerationOptions, generate, next_token_table, stream
from zoo.train import train
from zoo.train.trainer import check_out_dir
from zoo.vision.data import classify

PROMPT = "a small red circle in the centre on a blue background"  # words the shipped DiT knows


# ----------------------------------------------------------------------------------------------------------
# inputs: good and bad files, the shipped models


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """One good audio file and one good image, and the bad ones; missing.* are never written."""
    root = tmp_path_factory.mktemp("inputs")
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    soundfile.write(root / "tone.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), SAMPLE_RATE)
    (root / "notes.wav").write_text("this is not audio\n" * 50)
    (root / "empty.wav").write_bytes(b"")
    soundfile.write(root / "silent.wav", np.zeros(0, np.float32), SAMPLE_RATE)  # a header, no samples
    soundfile.write(root / "nan.wav", np.full(SAMPLE_RATE, np.nan, np.float32), SAMPLE_RATE, subtype="FLOAT")
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "drawing.png")
    whole = (root / "drawing.png").read_bytes()
    (root / "truncated.png").write_bytes(whole[:len(whole) // 2])
    (root / "notes.png").write_text("this is not an image\n")
    (root / "empty.png").write_bytes(b"")
    (root / "weights.pt").write_bytes(b"\x80\x04not really a pickle")
    (root / "folder").mkdir()
    return root


@pytest.fixture(scope="module")
def m(files) -> SimpleNamespace:
    """The shipped models, loaded once, and the inputs the API rows need."""
    return SimpleNamespace(
        files=files,
        gpt=zoo.load("gpt-nano", pretrained=True).eval(),
        whisper=zoo.load("whisper-cpu", pretrained=True).eval(),
        alexnet=zoo.load("alexnet-mini", pretrained=True).eval(),
        pipe=TextToImagePipeline.from_pretrained(trained_dir("dit-shapes"), device="cpu"),
        wave=torch.from_numpy(soundfile.read(files / "tone.wav", dtype="float32")[0]),
        mel=torch.zeros(80, 100),
    )


# ----------------------------------------------------------------------------------------------------------
# the Python API


def row(call, error: type[ZooError], *words: str, id: str):
    return pytest.param(call, error, words, id=id)


LOAD = [
    row(lambda m: zoo.load(None), InputTypeError, "model name", "NoneType", id="load-none"),
    row(lambda m: zoo.load(""), InputError, "empty", "registered model name", id="load-empty-name"),
    row(lambda m: zoo.load("gpt-nanoo"), InputError, "unknown model 'gpt-nanoo'", "gpt-nano", id="load-unknown-name"),
    row(lambda m: zoo.load("./missing"), MissingFileError, "no model directory", "model name", id="load-missing-dir"),
    row(lambda m: zoo.load(m.files), MissingFileError, "not a zoo model directory", "config.json",
        id="load-dir-not-a-model"),
    row(lambda m: zoo.load(m.files / "weights.pt"), UnsafeFileError, "pickle", "safetensors", id="load-pickle"),
    row(lambda m: zoo.load("gpt-mini", pretrained=True), MissingFileError, "no trained weights", "zoo train gpt-mini",
        id="load-no-weights"),
    row(lambda m: zoo.load("gpt-nano", nofield=1), InputError, "unknown field 'nofield'", "allowed", "backbone",
        id="load-unknown-field"),
    row(lambda m: zoo.load("gpt-nano", backbone={"n_layer": 2}), InputError, "'backbone.n_layer'", "n_layers",
        id="load-unknown-nested-field"),
    row(lambda m: zoo.load("gpt-nano", backbone={"n_layers": "two"}), InputError, "backbone.n_layers",
        "expects an integer", id="load-wrong-type"),
    row(lambda m: zoo.load("gpt-nano", backbone={"n_layers": 0}), InputError, "n_layers", ">= 1",
        id="load-bad-value"),
    row(lambda m: zoo.load("gpt-nano", device="gpu0"), InputError, "device='gpu0'", "'cpu', 'cuda'",
        id="load-bad-device"),
    row(lambda m: zoo.load("gpt-nano", dtype="float16"), InputTypeError, "dtype='float16'", "torch.bfloat16",
        id="load-dtype-not-a-dtype"),
    row(lambda m: zoo.list_models(3), InputTypeError, "pattern", "'gpt*'", id="list-models-not-a-pattern"),
]

TEXT = [
    row(lambda m: generate(m.whisper, "def"), InputError, "takes a gpt model", "whisper-cpu is a whisper model",
        id="generate-speech-model"),
    row(lambda m: generate(m.gpt, None), InputTypeError, "prompts must be a str", "NoneType", id="generate-none"),
    row(lambda m: generate(m.gpt, []), InputError, "empty list", "non-empty list of str", id="generate-empty-list"),
    row(lambda m: generate(m.gpt, ["def", 3]), InputTypeError, "prompt 1 must be a str", "int",
        id="generate-list-of-non-str"),
    row(lambda m: generate(m.gpt, ""), InputError, "prompt 0 is empty", "at least one character",
        id="generate-empty-prompt"),
    row(lambda m: generate(m.gpt, "def " * 400), InputError, "tokens long", "max_seq_len=256",
        id="generate-prompt-too-long"),
    row(lambda m: generate(m.gpt, "def", GenerationOptions(max_new_tokens=1000)), InputError, "max_new_tokens (1000)",
        "at most", id="generate-past-the-context"),
    row(lambda m: generate(m.gpt, "def", {"max_new_tokens": 3}), InputTypeError, "GenerationOptions", "dict",
        id="generate-options-as-dict"),
    row(lambda m: GenerationOptions(max_new_tokens=0), InputError, "max_new_tokens", ">= 1", id="options-zero-tokens"),
    row(lambda m: GenerationOptions(temperature=-0.5), InputError, "temperature", ">= 0", id="options-temperature"),
    row(lambda m: GenerationOptions(temperature=math.nan), InputError, "temperature", "finite",
        id="options-temperature-nan"),
    row(lambda m: GenerationOptions(top_k=0), InputError, "top_k", ">= 1", id="options-top-k-zero"),
    row(lambda m: GenerationOptions(top_k=2.5), InputError, "top_k", "integer", id="options-top-k-float"),
    row(lambda m: GenerationOptions(top_p=0.0), InputError, "top_p", "(0, 1]", id="options-top-p-zero"),
    row(lambda m: GenerationOptions(top_p=1.5), InputError, "top_p", "(0, 1]", id="options-top-p-above-one"),
    row(lambda m: GenerationOptions(min_p=2.0), InputError, "min_p", "[0, 1]", id="options-min-p"),
    row(lambda m: GenerationOptions(repetition_penalty=0), InputError, "repetition_penalty", "> 0",
        id="options-repetition-penalty"),
    row(lambda m: GenerationOptions(beam_size=0, temperature=0), InputError, "beam_size", ">= 1",
        id="options-beam-size-zero"),
    row(lambda m: GenerationOptions(beam_size=2, temperature=0.8), InputError, "beam_size", "temperature=0",
        id="options-beam-with-sampling"),
    row(lambda m: GenerationOptions(stop=("",)), InputError, "stop", "non-empty strings", id="options-empty-stop"),
    row(lambda m: stream(m.gpt, ["def"]), InputError, "one prompt", "generate()", id="stream-a-list"),
    row(lambda m: stream(m.gpt, "def", GenerationOptions(beam_size=2, temperature=0)), InputError,
        "cannot stream beam search", "beam_size=None", id="stream-beam-search"),
    row(lambda m: next_token_table(m.gpt, "def", k=0), InputError, "k must be", ">= 1", id="next-tokens-k-zero"),
    row(lambda m: next_token_table(m.whisper, "def"), InputError, "takes a gpt model", "whisper",
        id="next-tokens-speech-model"),
]

SPEECH = [
    row(lambda m: transcribe(m.gpt, m.wave), InputError, "takes a speech model", "gpt-nano is not one",
        id="transcribe-text-model"),
    row(lambda m: transcribe(m.whisper, None), InputTypeError, "a path, a 16 kHz waveform", "NoneType",
        id="transcribe-none"),
    row(lambda m: transcribe(m.whisper, []), InputError, "empty list", "a path, a waveform",
        id="transcribe-empty-list"),
    row(lambda m: transcribe(m.whisper, m.files / "missing.wav"), MissingFileError, "missing.wav", "does not exist",
        id="transcribe-missing-file"),
    row(lambda m: transcribe(m.whisper, m.files / "folder"), InputError, "folder", "not a file",
        id="transcribe-directory"),
    row(lambda m: transcribe(m.whisper, m.files / "notes.wav"), InputError, "notes.wav", "not a readable audio file",
        "WAV", id="transcribe-not-audio"),
    row(lambda m: transcribe(m.whisper, m.files / "empty.wav"), InputError, "empty.wav", "not a readable audio file",
        id="transcribe-empty-file"),
    row(lambda m: transcribe(m.whisper, m.files / "silent.wav"), InputError, "silent.wav", "no audio samples",
        id="transcribe-zero-samples"),
    row(lambda m: transcribe(m.whisper, m.files / "nan.wav"), InputError, "nan.wav", "NaN", "finite",
        id="transcribe-nan-samples"),
    row(lambda m: transcribe(m.whisper, np.full(SAMPLE_RATE, np.nan, np.float32)), InputError, "NaN", "finite",
        id="transcribe-nan-array"),
    row(lambda m: transcribe(m.whisper, np.zeros(0, np.float32)), InputError, "no audio samples",
        id="transcribe-empty-array"),
    row(lambda m: transcribe(m.whisper, m.wave, task="summarize"), InputError, "task='summarize'",
        "'transcribe' or 'translate'", id="transcribe-unknown-task"),
    row(lambda m: transcribe(m.whisper, m.wave, language="xx"), InputError, "language='xx'", "de, en, es, fr, zh",
        id="transcribe-unknown-language"),
    row(lambda m: transcribe(m.whisper, m.wave, temperature=-1), InputError, "temperature", ">= 0",
        id="transcribe-negative-temperature"),
    row(lambda m: transcribe(m.whisper, m.wave, temperature=0, beam_size=0), InputError, "beam_size=0", ">= 1",
        id="transcribe-beam-size-zero"),
    row(lambda m: transcribe(m.whisper, m.wave, temperature=0.5, best_of=0), InputError, "best_of=0", ">= 1",
        id="transcribe-best-of-zero"),
    row(lambda m: transcribe(m.whisper, m.wave, temperature=0, best_of=3), InputError, "best_of=3",
        "temperature above 0", id="transcribe-best-of-at-temperature-zero"),
    row(lambda m: transcribe(m.whisper, m.wave, beam_sise=3), InputError, "unknown option(s) beam_sise",
        "beam_size", id="transcribe-unknown-option"),
    row(lambda m: transcribe(m.whisper, m.wave, prompt="hello"), InputError, "sets prompt itself", "initial_prompt=",
        id="transcribe-managed-option"),
    row(lambda m: transcribe(m.whisper, m.wave, initial_prompt=3), InputTypeError, "initial_prompt", "a str",
        id="transcribe-prompt-not-text"),
    row(lambda m: transcribe(m.whisper, m.wave, no_speech_threshold="high"), InputError, "no_speech_threshold",
        "a number or None", id="transcribe-threshold-not-a-number"),
    row(lambda m: DecodingOptions(sample_len=0), InputError, "sample_len", ">= 1", id="decoding-options-sample-len"),
    row(lambda m: decode(m.gpt, m.mel), InputError, "takes a speech model", "gpt-nano", id="decode-text-model"),
    row(lambda m: decode(m.whisper, m.mel, {"beam_size": 2}), InputTypeError, "DecodingOptions", "dict",
        id="decode-options-as-dict"),
    row(lambda m: decode(m.whisper, torch.zeros(80, 0)), InputError, "holds no frames", "at least one frame",
        id="decode-empty-mel"),
    row(lambda m: decode(m.whisper, torch.full((80, 100), math.nan)), InputError, "NaN", "finite",
        id="decode-nan-mel"),
    row(lambda m: decode(m.whisper, torch.zeros(80, 100, dtype=torch.long)), InputTypeError, "dtype", "floating",
        id="decode-integer-mel"),
    row(lambda m: decode(m.whisper, torch.zeros(100)), InputError, "shape (100,)", "(n_mels, T)",
        id="decode-1d-mel"),
    row(lambda m: detect_language(m.gpt, m.mel), InputError, "takes a speech model", "gpt-nano",
        id="detect-language-text-model"),
    row(lambda m: detect_language(m.whisper, torch.zeros(40, 100)), InputError, "(1, 40, 100)", "80",
        id="detect-language-wrong-mel-bins"),
]

VISION = [
    row(lambda m: classify(m.gpt, m.files / "drawing.png"), InputError, "image classifier", "gpt-nano is not one",
        id="classify-text-model"),
    row(lambda m: classify(m.alexnet, None), InputTypeError, "path of an image file", "NoneType",
        id="classify-none"),
    row(lambda m: classify(m.alexnet, m.files / "missing.png"), MissingFileError, "no image file", "missing.png",
        id="classify-missing-file"),
    row(lambda m: classify(m.alexnet, m.files / "folder"), MissingFileError, "no image file", "is a directory",
        id="classify-directory"),
    row(lambda m: classify(m.alexnet, m.files / "notes.png"), InputError, "cannot read image", "notes.png",
        "supported: .jpg", id="classify-not-an-image"),
    row(lambda m: classify(m.alexnet, m.files / "empty.png"), InputError, "cannot read image", "empty.png",
        id="classify-empty-file"),
    row(lambda m: classify(m.alexnet, m.files / "truncated.png"), InputError, "cannot read image", "truncated.png",
        id="classify-truncated-file"),
    row(lambda m: classify(m.alexnet, m.files / "drawing.png", top_k=0), InputError, "top_k", ">= 1",
        id="classify-top-k-zero"),
    row(lambda m: classify(m.alexnet, m.files / "drawing.png", top_k="3"), InputError, "top_k", "integer",
        id="classify-top-k-str"),
]


def draw(m, prompt=PROMPT, **options):
    return m.pipe(prompt, **{"num_inference_steps": 2, "progress": False, **options})


DIFFUSION = [
    row(lambda m: draw(m, None), InputError, "prompt must be a str", "NoneType", id="imagine-none"),
    row(lambda m: draw(m, []), InputError, "empty list", "non-empty list", id="imagine-empty-list"),
    row(lambda m: draw(m, "a purple unicorn"), InputError, "unicorn", "knows the caption words",
        id="imagine-unknown-word"),
    row(lambda m: draw(m, " ".join(["red"] * 100)), InputError, "100 words", "at most", id="imagine-too-many-words"),
    row(lambda m: draw(m, num_inference_steps=0), InputError, "num_inference_steps=0", "[1, 1000]",
        id="imagine-zero-steps"),
    row(lambda m: draw(m, height=33), InputError, "height=33", "multiple of 8", id="imagine-height-not-a-multiple"),
    row(lambda m: draw(m, width=0), InputError, "width=0", "positive multiple", id="imagine-zero-width"),
    row(lambda m: draw(m, guidance_scale=math.nan), InputError, "guidance_scale=nan", "finite number",
        id="imagine-guidance-nan"),
    row(lambda m: draw(m, guidance_scale="4"), InputError, "guidance_scale='4'", "finite number",
        id="imagine-guidance-str"),
    row(lambda m: draw(m, num_images_per_prompt=0), InputError, "num_images_per_prompt=0", ">= 1",
        id="imagine-zero-images"),
    row(lambda m: draw(m, scheduler="karras"), InputError, "unknown scheduler 'karras'", "flow-euler",
        id="imagine-unknown-scheduler"),
    row(lambda m: draw(m, scheduler="ddim"), InputError, "'ddim' does not sample", "flow-euler, dpm++",
        id="imagine-scheduler-of-another-objective"),
    row(lambda m: draw(m, output_type="jpeg"), InputError, "output_type='jpeg'", "pil, np, latent",
        id="imagine-output-type"),
    row(lambda m: draw(m, negative_prompt="a blue circle", guidance_scale=1.0), InputError, "negative_prompt",
        "guidance_scale > 1", id="imagine-negative-without-guidance"),
    row(lambda m: draw(m, generator=0), InputError, "generator", "torch.Generator", id="imagine-seed-as-generator"),
    row(lambda m: draw(m, latents=torch.zeros(1, 4, 2, 2)), InputError, "latents have shape", "allowed",
        id="imagine-latents-wrong-shape"),
    row(lambda m: TextToImagePipeline.from_pretrained(trained_dir("gpt-nano")), InputError, "GPT",
        "not a text-to-image DiT", id="pipeline-text-model"),
    row(lambda m: TextToImagePipeline.from_pretrained(trained_dir("dit-shapes"), device="gpu0"), InputError,
        "device='gpu0'", "'cpu', 'cuda'", id="pipeline-bad-device"),
]

TRAIN = [
    row(lambda m: train("gpt-nanoo"), InputError, "unknown model 'gpt-nanoo'", "gpt-nano", id="train-unknown-name"),
    row(lambda m: train("gpt-nano", steps=0), InputError, "train.steps", ">= 1", id="train-zero-steps"),
    row(lambda m: train("gpt-nano", sets=["model.backbone.n_layer=2"]), InputError, "'model.backbone.n_layer'",
        "n_layers", id="train-unknown-field"),
    row(lambda m: train("gpt-nano", lora="rank=8"), InputError, "bad LoRA option 'rank=8'", "r, alpha",
        id="train-bad-lora"),
    row(lambda m: train("gpt-nano", out=m.files), InputError, "not a zoo run", "drawing.png", "--resume",
        id="train-out-not-a-run"),
]


@pytest.mark.parametrize("call, error, words", LOAD + TEXT + SPEECH + VISION + DIFFUSION + TRAIN)
def test_the_api_refuses_bad_input_with_zoos_error_naming_what_is_allowed(m, call, error, words):
    with pytest.raises(ZooError) as caught:
        call(m)
    assert isinstance(caught.value, error), f"{type(caught.value).__name__}: {caught.value}"
    message = str(caught.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


# ----------------------------------------------------------------------------------------------------------
# the command line


def listing(*roots: Path) -> set[str]:
    """Every file and folder under the roots, hidden ones (temporaries) included."""
    return {str(path) for root in roots for path in root.rglob("*")}


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    try:
        status = main(argv)
    except SystemExit as exit:  # argparse's own refusals
        status = exit.code
    return status, capsys.readouterr().err


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """The working directory of a CLI row, holding a user's folder (not a run) and an empty folder."""
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("my own notes\n")
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def cli(argv: str, *words: str, marks=()):
    return pytest.param(argv, words, id=argv.replace("{files}/", ""), marks=marks)


GOOD_TRAIN = "train gpt-nano --out run --steps 1"

CLI = [
    cli("generate gpt-nanoo --prompt def", "unknown model 'gpt-nanoo'", "gpt-nano"),
    cli("generate {files} --prompt def", "not a zoo model directory", "config.json"),
    cli("generate whisper-cpu --prompt def", "takes a gpt model", "whisper-cpu is a whisper model"),
    cli("generate gpt-nano --prompt=", "prompt 0 is empty", "at least one character"),
    cli("generate gpt-nano --max-new-tokens 0 --prompt def", "max_new_tokens", ">= 1"),
    cli("generate gpt-nano --max-new-tokens 100000 --prompt def", "max_new_tokens (100000)", "at most 255"),
    cli("generate gpt-nano --temperature -1 --prompt def", "temperature", ">= 0"),
    cli("generate gpt-nano --top-k 0 --prompt def", "top_k", ">= 1"),
    cli("generate gpt-nano --top-k 0 --show-probs --prompt def", "top_k", ">= 1"),
    cli("generate gpt-nano --top-p 0 --prompt def", "top_p", "(0, 1]"),
    cli("generate gpt-nano --top-p 1.5 --prompt def", "top_p", "(0, 1]"),
    cli("generate gpt-nano --beam-size 0 --temperature 0 --prompt def", "beam_size", ">= 1"),
    cli("generate gpt-nano --beam-size 2 --prompt def", "beam_size", "temperature=0"),
    cli("generate gpt-nano --beam-size 2 --temperature 0 --stream --prompt def", "cannot stream", "beam_size=None"),
    cli("transcribe nope-model {files}/tone.wav", "unknown model 'nope-model'", "whisper-cpu"),
    cli("transcribe gpt-nano {files}/tone.wav", "takes a speech model", "gpt-nano is not one"),
    cli("transcribe whisper-cpu {files}/missing.wav", "missing.wav", "does not exist"),
    cli("transcribe whisper-cpu {files}/folder", "folder", "not a file"),
    cli("transcribe whisper-cpu {files}/notes.wav", "notes.wav", "not a readable audio file", "FLAC"),
    cli("transcribe whisper-cpu {files}/empty.wav", "empty.wav", "not a readable audio file"),
    cli("transcribe whisper-cpu {files}/silent.wav", "silent.wav", "no audio samples"),
    cli("transcribe whisper-cpu {files}/nan.wav", "nan.wav", "NaN", "finite"),
    cli("transcribe whisper-cpu {files}/tone.wav --language xx", "language='xx'", "de, en, es, fr, zh"),
    cli("transcribe whisper-cpu {files}/tone.wav --beam-size 0", "beam_size=0", ">= 1"),
    cli("transcribe whisper-cpu {files}/tone.wav --temperature 0.5 --best-of 0", "best_of=0", ">= 1"),
    cli("transcribe whisper-cpu {files}/tone.wav --temperature -1", "temperature", ">= 0"),
    cli("classify gpt-nano {files}/drawing.png", "image classifier", "gpt-nano is not one"),
    cli("classify alexnet-mini {files}/missing.png", "no image file", "missing.png"),
    cli("classify alexnet-mini {files}/folder", "no image file", "is a directory"),
    cli("classify alexnet-mini {files}/notes.png", "cannot read image", "supported: .jpg"),
    cli("classify alexnet-mini {files}/truncated.png", "cannot read image", "truncated.png"),
    cli("classify alexnet-mini {files}/drawing.png --top-k 0", "top_k", ">= 1"),
    cli("imagine gpt-nano red --out out/red.png", "GPT", "not a text-to-image DiT"),
    cli("imagine dit-shapes unicorn --out out/red.png", "unicorn", "knows the caption words"),
    cli("imagine dit-shapes red --out out/red.png --steps 0", "num_inference_steps=0", "[1, 1000]"),
    cli("imagine dit-shapes red --out out/red.png --height 33", "height=33", "multiple of 8"),
    cli("imagine dit-shapes red --out out/red.png --scheduler karras", "unknown scheduler 'karras'", "flow-euler"),
    cli("imagine dit-shapes red --out out/red.png --num-images 0", "--num-images 0", ">= 1"),
    cli("imagine dit-shapes red --out out/red.xyz", "'.xyz'", ".png, .jpg"),
    cli("imagine dit-shapes red --out empty", "is a directory", "an image file name"),
    cli("imagine dit-shapes red --out out/red.png --device gpu0", "device='gpu0'", "'cpu', 'cuda'"),
    cli("train gpt-nanoo", "unknown model 'gpt-nanoo'", "gpt-nano"),
    cli(f"{GOOD_TRAIN} --steps 0", "train.steps", ">= 1"),
    cli(f"{GOOD_TRAIN} --steps -3", "train.steps", ">= 1"),
    cli(f"{GOOD_TRAIN} --set bogus.x=1", "'bogus.x=1'", "section one of model, data, train"),
    cli(f"{GOOD_TRAIN} --set train.lr", "'train.lr'", "section.field=value"),
    cli(f"{GOOD_TRAIN} --set model.nofield=1", "unknown field 'model.nofield'", "allowed: vocab_size"),
    cli(f"{GOOD_TRAIN} --set model.n_layers=2", "'model.n_layers'", "model.backbone.n_layers"),
    cli(f"{GOOD_TRAIN} --set data.nofield=1", "unknown field 'data.nofield'", "allowed: tokenizer"),
    cli(f"{GOOD_TRAIN} --set train.lr=fast", "train.lr", "expects a number"),
    cli(f"{GOOD_TRAIN} --set train.batch_size=1.5", "train.batch_size", "expects an integer"),
    cli(f"{GOOD_TRAIN} --set train.lr=-1", "lr=-1.0", "lr > 0"),
    cli(f"{GOOD_TRAIN} --set train.precision=fp8", "precision='fp8'", "fp32, bf16, fp16"),
    cli(f"{GOOD_TRAIN} --set train.beta2=1", "train.beta2", "[0, 1)"),
    cli(f"{GOOD_TRAIN} --set train.warmup=-5", "train.warmup", ">= 0"),
    cli(f"{GOOD_TRAIN} --set train.max_nonfinite=0", "train.max_nonfinite", ">= 1"),
    cli(f"{GOOD_TRAIN} --set data.seq_len=0", "data.seq_len=0", ">= 1"),
    cli(f"{GOOD_TRAIN} --set model.backbone.n_layers=0", "n_layers", ">= 1"),
    cli(f"{GOOD_TRAIN} --set train.init_from=missing", "no model directory", "missing"),
    cli(f"{GOOD_TRAIN} --lora q=8", "bad LoRA option 'q=8'", "r, alpha, dropout, targets"),
    cli(f"{GOOD_TRAIN} --lora r=0", "LoRA rank r", ">= 1"),
    cli(f"{GOOD_TRAIN} --lora r=eight", "LoRA option r", "int"),
    cli(f"{GOOD_TRAIN} --data missing.txt", "missing.txt", "does not exist"),
    cli("train alexnet-mini --out run --set data.max_count=0", "max_count", ">= 1"),
    cli("train whisper-cpu --out run --set data.eval_beam_size=0", "data.eval_beam_size=0", ">= 1"),
    cli("train gpt-nano --out mine --steps 1", "--out mine exists and is not a zoo run", "notes.txt", "--resume"),
    cli("train gpt-nano --out mine --steps 1 --resume", "not a zoo run", "a new or empty directory"),
    cli("train gpt-nano --out mine/notes.txt --steps 1", "is a file", "a new or empty directory"),
    cli("eval nope-model", "unknown model 'nope-model'", "gpt-nano"),
    cli("eval {files}", "not a zoo model directory", "config.json"),
    cli("eval missing/run", "no model directory", "missing/run"),
    cli("reproduce nope-model", "no shipped weights named 'nope-model'", "shipped: alexnet-mini"),
    cli("reproduce gpt-nano --out mine", "not a zoo run", "notes.txt"),
    cli("demo --out mine", "holds files the demo does not write (notes.txt)", "a new or empty directory"),
    cli("demo --out mine/notes.txt", "is a file", "a directory"),
    cli("export nope-model out", "unknown model 'nope-model'", "gpt-nano"),
    cli("export gpt-nano mine", "not empty", "a new folder"),
]


@pytest.mark.parametrize("argv, words", CLI)
def test_the_cli_refuses_bad_input_with_one_line_and_no_files(workdir, files, zoo_home, argv, words, capsys):
    verb = argv.split()[0]
    before = listing(workdir, files, zoo_home)
    status, err = run_cli(argv.format(files=files).split(), capsys)
    assert status == 2, err
    assert err.startswith(f"zoo {verb}: error: ") and err.count("\n") == 1, err  # one line, no traceback
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"
    assert listing(workdir, files, zoo_home) == before  # nothing written, not even a temporary


ARGPARSE = [
    cli("train gpt-nano --steps many", "--steps", "invalid int value"),
    cli("generate gpt-nano --prompt def --temperature hot", "--temperature", "invalid float value"),
    cli("transcribe whisper-cpu {files}/tone.wav --task summarize", "--task", "choose from"),
    cli("export gpt-nano out --to onnx", "--to", "choose from"),
    cli("generate gpt-nano", "--prompt", "required"),
    cli("imagine dit-shapes red", "--out", "required"),
    cli("frobnicate", "invalid choice", "generate"),
]


@pytest.mark.parametrize("argv, words", ARGPARSE)
def test_argparse_refuses_malformed_command_lines_with_its_usage(workdir, files, argv, words, capsys):
    before = listing(workdir, files)
    status, err = run_cli(argv.format(files=files).split(), capsys)
    assert status == 2 and err.startswith("usage: zoo") and "Traceback" not in err
    for word in words:
        assert word in err
    assert listing(workdir, files) == before


# ----------------------------------------------------------------------------------------------------------
# where training may write, and output files that appear whole or not at all


def test_a_run_goes_into_a_new_or_empty_directory_or_a_previous_run(tmp_path):
    check_out_dir(tmp_path / "new")
    (tmp_path / "empty").mkdir()
    check_out_dir(tmp_path / "empty")
    previous = tmp_path / "previous"  # --resume continues it; without, the run starts over there
    (previous / "checkpoints").mkdir(parents=True)
    (previous / "log.jsonl").write_text("")
    check_out_dir(previous)
    dit_run = tmp_path / "dit"  # a DiT run interrupted after training its VAE, before its own first file
    (dit_run / "vae").mkdir(parents=True)
    (dit_run / "vae" / "train_config.json").write_text("{}")
    check_out_dir(dit_run)
    (dit_run / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a zoo run"):
        check_out_dir(dit_run)


def test_imagine_writes_its_image_whole_or_not_at_all(workdir, capsys, monkeypatch):
    argv = ["imagine", "dit-shapes", PROMPT, "--out", "out/circle.png", "--steps", "2"]
    assert main(argv) == 0
    image = Image.open("out/circle.png")
    assert image.size == (128, 128)  # 32 px, shown 4x
    before = listing(workdir)

    def fail_midway(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"\x89PNG half an image")
        raise OSError("No space left on device")

    monkeypatch.setattr(Image.Image, "save", fail_midway)
    with pytest.raises(OSError, match="No space left"):
        main([*argv[:4], "out/other.png", "--steps", "2"])
    assert listing(workdir) == before  # no other.png, no temporary beside it
