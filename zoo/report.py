"""A self-contained HTML report: one file with every image, sound and style inside it, nothing fetched.

    report = Report("zoo demo", subtitle="2 CPU cores, 2025-01-01")
    report.section("Text: gpt-nano")
    report.metrics_table([{"family": "text", "model": "gpt-nano", "metric": "val loss", "target": 1.5,
                           "measured": 1.42, "met": True}])
    report.audio(waveform, 16000, fields={"transcript": "hello"})
    report.write("runs/demo/report.html")

Images become PNG data URIs, sounds 16-bit PCM WAV data URIs, the backbone picture an inline SVG: the file
opens anywhere (mail attachment, offline, file://) and no JavaScript is needed to show any of it.
"""

import base64
import html
import io
import os
import re
import wave
from datetime import datetime
from numbers import Integral, Real
from pathlib import Path

import numpy as np

esc = html.escape
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Restrained, colour-blind-friendly accents; the backbone diagram and nothing else uses them.
FAMILY_COLOURS = {"GPT": "#3b6ea8", "Whisper": "#7a5aa6", "DiT": "#b8683a", "ViT": "#2f8a68", "AlexNet": "#8a9099"}

CSS = """
:root{--fg:#1f2430;--muted:#5d6675;--line:#e3e7ee;--bg:#f7f8fa;--accent:#3b5bdb}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
 font:16px/1.6 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header{background:#fff;border-bottom:1px solid var(--line);border-top:4px solid var(--accent)}
header>div,main{max-width:1080px;margin:0 auto;padding:1.75rem 1.5rem 1.25rem}
header h1{margin:0;font-size:2rem;letter-spacing:-.02em}
header p{margin:.2rem 0 0;color:var(--muted)}
nav.toc,section{background:#fff;border:1px solid var(--line);border-radius:12px;padding:1.1rem 1.5rem 1.4rem;
 margin:0 0 1.75rem}
nav.toc h2{margin:0;font-size:1rem;text-transform:uppercase;letter-spacing:.06em;color:var(--muted)}
nav.toc ol{margin:.4rem 0 0;padding-left:1.4rem;columns:2 18rem}
a{color:var(--accent);text-decoration:none}a:hover{text-decoration:underline}
section>h2{margin:0 0 1rem;font-size:1.35rem;padding-bottom:.45rem;border-bottom:1px solid var(--line)}
figure{margin:1.25rem 0}
figcaption,caption{color:var(--muted);font-size:.9rem;margin-top:.35rem;text-align:left;caption-side:bottom}
.table-wrap{overflow-x:auto;margin:1rem 0}
table{border-collapse:collapse;width:100%;font-size:.93rem;font-variant-numeric:tabular-nums}
th,td{padding:.45rem .7rem;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:#f3f5f9;font-weight:600}
th.num,td.num{text-align:right}
tbody tr:hover{background:#f9fafc}
.badge{display:inline-block;padding:0 .6rem;border-radius:999px;font-size:.8rem;font-weight:600;white-space:nowrap}
.badge.pass{background:#e3f5e8;color:#1d7a35}.badge.fail{background:#fde7e7;color:#c22b2b}
.badge.na{background:#eef0f3;color:#5f6670}
pre{background:#f6f8fa;border:1px solid var(--line);border-radius:8px;padding:.9rem 1rem;overflow-x:auto;
 font-size:.85rem;line-height:1.5;margin:0}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace}
p code{background:#f1f3f6;padding:.05rem .3rem;border-radius:4px;font-size:.88em}
img{max-width:100%;height:auto}
img.pixel{image-rendering:pixelated}
.grid{display:grid;grid-template-columns:repeat(var(--cols),minmax(0,1fr));gap:.9rem}
@media (max-width:720px){.grid{grid-template-columns:repeat(2,minmax(0,1fr))}section,nav.toc{padding:.9rem 1rem}}
.cell{margin:0;border:3px solid #ced4da;border-radius:10px;padding:.4rem;background:#fff;text-align:center}
.cell.pass{border-color:#51b86a}.cell.fail{border-color:#e5575b}
.cell img{width:100%;border-radius:6px;display:block}
.cell figcaption{font-size:.85rem;color:var(--fg);line-height:1.35}
.mark{font-weight:700;margin-right:.3rem}.pass .mark{color:#1d7a35}.fail .mark{color:#c22b2b}
.audio-row{display:flex;flex-wrap:wrap;gap:.75rem 2rem;align-items:flex-start}
audio{width:min(100%,340px)}
dl.fields{margin:0;display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;font-size:.93rem}
dl.fields dt{color:var(--muted)}dl.fields dd{margin:0}
svg.diagram{width:100%;height:auto;display:block}
footer{color:var(--muted);font-size:.85rem;text-align:center;padding:0 0 2.5rem}
"""


class Report:
    """Blocks go, in order, into the current section; `write` renders the whole page."""

    def __init__(self, title: str = "zoo report", subtitle: str | None = None):
        self.title, self.subtitle = title, subtitle
        self.sections: list[tuple[str | None, str, list[str]]] = [(None, "intro", [])]  # blocks before any section

    def section(self, title: str) -> "Report":
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"
        self.sections.append((title, f"s{len(self.sections)}-{slug}", []))  # numbered: ids stay unique
        return self

    def _add(self, block: str) -> "Report":
        self.sections[-1][2].append(block)
        return self

    # ---- text, code and tables

    def text(self, paragraph: str) -> "Report":
        """Escaped paragraphs (split at blank lines); `code` and **bold** are the only markup understood."""
        parts = []
        for chunk in re.split(r"\n\s*\n", paragraph.strip()):
            chunk = re.sub(r"`([^`]+)`", r"<code>\1</code>", esc(chunk))
            parts.append("<p>" + re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", chunk) + "</p>")
        return self._add("\n".join(parts))

    def code(self, source: str, caption: str | None = None, language: str = "python") -> "Report":
        body = f'<pre><code class="language-{esc(language)}">{esc(source)}</code></pre>'
        return self._add(f"<figure>{body}{_caption(caption)}</figure>")

    def table(self, header: list, rows: list[list], caption: str | None = None) -> "Report":
        numeric = [all(_is_number(row[i]) or row[i] in ("", None) for row in rows) and any(_is_number(row[i])
                   for row in rows) for i in range(len(header))]  # right-aligned, header too, so digits line up
        return self._add(_table(header, rows, numeric, caption))

    def metrics_table(self, rows: list[dict], caption: str | None = None) -> "Report":
        """Targets against measurements; "met" (True / False / None) becomes a pass / fail / n/a badge. A
        "shipped" entry in any row (a retrained model's figure beside the shipped weights') adds that column."""
        columns = ("family", "model", "metric", "target", "measured")
        columns += ("shipped",) if any("shipped" in row for row in rows) else ()
        cells = [[row.get(c, "") for c in columns] + [_Raw(_badge(row.get("met")))] for row in rows]
        numeric = [False, False, False] + [True] * (len(columns) - 3) + [False]
        return self._add(_table([*columns, "met"], cells, numeric, caption))

    # ---- pictures

    def image(self, image, caption: str | None = None, width: int | None = None) -> "Report":
        """PNG bytes, a PIL image, a numpy array, a matplotlib figure or a path to an image file."""
        png, w, _ = _to_png(image)
        pixel = width is None and w < 160  # tiny images (32x32 shapes) are shown enlarged, with crisp pixels
        width = width or (w * max(1, 160 // w) if pixel else None)
        style = f' style="width:{int(width)}px"' if width else ""
        cls = ' class="pixel"' if pixel else ""
        img = f'<img src="{_data_uri(png, "image/png")}" alt="{esc(caption or "")}"{cls}{style}>'
        return self._add(f"<figure>{img}{_caption(caption)}</figure>")

    def figure(self, figure, caption: str | None = None) -> "Report":
        """A matplotlib figure, rendered to PNG at 120 dpi (the one resolution of every figure in a report)."""
        return self.image(figure, caption)

    def curve(self, steps, values, label: str = "loss", caption: str | None = None, ylabel: str = "loss",
              log: bool = True) -> "Report":
        return self.loss_curves({label: {"step": steps, "loss": values}}, caption, ylabel=ylabel, log=log)

    def loss_curves(self, curves: dict[str, dict], caption: str | None = None, ylabel: str = "loss",
                    log: bool = True) -> "Report":
        """One panel per model: its training loss and, where given, the validation loss on a log y axis."""
        from matplotlib.figure import Figure

        columns = min(3, max(1, len(curves)))
        rows = -(-len(curves) // columns)
        figure = Figure(figsize=(4.2 * columns, 3.0 * rows), layout="constrained")
        for i, (name, curve) in enumerate(curves.items()):
            ax = figure.add_subplot(rows, columns, i + 1)
            series = [(curve.get("step"), curve.get("loss"), "train", "#3b6ea8", "-"),
                      (curve.get("val_step"), curve.get("val_loss"), "validation", "#d9534f", "o-")]
            plotted = [(x, y) for x, y, *_ in series if y is not None and len(y)]
            for x, y, label, colour, style in series:
                if y is not None and len(y):
                    ax.plot(x if x is not None else range(len(y)), y, style, color=colour, label=label,
                            lw=1.4, ms=3.5)
            values = np.concatenate([np.asarray(y, dtype=float).ravel() for _, y in plotted]) if plotted else None
            if log and values is not None and np.nanmin(values) > 0:  # log would silently drop values <= 0
                _log_axis(ax, np.nanmin(values), np.nanmax(values))
            ax.set_title(name, fontsize=11)
            ax.set_xlabel("step")
            ax.set_ylabel(ylabel)
            ax.grid(True, which="major", alpha=0.3)
            ax.grid(True, which="minor", alpha=0.12)
            if len(plotted) > 1:
                ax.legend(frameon=False, fontsize=8)
        return self.figure(figure, caption)

    def image_grid(self, items, columns: int = 4, caption: str | None = None) -> "Report":
        """items: (image, label, verdict); verdict True / False / None -> green tick / red cross / grey border."""
        cells = []
        for image, label, *rest in items:
            verdict = rest[0] if rest else None
            png, w, _ = _to_png(image)
            kind, mark = {True: ("pass", "&#10003;"), False: ("fail", "&#10007;")}.get(verdict, ("", ""))
            mark_html = f'<span class="mark">{mark}</span>' if mark else ""
            cls = ' class="pixel"' if w < 160 else ""
            cells.append(f'<figure class="cell {kind}"><img src="{_data_uri(png, "image/png")}" alt="{esc(label)}"'
                         f"{cls}><figcaption>{mark_html}{esc(label)}</figcaption></figure>")
        grid = f'<div class="grid" style="--cols:{int(columns)}">{"".join(cells)}</div>'
        return self._add(f"<figure>{grid}{_caption(caption)}</figure>")

    def backbone_diagram(self, caption: str | None = None) -> "Report":
        return self._add(f"<figure>{backbone_svg()}{_caption(caption)}</figure>")

    # ---- sound

    def audio(self, waveform, sample_rate: int, caption: str | None = None, fields: dict | None = None) -> "Report":
        """A float waveform in [-1, 1] ((T,), or (C, T) / (T, C)) as an embedded 16-bit WAV with a player."""
        wav, seconds = _wav_bytes(waveform, sample_rate)
        info = f"{seconds:.2f} s, {sample_rate / 1000:g} kHz"
        player = f'<audio controls preload="metadata" src="{_data_uri(wav, "audio/wav")}"></audio>'
        rows = "".join(f"<dt>{esc(str(k))}</dt><dd>{esc(_format(v))}</dd>"
                       for k, v in (fields or {}).items())
        dl = f'<dl class="fields">{rows}</dl>' if rows else ""
        text = f"{caption} ({info})" if caption else info
        return self._add(f'<figure class="audio"><div class="audio-row">{player}{dl}</div>{_caption(text)}</figure>')

    # ---- output

    def html(self) -> str:
        named = [(title, anchor) for title, anchor, _ in self.sections if title]
        toc = "".join(f'<li><a href="#{anchor}">{esc(title)}</a></li>' for title, anchor in named)
        body = ["\n".join(self.sections[0][2])]
        if toc:
            body.append(f'<nav class="toc"><h2>Contents</h2><ol>{toc}</ol></nav>')
        for title, anchor, blocks in self.sections[1:]:
            body.append(f'<section id="{anchor}"><h2>{esc(title)}</h2>\n' + "\n".join(blocks) + "</section>")
        subtitle = f"<p>{esc(self.subtitle)}</p>" if self.subtitle else ""
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M")
        return (f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
                f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
                f"<title>{esc(self.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
                f"<header><div><h1>{esc(self.title)}</h1>{subtitle}</div></header>\n<main>\n"
                + "\n".join(body) + f"\n</main>\n<footer>written by zoo.report, {stamp}</footer>\n</body>\n</html>\n")

    def write(self, path) -> Path:
        """Written to a temporary file beside `path`, then renamed: a reader never sees half a report."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # same folder: the rename cannot cross disks
        try:
            tmp.write_text(self.html(), encoding="utf-8")  # plain open(): the umask's permissions, unlike mkstemp
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path


# ---- helpers


def _caption(text: str | None) -> str:
    return f"<figcaption>{esc(text)}</figcaption>" if text else ""


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _format(value) -> str:
    """Numbers to a sensible width (1,234 / 0.9731 / 3.142 / 1.2e-05); strings (such as "97%") as given."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            value = value.item()  # numpy and torch scalars
        except (ValueError, RuntimeError):  # an array of several values: shown as str() shows it
            pass
    if value is None:
        return "\u2014"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Integral):
        return f"{value:,}"
    if isinstance(value, Real):
        size = abs(value)
        if value == 0 or value != value or size == float("inf"):
            return "0" if value == 0 else str(value)
        if size >= 1e6 or size < 1e-3:
            return f"{value:.3g}"
        return f"{value:,.0f}" if size >= 1e4 else f"{value:.4g}"
    return str(value)


class _Raw(str):
    """Markup made here (a badge), put into a table cell unescaped."""


def _is_number(value) -> bool:
    return isinstance(value, Real | np.generic) and not isinstance(value, bool)


def _table(header: list, rows: list[list], numeric: list[bool], caption: str | None) -> str:
    align = lambda i: ' class="num"' if numeric[i] else ""
    head = "".join(f"<th{align(i)}>{esc(str(h))}</th>" for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f"<td{align(i)}>{v if isinstance(v, _Raw) else esc(_format(v))}</td>"
                                    for i, v in enumerate(row)) + "</tr>" for row in rows)
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return (f'<div class="table-wrap"><table>{cap}<thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def _badge(met) -> str:
    kind, text = {True: ("pass", "&#10003; met"), False: ("fail", "&#10007; not met")}.get(met, ("na", "n/a"))
    return f'<span class="badge {kind}">{text}</span>'


def _log_axis(ax, low: float, high: float) -> None:
    """A log y axis labelled 0.3, 2, 40 rather than 3 x 10^-1; in-between ticks labelled when few decades show."""
    from matplotlib.ticker import FuncFormatter

    ax.set_yscale("log")
    digits = set(range(1, 10)) if high / low < 3 else {2, 3, 5} if high / low < 30 else set()
    leading = lambda v: round(v / 10 ** np.floor(np.log10(v))) if v > 0 else 0
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if leading(v) in digits else ""))


def _to_png(image) -> tuple[bytes, int, int]:
    """(PNG bytes, width, height) of PNG/JPEG bytes, a PIL image, an array, a matplotlib figure or a path."""
    from PIL import Image

    if hasattr(image, "savefig"):  # a matplotlib figure, at the report's one resolution
        buffer = io.BytesIO()
        image.savefig(buffer, format="png", dpi=120, facecolor="white")
        image = buffer.getvalue()
    if isinstance(image, str | Path):
        image = Path(image).read_bytes()
    if isinstance(image, bytes | bytearray):
        pil = Image.open(io.BytesIO(image))
        if bytes(image[:8]) == PNG_SIGNATURE:
            return bytes(image), *pil.size
        image = pil
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:  # floats in [0, 1]
            image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
        image = Image.fromarray(image.squeeze(-1) if image.ndim == 3 and image.shape[-1] == 1 else image)
    if image.mode not in ("RGB", "RGBA", "L", "LA", "P"):
        image = image.convert("RGBA" if "A" in image.mode else "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue(), *image.size


def _wav_bytes(waveform, sample_rate: int) -> tuple[bytes, float]:
    if hasattr(waveform, "detach"):
        waveform = waveform.detach().cpu().numpy()  # a torch tensor
    samples = np.nan_to_num(np.asarray(waveform, dtype=np.float32))
    if samples.ndim == 2 and samples.shape[0] < samples.shape[1]:
        samples = samples.T  # (channels, time) -> (time, channels), the WAV frame order
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).round().astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(int(sample_rate))
        out.writeframes(pcm.tobytes())
    return buffer.getvalue(), len(samples) / sample_rate


# ---- the backbone diagram, drawn in SVG user units (1000 x 512, from y = 30)

# (name, note, optional?, families that use it)
BACKBONE_ROWS = [
    ("Token / patch embedding", "each family's own, into (B, T, dim)", False, "GPT Whisper DiT ViT"),
    ("RMSNorm / LayerNorm", "pre-norm, before every branch", False, "GPT Whisper DiT ViT"),
    ("Self-attention", "causal or bidirectional, fused SDPA", False, "GPT Whisper DiT ViT"),
    ("Cross-attention", "optional: to encoder states or text", True, "Whisper DiT"),
    ("adaLN-Zero", "optional: shift, scale, gate; zero-init", True, "DiT"),
    ("GeGLU MLP", "SwiGLU and GELU selectable", False, "GPT Whisper DiT ViT"),
]
ATTENTION_CHIPS = ["RoPE", "2-D RoPE", "GQA / MQA", "KV cache"]
# (family, box x, y, width, height, title, subtitle, chips, arrow y or None, dashed?)
FAMILY_BOXES = [
    ("GPT", 30, 60, 260, 100, "GPT", "text: next-token prediction", ["causal", "RoPE", "KV cache"], 121, False),
    ("Whisper", 30, 236, 260, 112, "Whisper encoder", "log-mel over a conv stem", ["bidirectional",
     "sinusoidal positions"], 292, False),
    ("Whisper", 30, 398, 260, 132, "Whisper decoder", "multitask tokens", ["causal", "RoPE", "cross-attention",
     "KV cache"], 464, False),
    ("DiT", 710, 60, 260, 144, "DiT", "latent diffusion, text to image", ["bidirectional", "2-D RoPE",
     "cross-attention", "adaLN-Zero"], 140, False),
    ("ViT", 710, 250, 260, 100, "ViT", "image classification", ["bidirectional", "2-D RoPE"], 300, False),
    ("AlexNet", 710, 410, 260, 120, "AlexNet (2012)", "CNN baseline for ViT", ["conv", "ReLU", "max-pool"], None,
     True),
]


def _svg_text(x, y, text, size=12, weight=400, fill="#1f2430", anchor="start") -> str:
    return (f'<text x="{x}" y="{y}" font-size="{size}" font-weight="{weight}" fill="{fill}" '
            f'text-anchor="{anchor}">{esc(text)}</text>')


def _chips(x, y, width, labels, colour) -> tuple[list[str], int]:
    """Pill-shaped labels laid out left to right, wrapping at `width`; returns the SVG and the height used."""
    out, cx, cy = [], x, y
    for label in labels:
        w = int(len(label) * 6.1 + 16)  # ~ the width of 11 px system-ui text
        if cx + w > x + width and cx > x:
            cx, cy = x, cy + 24
        out.append(f'<rect x="{cx}" y="{cy}" width="{w}" height="19" rx="9.5" fill="{colour}" fill-opacity="0.12" '
                   f'stroke="{colour}" stroke-opacity="0.45"/>')
        out.append(_svg_text(cx + w / 2, cy + 13.5, label, 11, 500, colour, "middle"))
        cx += w + 6
    return out, cy + 19 - y


def backbone_svg() -> str:
    """The shared backbone in the middle, the families that use it around it (valid standalone SVG)."""
    s = ['<svg class="diagram" xmlns="http://www.w3.org/2000/svg" viewBox="0 30 1000 512" role="img" '
         'aria-label="The shared zoo.nn Transformer backbone and the model families that use it" '
         'font-family="system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif">',
         "<defs>" + "".join(f'<marker id="zoo-arrow-{name}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
                            f'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
                            f'fill="{colour}"/></marker>' for name, colour in FAMILY_COLOURS.items()) + "</defs>",
         '<rect x="330" y="40" width="340" height="490" rx="16" fill="#f4f6fa" stroke="#c9d1dc" stroke-width="1.5"/>',
         _svg_text(500, 68, "zoo.nn: one shared Transformer", 16, 700, anchor="middle"),
         _svg_text(500, 86, "x = x + branch(norm(x)), every branch below", 11, 400, "#5d6675", "middle"),
         '<rect x="340" y="160" width="320" height="328" rx="12" fill="none" stroke="#9aa5b4" '
         'stroke-dasharray="5 4"/>', _svg_text(648, 481, "\u00d7 n_layers", 12, 600, "#5d6675", "end")]
    families = ["GPT", "Whisper", "DiT", "ViT"]
    y = 100
    for i, (name, note, optional, users) in enumerate(BACKBONE_ROWS):
        height = 76 if name == "Self-attention" else 46
        y += 18 if i == 1 else 0  # the embedding sits above the repeated block
        dash = ' stroke-dasharray="4 3"' if optional else ""
        s.append(f'<rect x="352" y="{y}" width="296" height="{height}" rx="9" fill="#ffffff" stroke="#b7c0cc"{dash}/>')
        s.append(_svg_text(366, y + 20, name, 13.5, 650))
        s.append(_svg_text(366, y + 37, note, 11, 400, "#5d6675"))
        for j, family in enumerate(families):  # which families use this block: filled dot = yes
            used = family in users.split()
            fill = FAMILY_COLOURS[family] if used else "#ffffff"
            s.append(f'<circle cx="{580 + j * 18}" cy="{y + 16}" r="5.5" fill="{fill}" '
                     f'stroke="{FAMILY_COLOURS[family]}" stroke-opacity="{1 if used else 0.35}"/>')
        if name == "Self-attention":
            s += _chips(366, y + 48, 280, ATTENTION_CHIPS, "#3b5bdb")[0]
        y += height + 8
    s.append(_svg_text(366, 516, "used by", 11, 400, "#5d6675"))  # the dots' legend, under the block
    x = 420
    for family in families:
        s.append(f'<circle cx="{x}" cy="512" r="5" fill="{FAMILY_COLOURS[family]}"/>')
        s.append(_svg_text(x + 9, 516, family, 11, 500, "#3d4452"))
        x += int(len(family) * 6.5) + 32
    for family, x, y, w, h, title, subtitle, chips, arrow_y, dashed in FAMILY_BOXES:
        colour = FAMILY_COLOURS[family]
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        s.append(f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="12" fill="#ffffff" stroke="{colour}" '
                 f'stroke-width="1.5"{dash}/>')
        if not dashed:
            s.append(f'<rect x="{x}" y="{y + 12}" width="4" height="{h - 24}" rx="2" fill="{colour}"/>')
        s.append(_svg_text(x + 18, y + 26, title, 15, 700, colour))
        s.append(_svg_text(x + 18, y + 44, subtitle, 11.5, 400, "#5d6675"))
        s += _chips(x + 18, y + 56, w - 30, chips, colour)[0]
        if arrow_y is not None:  # family -> backbone
            x1, x2 = (x + w, 326) if x < 330 else (x, 674)
            s.append(f'<line x1="{x1}" y1="{arrow_y}" x2="{x2}" y2="{arrow_y}" stroke="{colour}" stroke-width="2" '
                     f'marker-end="url(#zoo-arrow-{family})"/>')
    s.append(_svg_text(160, 388, "encoder states feed the decoder's cross-attention", 10.5, 400, "#7a5aa6", "middle"))
    s.append('<line x1="160" y1="348" x2="160" y2="374" stroke="#7a5aa6" stroke-width="1.5" '
             'marker-end="url(#zoo-arrow-Whisper)"/>')
    s.append(_svg_text(840, 188, "its text encoder: the backbone again", 10.5, 400, "#b8683a", "middle"))
    s.append(_svg_text(840, 520, "does not use the backbone", 11, 500, "#8a9099", "middle"))
    s.append('<line x1="840" y1="350" x2="840" y2="408" stroke="#8a9099" stroke-width="1.5" stroke-dasharray="4 3"/>')
    s.append(_svg_text(848, 384, "compared with", 10.5, 400, "#8a9099"))
    return "\n".join(s) + "\n</svg>"
