"""`zoo demo` on the shipped weights, as `make demo` runs it: every section works on fresh input, and the report
opens in a real browser with every picture and every clip intact."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_report import Tags, browser_check
from zoo.demo import DRAWINGS, IMAGE_PROMPTS, IMAGES_PER_PROMPT, TARGETS
from zoo.shipped import shipped_names

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "ZOO_HOME": str(out / "home")}
    env.pop("ZOO_WEIGHTS_DIR", None)
    run = subprocess.run([sys.executable, "-c", "import sys; from zoo.cli import main; sys.exit(main())", "demo",
                          "--out", str(out / "demo")], env=env, capture_output=True, text=True, timeout=1500)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return out / "demo", run.stdout


def test_every_shipped_model_works_on_fresh_input(demo):
    out, stdout = demo
    summary = json.loads((out / "summary.json").read_text())
    names = shipped_names()
    if "gpt-nano" in names:
        assert 0.0 <= summary["text"]["parse_rate"] <= 1.0
        assert summary["lora"]["val_loss_after"] < summary["lora"]["val_loss_before"]  # the fine-tune learnt
    if "whisper-cpu" in names:
        assert summary["speech"]["silence_left_empty"]
        assert summary["speech"]["language_correct"] >= 0.8  # language ID is 100% on the test split
    if "dit-shapes" in names:
        assert 0.0 <= summary["diffusion"]["joint"] <= 1.0 and summary["diffusion"]["colour"] >= 0.5
    if "alexnet-mini" in names:
        assert summary["vision"]["alexnet-mini"] >= 0.95  # 99% on validation; these drawings are new
    assert "the report:" in stdout


def test_the_report_opens_in_a_browser_with_every_image_and_clip(demo):
    out, _ = demo
    path = out / "report.html"
    tags = Tags(path.read_text(encoding="utf-8"))
    names = shipped_names()
    if "whisper-cpu" in names:
        assert len(tags.all("audio")) == 6  # five languages and the silence
    if "dit-shapes" in names:
        assert len(tags.all("img")) >= IMAGE_PROMPTS * IMAGES_PER_PROMPT
    result = browser_check(path)
    assert result["problems"] == []


def test_the_metrics_table_names_every_target(demo):
    out, _ = demo
    text = (out / "report.html").read_text(encoding="utf-8")
    for target in TARGETS:
        assert target.label in text
    assert f"{DRAWINGS} new drawings" in text or "alexnet-mini" not in shipped_names()
    assert Path(out / "lora_corpus.py").is_file() or "gpt-nano" not in shipped_names()
