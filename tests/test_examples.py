"""Every script under examples/ runs as its docstring says, in its quick mode, as a process of its own: it exits 0
and leaves or prints what it promises (a model directory, figures that parse, a PNG, ...).

The scripts that need a trained model get it from the example that trains one (text/train.py, speech/train.py).
One ZOO_HOME for the module, so the speech corpus `make_corpus.py --quick` builds is the one `train.py --quick`
finds in the cache, as it would be for a user running the two in turn.
"""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"
NUMBER = r"(-?[\d.]+|nan|inf)"


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("examples_home")


def run(home: Path, *args, timeout: int = 600) -> str:
    """`python ARGS...` from the repository root, as the docstrings write it; its stdout."""
    # The test-only family plugin (conftest's ZOO_FAMILIES) imports from the repository root, which a script's
    # sys.path does not hold; the examples need only zoo's own families. TMPDIR: where classify.py draws its image.
    env = {key: value for key, value in os.environ.items() if key != "ZOO_FAMILIES"}
    env.update(ZOO_HOME=str(home), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", TMPDIR=str(home))
    result = subprocess.run([sys.executable, *map(str, args)], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, args))}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result.stdout


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG


def printed_metrics(output: str) -> dict[str, float]:
    """The `            key: 0.123` lines the train scripts print."""
    return {key: float(value) for key, value in re.findall(rf"^\s*(\w+): {NUMBER}$", output, re.M)}


def test_every_example_is_run_here():
    scripts = {str(p.relative_to(REPO / "examples")) for p in (REPO / "examples").rglob("*.py")}
    assert scripts == {"text/train.py", "text/sample.py", "text/next_token.py", "text/lora.py",
                       "vision/train_both.py", "vision/classify.py", "speech/make_corpus.py", "speech/train.py",
                       "speech/transcribe.py", "speech/levers.py", "diffusion/train.py", "diffusion/levers.py",
                       "distributed/two_nodes.py"}


# ----------------------------------------------------------------------------------------------------- text


@pytest.fixture(scope="module")
def gpt_dir(home, corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("text") / "gpt"
    output = run(home, "examples/text/train.py", corpus, out, "--steps", "10")
    loss, perplexity = map(float, re.search(rf"validation loss {NUMBER}, perplexity {NUMBER}", output).groups())
    assert 0 < loss < 5 and perplexity == pytest.approx(math.exp(loss), rel=0.5)
    return out


@pytest.mark.slow
def test_text_train_sample_and_next_token(home, gpt_dir):
    assert (gpt_dir / "model.safetensors").is_file() and is_png(gpt_dir / "loss.png")
    assert "parse_rate" not in json.loads((gpt_dir / "metrics.json").read_text())  # not a code model

    output = run(home, "examples/text/sample.py", gpt_dir, "the ")
    streamed, batched = output.split("-" * 60)
    assert streamed.startswith("the ") and len(streamed) > len("the ")
    assert len(re.findall(r"-> '.*' \(\d+ tokens/s\)", batched)) == 3  # three ragged prompts decoded together

    output = run(home, "examples/text/next_token.py", gpt_dir, "the ")
    probabilities = [float(p) for p in re.findall(r"([\d.]+)%", output)]
    assert len(probabilities) == 10 and probabilities == sorted(probabilities, reverse=True)
    assert 0 < sum(probabilities) <= 100.5


@pytest.mark.slow
def test_text_lora_fine_tune(home, gpt_dir, tmp_path):
    import random

    rng = random.Random(1)  # a new style in the base's characters (a char-level base knows no others)
    words = "the loss falls as the model learns the context".split()
    style = tmp_path / "style.txt"
    style.write_text("\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(3, 6))) + "."
                               for _ in range(300)) + "\n")
    out = tmp_path / "lora"
    output = run(home, "examples/text/lora.py", gpt_dir, style, out, "--steps", "20", "--rank", "4", "--alpha", "8")
    before, after = map(float, re.search(rf"validation loss {NUMBER} -> {NUMBER}", output).groups())
    base_line = re.search(rf"validation loss on .* {NUMBER}$", output, re.M)
    assert float(base_line.group(1)) == before and after < before  # the adapters learnt the new style
    assert (out / "adapter" / "adapter_model.safetensors").is_file() and (out / "model.safetensors").is_file()
    assert json.loads((out / "train_config.json").read_text())["train"]["lora"] == "r=4,alpha=8"
    assert output.split("-" * 60)[-1].strip()  # a sample from the merged model


# --------------------------------------------------------------------------------------------------- vision


@pytest.mark.slow
def test_vision_train_both_and_classify(home, tmp_path):
    output = run(home, "examples/vision/train_both.py", "--quick", "--out", tmp_path)
    rows = dict(re.findall(r"^(alexnet-mini|vit-nano)\s+([\d.]+)%\s+[\d.]+%$", output, re.M))
    assert set(rows) == {"alexnet-mini", "vit-nano"} and all(0 <= float(v) <= 100 for v in rows.values())
    for name in rows:
        assert (tmp_path / name / "model.safetensors").is_file() and is_png(tmp_path / name / "confusion_matrix.png")

    from zoo.data.shapes import ShapesDataset

    image = tmp_path / "drawing.png"
    ShapesDataset(n=1, seed=7).pil(0).save(image)
    for args in ([image], ["--shape", "3"]):
        output = run(home, "examples/vision/classify.py", tmp_path / "alexnet-mini", *args)
        probabilities = [float(p) for p in re.findall(r"^\w+\s+([\d.]+)%$", output, re.M)]
        assert len(probabilities) == 5 and 0 < sum(probabilities) <= 100.5
    assert "drew: a " in output


# --------------------------------------------------------------------------------------------------- speech


@pytest.fixture(scope="module")
def speech_corpus(home, tmp_path_factory) -> tuple[Path, Path]:
    samples = tmp_path_factory.mktemp("speech") / "samples"
    output = run(home, "examples/speech/make_corpus.py", "--quick", "--out", samples)
    corpus = Path(re.search(r"corpus in (.+); samples in", output).group(1))
    assert (corpus / "train.jsonl").is_file() and corpus.parent == home / "cache" / "speech"
    return corpus, samples


@pytest.fixture(scope="module")
def speech_dir(home, speech_corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("speech") / "run"
    output = run(home, "examples/speech/train.py", out, "--quick")
    metrics = printed_metrics(output)
    assert len(metrics) == 8 and 0 <= metrics["language_accuracy"] <= 1
    assert len(list((home / "cache" / "speech").glob("speech-*"))) == 1  # make_corpus.py's corpus, reused
    return out


@pytest.mark.slow
def test_speech_corpus_train_and_transcribe(home, speech_corpus, speech_dir):
    _, samples = speech_corpus
    wavs = sorted(samples.glob("*.wav"))
    assert wavs and all(w.read_bytes()[:4] == b"RIFF" for w in wavs)
    assert (speech_dir / "model.safetensors").is_file() and is_png(speech_dir / "language_confusion.png")

    output = run(home, "examples/speech/transcribe.py", speech_dir, wavs[0])
    assert re.match(rf"{re.escape(str(wavs[0]))} \[(en|es|fr|de|zh)\]: ", output)


@pytest.mark.slow
def test_speech_levers(home, speech_corpus, speech_dir):
    corpus, _ = speech_corpus
    for targets in ("bytes", "chars"):
        output = run(home, "examples/speech/levers.py", "ctc-targets", corpus, "--steps", "1", "--batch-size", "8",
                     "--targets", targets)
        loss, cer = map(float, re.search(rf"step 1: validation CTC {NUMBER} per target, greedy CER {NUMBER} \(",
                                         output).groups())
        assert loss > 0 and cer >= 0
    output = run(home, "examples/speech/levers.py", "grouping", corpus, "--steps", "1")
    rows = re.findall(r"^(random|grouped): ([\d.]+) s per step, (\d+) padded mel frames per batch$", output, re.M)
    assert [name for name, _, _ in rows] == ["random", "grouped"] * 2 and all(float(s) > 0 for _, s, _ in rows)
    output = run(home, "examples/speech/levers.py", "joint", corpus, speech_dir, "--clips", "4", "--threads", "1",
                 "--search", "0,0,16", "5,0.3,4")
    rows = re.findall(rf"^beams (\d) ctc_weight ([\d.]+) candidates (\d+): .* mean {NUMBER}", output, re.M)
    assert [row[:3] for row in rows] == [("0", "0", "16"), ("5", "0.3", "4")] and all(float(r[3]) >= 0 for r in rows)
    output = run(home, "examples/speech/levers.py", "mandarin", corpus, speech_dir, "--splits", "val", "test",
                 "test_unseen", "--threads", "1")
    counts = re.findall(r"CER [\d.]+; substitutions (\d+) \((\d+) between", output)
    splits = re.findall(r"^\w+: \d+ Mandarin clips", output, re.M)
    assert len(counts) == 2 * len(splits) > 0  # joint decoding and the CTC head alone, for each split with some
    assert all(int(alike) <= int(total) for total, alike in counts)


# ------------------------------------------------------------------------------------------------ diffusion


@pytest.mark.slow
def test_diffusion_train_and_draw(home, tmp_path):
    out = tmp_path / "diffusion"
    output = run(home, "examples/diffusion/train.py", out, "--quick")
    metrics = printed_metrics(output)
    assert {"gen_joint", "gen_heldout_joint", "vae_joint", "real_joint", "fid", "kid"} <= set(metrics)
    assert 0 <= metrics["gen_joint"] <= 1
    for folder in (out, out / "vae", out / "judge"):
        assert (folder / "model.safetensors").is_file(), folder
    assert is_png(out / "prompts.png") and is_png(out / "samples.png")
    assert "8 prompts, 4 images each" in output

    # levers: the default setting draws exactly what the training run's evaluation drew (its prompts, seeds and
    # batches), so it scores the same; a changed sampler still runs through the pipeline's own steps
    changed = "shift=3 guidance=6 interval=0.25-4"
    guides = ["skip=1 skip_scale=2", f"weak={out} weak_scale=3"]  # skip-layer guidance; autoguidance by itself
    output = run(home, "examples/diffusion/levers.py", "sampler", out, "--setting", "", changed, "scheduler=dpm++",
                 *guides)
    rows = re.findall(r"^setting '(.*)': test \((\d+)\): shape ([\d.]+) colour ([\d.]+) joint ([\d.]+); "
                      r"test_heldout \((\d+)\): shape ([\d.]+) colour ([\d.]+) joint ([\d.]+)", output, re.M)
    assert [row[0] for row in rows] == ["", changed, "scheduler=dpm++", *guides]
    default = [float(value) for value in rows[0][2:5] + rows[0][6:9]]
    recorded = json.loads((out / "metrics.json").read_text())
    assert default == pytest.approx([recorded[f"{prefix}_{name}"] for prefix in ("gen", "gen_heldout")
                                     for name in ("shape", "colour", "joint")], abs=1e-3)
    # autoguidance by the model itself guides away from its own prediction: zero, so the default's figures again
    assert [float(value) for value in rows[4][2:5] + rows[4][6:9]] == pytest.approx(default, abs=1e-3)
    output = run(home, "examples/diffusion/levers.py", "renoise", out, "--prompts", "8", "--levels", "0.2", "0.9",
                 "--guidance", "1")
    levels = re.findall(r"^from s=([\d.]+) \(sigma [\d.]+\): shape ([\d.]+) colour [\d.]+ joint ([\d.]+)", output,
                        re.M)
    assert [level for level, _, _ in levels] == ["0.2", "0.9"]
    output = run(home, "examples/diffusion/levers.py", "shapes", out, "--out", out)
    counts = re.findall(r"^ *(\w+): (\d+)/(\d+)$", output, re.M)
    prompts = int(re.search(r"test split, (\d+) prompts", output).group(1))
    assert counts and sum(int(total) for _, _, total in counts) == prompts
    assert is_png(out / "generated_shape_confusion.png")
    # vaes: the run's own VAE on the evaluation's test scenes is the evaluation's vae_* figures
    output = run(home, "examples/diffusion/levers.py", "vaes", out, out / "vae")
    rows = re.findall(r" on (test|test_heldout) \((\d+)\): shape ([\d.]+) colour ([\d.]+) joint ([\d.]+) PSNR "
                      r"([\d.]+) dB", output)
    assert [row[0] for row in rows] == ["test", "test_heldout"]
    assert [float(value) for value in rows[0][2:5]] == pytest.approx(
        [recorded[f"vae_{name}"] for name in ("shape", "colour", "joint")], abs=1e-3)


# ---------------------------------------------------------------------------------------------- distributed


@pytest.mark.slow
def test_two_nodes(home, tmp_path):
    output = run(home, "examples/distributed/two_nodes.py", "--host", "10.0.0.1", "--nproc-per-node", "8",
                 "--out", "/shared/runs/gpt")
    commands = [line for line in output.splitlines() if line.startswith("torchrun ")]
    assert len(commands) == 2 and all("--nnodes=2 --nproc_per_node=8" in c for c in commands)
    assert ["--node_rank=0" in commands[0], "--node_rank=1" in commands[1]] == [True, True]
    assert all("--rdzv-endpoint=10.0.0.1:29500" in c and "train.strategy=fsdp" in c for c in commands)

    out = tmp_path / "two-nodes"
    output = run(home, "examples/distributed/two_nodes.py", "--local", "--out", out)
    assert "node 0: finished" in output and "node 1: finished" in output
    assert "both nodes finished" in output and "trained by 2 ranks" in output
    assert (out / "model.safetensors").is_file()
    assert json.loads((out / "train_config.json").read_text())["world_size"] == 2
