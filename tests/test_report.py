"""zoo.report: one self-contained HTML file, checked as text here and in a real headless Chromium.

`browser_check(path)` is the browser harness; other tests (the demo's) import it:
    from tests.test_report import browser_check
    assert browser_check(path)["problems"] == []
"""

import base64
import fcntl
import html
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image

from zoo.report import Report, _format

SAMPLE_RATE = 16000
TONE = (0.3 * np.sin(2 * np.pi * 440 * np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE)).astype(np.float32)  # 0.5 s, A4
HOSTILE = "<script>alert('x')</script>"  # user text that must come out as text, never as markup


class Tags(HTMLParser):
    """Every start tag with its attributes, in document order."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def all(self, name: str) -> list[dict]:
        return [attrs for tag, attrs in self.tags if tag == name]


def decode_data_uri(uri: str, mime: str) -> bytes:
    prefix = f"data:{mime};base64,"
    assert uri.startswith(prefix), uri[:60]
    return base64.b64decode(uri[len(prefix):], validate=True)


def build_report() -> tuple[Report, list[tuple[int, int]]]:
    """A report with every kind of block, and the (width, height) of each <img> it should contain, in order."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2, 1.5))
    figure.add_subplot().plot([0, 1, 2], [1, 0.5, 0.2])
    square = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    steps = np.arange(1, 101)

    report = Report("zoo demo", subtitle=f"test machine {HOSTILE}")
    report.text(f"An introduction with `code`, **bold** and {HOSTILE}.")
    report.section("The backbone").backbone_diagram(caption="one backbone")
    report.section("Targets").metrics_table([
        {"family": "text", "model": "gpt-nano", "metric": "val loss", "target": 1.5, "measured": 1.4213, "met": True},
        {"family": "diffusion", "model": "dit", "metric": "joint", "target": "80%", "measured": "34%", "met": False},
        {"family": "speech", "model": HOSTILE, "metric": "params", "target": None, "measured": 12345678, "met": None},
    ])
    report.section(f"Text {HOSTILE}")
    report.code(f"print({HOSTILE!r})", caption=HOSTILE)
    report.table(["token", "p"], [["the", 0.51234], [HOSTILE, 1.2e-5]], caption="next token")
    report.figure(figure, caption="a figure")
    report.loss_curves({"gpt": {"step": steps, "loss": 3 / np.sqrt(steps), "val_step": steps[::20],
                                "val_loss": 3.1 / np.sqrt(steps[::20])},
                        "signed": {"step": steps, "loss": np.linspace(-1, 1, 100)}}, caption="curves")
    report.section("Speech").audio(TONE, SAMPLE_RATE, caption="a tone",
                                   fields={"transcript": HOSTILE, "no-speech probability": 0.0123})
    report.section("Images").image(square, caption="a square")
    buffer = io.BytesIO()
    square.save(buffer, format="PNG")
    report.image_grid([(square, "circle", True), (buffer.getvalue(), HOSTILE, False), (square, "square", None)],
                      columns=3, caption="grid")
    curves = (2 * 4.2 * 120, 3 * 120)  # two panels of 4.2 x 3 inches at 120 dpi
    return report, [(240, 180), curves, (32, 32), (32, 32), (32, 32), (32, 32)]


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, list[tuple[int, int]]]:
    report, sizes = build_report()
    path = report.write(tmp_path_factory.mktemp("report") / "nested" / "report.html")
    return path, sizes


def test_the_report_is_one_file_that_fetches_nothing(written):
    path, _ = written
    assert path.is_file() and list(path.parent.iterdir()) == [path]  # the temporary file was renamed away
    text = path.read_text(encoding="utf-8")
    tags = Tags(text)
    links = [value for _, attrs in tags.tags for key, value in attrs.items() if key in ("src", "href")]
    assert links and not [v for v in links if not (v.startswith("data:") or v.startswith("#"))], links
    assert not tags.all("script") and not tags.all("link") and not tags.all("iframe")
    assert "@import" not in text and set(re.findall(r"url\((.)", text)) <= {"#"}  # only the SVG's own markers
    assert set(re.findall(r"https?://[^\s\"'<>)]*", text)) <= {"http://www.w3.org/2000/svg"}  # a name, not a fetch
    ids = [attrs["id"] for _, attrs in tags.tags if "id" in attrs]
    assert len(ids) == len(set(ids))
    assert {attrs["href"][1:] for attrs in tags.all("a")} == {attrs["id"] for attrs in tags.all("section")}


def test_images_are_png_data_uris_of_the_expected_size(written):
    path, sizes = written
    images = Tags(path.read_text(encoding="utf-8")).all("img")
    found = []
    for attrs in images:
        png = decode_data_uri(attrs["src"], "image/png")
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        found.append(Image.open(io.BytesIO(png)).size)
    assert found == sizes


def test_audio_is_a_wav_data_uri_that_decodes_to_the_same_samples(written):
    path, _ = written
    (audio,) = Tags(path.read_text(encoding="utf-8")).all("audio")
    assert "controls" in audio
    samples, rate = soundfile.read(io.BytesIO(decode_data_uri(audio["src"], "audio/wav")), dtype="float32")
    assert rate == SAMPLE_RATE and samples.shape == TONE.shape
    np.testing.assert_allclose(samples, TONE, atol=1.5 / 32767)  # 16-bit quantisation


def test_the_backbone_diagram_is_valid_svg_naming_every_family(written):
    path, _ = written
    svg = re.search(r"<svg\b.*?</svg>", path.read_text(encoding="utf-8"), re.S).group(0)
    root = ET.fromstring(svg)  # raises on anything that is not well-formed XML
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and root.get("viewBox")
    words = " ".join("".join(node.itertext()) for node in root.iter("{http://www.w3.org/2000/svg}text"))
    for name in ("GPT", "Whisper encoder", "Whisper decoder", "DiT", "ViT", "AlexNet", "KV cache", "2-D RoPE",
                 "adaLN-Zero", "Cross-attention", "GeGLU MLP", "RMSNorm / LayerNorm", "does not use the backbone"):
        assert name in words, name
    markers = {m.get("id") for m in root.iter("{http://www.w3.org/2000/svg}marker")}
    used = set(re.findall(r"url\(#([\w-]+)\)", svg))
    assert used and used <= markers


def test_user_text_is_escaped_and_badges_show_the_verdicts(written):
    path, _ = written
    text = path.read_text(encoding="utf-8")
    assert "<script" not in text.lower()
    assert text.count("&lt;script&gt;") >= 8  # subtitle, text, metrics, section, code, caption, table, grid, audio
    assert "<code>code</code>" in text and "<strong>bold</strong>" in text  # the markup text() does understand
    badges = re.findall(r'class="badge (\w+)"', text)
    assert badges == ["pass", "fail", "na"]
    assert ">80%<" in text and ">12,345,678<" in text and ">1.421<" in text


def test_values_are_formatted_sensibly():
    cases = {1234567: "1,234,567", 0.97312: "0.9731", 3.14159: "3.142", 123.456: "123.5", 12345.6: "12,346",
             1.2e-5: "1.2e-05", 0.0: "0", "97%": "97%", None: "\u2014", True: "yes", np.float32(0.5): "0.5",
             np.int64(7): "7"}
    assert {repr(k): _format(k) for k in cases} == {repr(k): v for k, v in cases.items()}


def test_write_replaces_an_existing_report_atomically(tmp_path):
    path = tmp_path / "a" / "b" / "report.html"
    first = Report("one").write(path)
    second = Report("two").write(path)
    assert first == second == path and "<title>two</title>" in path.read_text()
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]


# ---- the browser harness

# Put at the top of <head>: records uncaught errors (and failed image/audio loads: their 'error' events reach a
# capturing window listener) and console.error, waits for every <audio>'s metadata, then writes what it saw
# into <pre id="zoo-test-result"> for --dump-dom to carry out.
HARNESS = """<script>
(function () {
  var errors = [];
  window.addEventListener("error", function (event) {
    var t = event.target;
    if (t && t !== window && t.tagName) errors.push("failed to load <" + t.tagName.toLowerCase() + ">");
    else errors.push("uncaught: " + (event.message || event.error));
  }, true);
  window.addEventListener("unhandledrejection", function (event) { errors.push("unhandled: " + event.reason); });
  var consoleError = console.error;
  console.error = function () {
    errors.push("console.error: " + Array.prototype.join.call(arguments, " "));
    return consoleError.apply(console, arguments);
  };
  window.addEventListener("load", function () {
    var audios = Array.prototype.slice.call(document.querySelectorAll("audio"));
    Promise.all(audios.map(function (a) {
      return new Promise(function (done) {
        if (a.readyState >= 1 || a.error) return done();
        a.addEventListener("loadedmetadata", done);
        a.addEventListener("error", done);
        setTimeout(done, 10000);
      });
    })).then(function () {
      var result = {
        errors: errors,
        images: Array.prototype.map.call(document.images, function (i) {
          return {width: i.naturalWidth, height: i.naturalHeight, alt: i.alt};
        }),
        audio: audios.map(function (a) {
          return {duration: isFinite(a.duration) ? a.duration : String(a.duration), error: a.error && a.error.code};
        })
      };
      var pre = document.createElement("pre");
      pre.id = "zoo-test-result";
      pre.textContent = JSON.stringify(result);
      document.body.appendChild(pre);
    });
  });
})();
</script>
"""


def find_chromium(install: bool = True) -> str | None:
    """Chromium on PATH; failing that, as root with apt-get, Debian's `chromium` package installed."""
    names = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
    found = next((shutil.which(name) for name in names if shutil.which(name)), None)
    if found or not install or not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Two pytest-xdist workers may both get here: one installs, the other waits for it (apt holds the dpkg lock
    # and would refuse the second) and then finds the browser on PATH.
    with open(Path(tempfile.gettempdir()) / "zoo-chromium-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if found := find_chromium(install=False):  # the other worker installed it meanwhile
            return found
        try:
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=900, check=True)
            subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "chromium"], env=env,
                           capture_output=True, timeout=1800, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
    return find_chromium(install=False)


def browser_check(path, timeout: float = 180) -> dict:
    """Open the report at `path` in headless Chromium; returns what the page saw (errors, each image's natural
    size, each audio's duration) and "problems": every failed check as a sentence, [] for a clean report.
    Skips the calling test when Chromium can neither be found nor installed."""
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("Chromium could not be found on PATH (chromium, chromium-browser, google-chrome) nor installed; "
                    "install it with `apt-get install -y --no-install-recommends chromium` (Debian/Ubuntu) to run "
                    "the browser checks")
    text = Path(path).read_text(encoding="utf-8")
    # After <meta charset> when there is one, so the encoding is still declared within the first 1024 bytes.
    anchor = re.search(r"<meta\s+charset=[^>]*>", text, re.I) or re.search(r"<head[^>]*>", text, re.I)
    at = anchor.end() if anchor else 0
    with tempfile.TemporaryDirectory(prefix="zoo-browser-") as tmp:
        page = Path(tmp) / "page.html"
        page.write_text(text[:at] + HARNESS + text[at:], encoding="utf-8")
        dom, log = "", ""
        for headless in ("--headless=new", "--headless"):  # older Chromium knows only the plain flag
            run = subprocess.run([chromium, headless, "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                  "--no-first-run", "--mute-audio", f"--user-data-dir={tmp}/profile",
                                  "--autoplay-policy=no-user-gesture-required", "--virtual-time-budget=15000",
                                  "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=timeout)
            dom, log = run.stdout, run.stderr
            if 'id="zoo-test-result"' in dom:
                break
    match = re.search(r'<pre id="zoo-test-result">(.*?)</pre>', dom, re.S)
    if not match:
        return {"problems": [f"the page never reported (Chromium exit {run.returncode}): {log[-2000:]}"]}
    result = json.loads(html.unescape(match.group(1)))
    problems = list(result["errors"])
    problems += [f"image {i} ({img['alt']!r}) did not decode: {img['width']}x{img['height']}"
                 for i, img in enumerate(result["images"]) if not (img["width"] > 0 and img["height"] > 0)]
    problems += [f"audio {i} has no duration: {a['duration']} (media error {a['error']})"
                 for i, a in enumerate(result["audio"]) if not (isinstance(a["duration"], float | int)
                                                               and 0 < a["duration"] < float("inf"))]
    return {**result, "problems": problems}


@pytest.mark.slow
def test_the_report_renders_in_a_real_browser(written):
    path, sizes = written
    result = browser_check(path)
    assert result["problems"] == []
    assert [(img["width"], img["height"]) for img in result["images"]] == sizes
    assert len(result["audio"]) == 1 and result["audio"][0]["duration"] == pytest.approx(0.5, abs=0.01)


@pytest.mark.slow
def test_the_browser_harness_catches_a_broken_page(tmp_path):
    """The checks above can fail: a corrupt image, a silent audio element, console.error and a thrown error."""
    page = tmp_path / "broken.html"
    page.write_text('<!doctype html><html><head><meta charset="utf-8"></head><body>'
                    '<img src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB" alt="corrupt">'
                    '<audio controls src="data:audio/wav;base64,UklGRgAAAAA="></audio>'
                    '<script>console.error("boom"); throw new Error("kaboom");</script></body></html>')
    problems = "\n".join(browser_check(page)["problems"])
    for expected in ("failed to load <img>", "'corrupt'", "audio 0 has no duration", "console.error: boom",
                     "kaboom"):
        assert expected in problems, problems
