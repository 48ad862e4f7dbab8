"""`zoo demo`: every shipped model at work on input it has never seen, in a few minutes, and a report to open.

    zoo demo                    the weights shipped in zoo/weights (hash-verified)
    zoo demo --train            first retrain every shipped model with its recorded command (zoo reproduce), then
                                the same demo on the fresh models; run again, it keeps the finished retrainings
                                and continues an interrupted one from its checkpoint
    -> runs/demo/report.html    one self-contained file: metrics against targets, loss curves, code, audio,
                                image grids with the judge's verdicts, confusion matrices, the shared backbone

Fresh input: the scenes, sentences and drawings come from DEMO_SEED's streams, which no training or evaluation
split draws from; the diffusion prompts are held-out (shape, colour) compositions the denoiser never drew; the
LoRA fine-tune trains on a file the demo writes. Each section runs what a user would call (generate, transcribe,
the pipeline, the family's evaluate) and a model that is not shipped is reported as such, not faked.
"""

import dataclasses
import json
import platform
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from zoo.checkpoint import load_pretrained
from zoo.errors import InputError, MissingFileError
from zoo.report import Report
from zoo.shipped import (
    REPORT_FILE,
    machine,
    read_manifest,
    reproduce,
    shipped_dir,
    shipped_names,
    slow_precision,
    verify,
)

DEMO_SEED = 2026
CODE_SAMPLES = 100  # functions sampled for the fresh parse rate (as the evaluation)
SHOWN_FUNCTIONS = 4
IMAGE_PROMPTS = 8  # held-out compositions, IMAGES_PER_PROMPT images each
IMAGES_PER_PROMPT = 2
DRAWINGS = 500  # new drawings each classifier labels
LORA_STEPS = 60
# what run_demo writes into OUT: the report, its summary, the classifiers' plots, the LoRA run, --train's runs
DEMO_FILES = ("report.html", "summary.json", "alexnet-mini", "vit-nano", "lora_corpus.py", "lora", "train")


@dataclass(frozen=True)
class Target:
    """A family's quality bar on one metric of its manifest: value >= bound (or <= bound when lower is better)."""

    model: str
    metric: str
    label: str
    bound: float | None  # None: reported, no bar
    higher_is_better: bool = True
    percent: bool = True

    def met(self, value: float | None) -> bool | None:
        if value is None or self.bound is None:
            return None
        return value >= self.bound if self.higher_is_better else value <= self.bound

    def show(self, value: float | None) -> str:
        if value is None:
            return "—"
        return f"{100 * value:.1f}%" if self.percent else f"{value:.2f}"

    def target(self) -> str:
        if self.bound is None:
            return "reported"
        return ("≥ " if self.higher_is_better else "≤ ") + self.show(self.bound)


FAMILIES = {"gpt-nano": "text", "whisper-cpu": "speech", "vae-shapes": "diffusion", "dit-shapes": "diffusion",
            "judge-shapes": "diffusion", "alexnet-mini": "vision", "vit-nano": "vision"}
# The issues' bars (README "Measured results" has the commands that measured each figure).
TARGETS = (
    Target("gpt-nano", "parse_rate", "sampled functions that parse", 0.5),
    Target("gpt-nano", "val_loss", "validation loss (nats/token)", None, percent=False),
    Target("whisper-cpu", "wer_en", "WER, English", 0.10, higher_is_better=False),
    Target("whisper-cpu", "cer_de", "CER, German", 0.10, higher_is_better=False),
    Target("whisper-cpu", "cer_es", "CER, Spanish", 0.10, higher_is_better=False),
    Target("whisper-cpu", "cer_fr", "CER, French", 0.10, higher_is_better=False),
    Target("whisper-cpu", "cer_zh", "CER, Mandarin", 0.10, higher_is_better=False),
    Target("whisper-cpu", "bleu", "BLEU, translation to English", 30.0, percent=False),
    Target("whisper-cpu", "language_accuracy", "language ID", 0.98),
    Target("whisper-cpu", "no_speech_accuracy", "no-speech detection", 0.98),
    Target("vae-shapes", "psnr", "reconstruction PSNR (dB)", None, percent=False),
    Target("dit-shapes", "vae_joint", "VAE reconstructions the judge passes", 0.95),
    Target("dit-shapes", "gen_joint", "generated images right (shape + colour)", 0.80),
    Target("dit-shapes", "gen_heldout_joint", "the same, held-out compositions", 0.70),
    Target("judge-shapes", "acc_shape", "judge: shape on real images", 0.99),
    Target("alexnet-mini", "top1", "top-1 on the shapes task", 0.99),
    Target("vit-nano", "top1", "top-1 on the shapes task", None),
)


# ----------------------------------------------------------------------------------------------------
# the run


def run_demo(out: str | Path = "runs/demo", train: bool = False) -> Path:
    """Run every section, write OUT/report.html and OUT/summary.json, print a summary; returns the report's path."""
    out = check_demo_dir(Path(out))
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    directories = retrain_all(out / "train") if train else {name: shipped_dir(name) for name in shipped_names()}
    if not train:  # every shipped file against its manifest's sha256, once, before anything loads
        for directory in directories.values():
            verify(directory)
    report = Report("zoo demo", subtitle=f"{platform.node()} · {torch.get_num_threads()} threads · "
                                         f"torch {torch.__version__} · {time.strftime('%Y-%m-%d %H:%M')}")
    report.section("One backbone, four families").backbone_diagram()
    report.text("Every model below was trained by zoo's own recipes on a 2-core CPU and ships inside the "
                "package (`zoo list`); `zoo reproduce NAME` retrains one with its recorded command.")
    summary: dict[str, dict] = {}
    metrics_section(report, directories)
    for name, section in (("gpt-nano", text_section), ("whisper-cpu", speech_section),
                          ("dit-shapes", diffusion_section), ("alexnet-mini", vision_section),
                          ("gpt-nano", lora_section)):
        title = section.__doc__.splitlines()[0]
        report.section(title)
        if name not in directories:
            report.text(f"`{name}` has no shipped weights in this checkout, so this section is skipped.")
            print(f"\n== {title}: skipped ({name} is not shipped)")
            continue
        print(f"\n== {title}", flush=True)
        began = time.perf_counter()
        summary[section.__name__.removesuffix("_section")] = section(report, directories, out)
        print(f"   ({time.perf_counter() - began:.0f} s)")
    report.section("Training curves").loss_curves(
        {name: _curve(directory) for name, directory in directories.items()},
        caption="training loss and validation loss of each shipped model, as logged by the trainer")
    path = report.write(out / "report.html")
    summary["seconds"] = round(time.perf_counter() - start, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nzoo demo: {len(directories)} models in {summary['seconds']:.0f} s; the report: {path}")
    return path


def check_demo_dir(out: Path) -> Path:
    """A new or empty directory, or a previous demo's (whose files this one replaces): the report and the demo's
    runs are never mixed into a user's own files."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; allowed: a directory for the report and the demo's runs")
    foreign = sorted(p.name for p in out.iterdir() if p.name not in DEMO_FILES) if out.exists() else []
    if foreign:
        raise InputError(f"--out {out} holds files the demo does not write ({', '.join(foreign[:5])}); allowed: "
                         f"a new or empty directory, or a previous demo's; choose another --out")
    return out


@dataclass
class Retraining:
    """One shipped model's part in zoo demo --train, settled before any run starts so the first ETA covers them all."""

    name: str
    recorded_on: str | None  # the machine its manifest's wall time was measured on
    purpose: dict  # what ROOT/NAME's run is started for: the manifest's command and commit, the added settings
    ours: bool  # ROOT/NAME holds a run started for the weights shipped now (retraining.json says so)
    kept: bool  # ... and it finished: its reproduce.json is kept, nothing is retrained
    left_s: float  # the manifest's wall time still to go: 0 when kept, less the steps an interrupted run has done


def _plan(name: str, root: Path, started: dict) -> Retraining:
    manifest = read_manifest(name)
    purpose = {"shipped_command": manifest["command"], "shipped_commit": manifest.get("commit"),
               "sets": ["train.precision=auto"] if slow_precision(name, []) else []}
    ours = started.get(name) == purpose
    kept = ours and (root / name / REPORT_FILE).is_file()
    left_s = 0.0 if kept else _recorded_time_left(name, manifest, root / name, resumed=ours)
    return Retraining(name, manifest.get("machine"), purpose, ours, kept, left_s)


def retrain_all(root: Path) -> dict[str, Path]:
    """zoo demo --train: every shipped model retrained by its manifest's command (progress: each run's own bars;
    the ETA from the shipped wall times). A model recorded in bf16 trains in fp32 on a machine without bf16 units
    (train.precision=auto), where bf16 would take many times its recorded wall time.

    The runs take hours in all, so an interrupted --train loses nothing when run again with the same --out: a
    model whose reproduction finished is kept, and a run cut short continues from its latest checkpoint. Both only
    for the weights shipped now: ROOT/retraining.json names what each run was started for (the manifest's command
    and commit, and the added settings), and a run started for other weights starts over."""
    ledger_path = root / "retraining.json"
    started = json.loads(ledger_path.read_text()) if ledger_path.is_file() else {}
    plans = [_plan(name, root, started) for name in shipped_names()]
    here = machine()
    pace = {}  # manifest's machine -> (this machine's wall time, the manifest's) of runs retrained here from the start
    for i, plan in enumerate(plans, 1):
        report_path = root / plan.name / REPORT_FILE
        if plan.kept:
            print(f"\n[{i}/{len(plans)}] {plan.name} was retrained already ({report_path}); kept", flush=True)
            report = json.loads(report_path.read_text())
        else:
            runs_left = [(later.left_s, later.recorded_on) for later in plans[i - 1:] if later.left_s]
            print(f"\n[{i}/{len(plans)}] retraining {plan.name}; {_time_left(runs_left, pace)}", flush=True)
            if plan.purpose["sets"]:
                print(f"{plan.name} was trained in bf16, and this machine has no bf16 units: --set "
                      f"train.precision=auto (fp32 here)", flush=True)
            started[plan.name] = plan.purpose
            root.mkdir(parents=True, exist_ok=True)
            ledger_path.write_text(json.dumps(started, indent=2) + "\n")
            report_path.unlink(missing_ok=True)  # another weights' report would pass for this run's if it is cut short
            report = reproduce(plan.name, root / plan.name, plan.purpose["sets"], resume=plan.ours)
        if _paced(report, here):  # a kept run counts too: after a restart the ETA knows this machine's pace at once
            pace.setdefault(plan.recorded_on, []).append((report["wall_time_s"], report["shipped_wall_time_s"]))
            print(f"{plan.name} retrained in {report['wall_time_s'] / 60:.0f} min (its manifest: "
                  f"{report['shipped_wall_time_s'] / 60:.0f} min)", flush=True)
    return {plan.name: root / plan.name for plan in plans}


def _recorded_time_left(name: str, manifest: dict, run_dir: Path, resumed: bool) -> float:
    """The manifest's wall time of NAME's unfinished run in RUN_DIR still to go: the share of the recorded steps not
    done yet when a run for these weights was cut short there (it resumes), else all of it."""
    from zoo.train.checkpointing import latest_checkpoint, step_of

    recorded = manifest.get("wall_time_s", 0.0)
    latest = latest_checkpoint(run_dir) if resumed and run_dir.is_dir() else None
    if latest is None:
        return recorded
    steps = json.loads((shipped_dir(name) / "train_config.json").read_text())["train"]["steps"]
    return recorded * max(0.0, 1.0 - step_of(latest) / steps)


def _paced(report: dict, here: str) -> bool:
    """Whether a reproduction's wall time shows this machine's pace: it ran from its start (a resumed run's wall
    time is its last stretch's) on HERE, this machine as machine() describes it, beside a recorded wall time."""
    return (report.get("resumed_from") is None and bool(report.get("shipped_wall_time_s"))
            and report.get("machine") == here)


def _time_left(runs_left: list[tuple[float, str | None]], pace: dict[str | None, list[tuple[float, float]]]) -> str:
    """The ETA of the runs left, each given as (its manifest's wall time still to go, the machine the manifest
    records): those wall times, each scaled by how much slower (or faster) this machine has retrained the runs
    recorded on the same machine. A run recorded on a machine no retrained run was keeps its manifest's time: the
    manifests come from machines that differ several-fold in pace (bf16 units, vector width), so one machine's
    ratio says nothing about another's."""
    recorded_s = sum(seconds for seconds, _ in runs_left)
    eta = f"all runs left take about {recorded_s / 60:.0f} min by their manifests' wall times"
    ratios = {on: sum(here for here, _ in runs) / sum(recorded for _, recorded in runs) for on, runs in pace.items()}
    scaled = [(seconds, ratios[on]) for seconds, on in runs_left if on in ratios]
    if not scaled:
        return eta
    estimate = recorded_s + sum(seconds * (ratio - 1) for seconds, ratio in scaled)
    return (f"{eta}; about {estimate / 60:.0f} min at this machine's pace so far ({len(scaled)} of {len(runs_left)} "
            f"scaled by the runs retrained here whose manifests name the same machine)")


def _figures(directory: Path) -> tuple[dict, dict | None]:
    """The model's figures, and the shipped weights' they are compared with where DIR is a --train run (its
    reproduce.json holds both); else the shipped manifest's figures and None."""
    manifest, fresh = directory / "manifest.json", directory / REPORT_FILE
    if fresh.is_file():
        metrics = json.loads(fresh.read_text())["metrics"]
        return {k: v["reproduced"] for k, v in metrics.items()}, {k: v["shipped"] for k, v in metrics.items()}
    return (json.loads(manifest.read_text())["metrics"] if manifest.is_file() else {}), None


def _curve(directory: Path) -> dict:
    from zoo.shipped import loss_curve

    manifest = directory / "manifest.json"
    if manifest.is_file():
        return json.loads(manifest.read_text())["curve"]
    return loss_curve(directory / "log.jsonl")


# ----------------------------------------------------------------------------------------------------
# sections


def metrics_section(report: Report, directories: dict[str, Path]):
    report.section("Targets and measured figures")
    figures = {name: _figures(directory) for name, directory in directories.items()}
    rows = []
    for target in TARGETS:
        if target.model not in directories:
            rows.append({"family": FAMILIES[target.model], "model": target.model, "metric": target.label,
                         "target": target.target(), "measured": "not shipped", "met": None})
            continue
        measured, shipped = figures[target.model]
        value = measured.get(target.metric)
        row = {"family": FAMILIES[target.model], "model": target.model, "metric": target.label,
               "target": target.target(), "measured": target.show(value), "met": target.met(value)}
        if shipped is not None:  # zoo demo --train: the retrained model beside the shipped one
            row["shipped"] = target.show(shipped.get(target.metric))
            print(f"{target.model}, {target.label}: retrained {row['measured']}, shipped {row['shipped']}")
        rows.append(row)
    report.metrics_table(rows)
    if any("shipped" in row for row in rows):
        measured_on = ("the models `zoo demo --train` retrained with their manifests' commands (zoo/weights/NAME/"
                       "manifest.json; each run's comparison in its reproduce.json); \"shipped\" is the figure of "
                       "the shipped weights it is compared with.")
    else:
        measured_on = ("the shipped weights themselves; the manifests (zoo/weights/NAME/manifest.json) record the "
                       "command, commit and wall time of every model.")
    report.text(f"Measured by each family's full evaluation on held-out data (`zoo eval DIR --json`), on {measured_on}")
    met = sum(row["met"] is True for row in rows)
    print(f"targets: {met} of {sum(row['met'] is not None for row in rows)} met")


def text_section(report: Report, directories: dict[str, Path], out: Path) -> dict:
    """Text: the code GPT writes Python"""
    from zoo.text.code import PROMPT, parse_rate, parses
    from zoo.text.generate import format_table, next_token_table

    model = load_pretrained(directories["gpt-nano"]).eval()
    healed = PROMPT.rstrip()  # `def ` heals to `def` + a token starting with the space (zoo.text.code)
    table = next_token_table(model, healed, k=8)
    print(f"next-token probabilities after {healed!r}:\n{format_table(table)}")
    report.table(["next token", "probability"], [[repr(token), f"{p:.3f}"] for token, p in table],
                 caption=f"gpt-nano's next-token distribution after {healed!r}")
    rate, functions = parse_rate(model, n=CODE_SAMPLES, seed=DEMO_SEED)
    print(f"{rate:.0%} of {CODE_SAMPLES} sampled functions parse (temperature 0.8)")
    report.text(f"{CODE_SAMPLES} functions sampled from `def ` at temperature 0.8, each cut at its next "
                f"top-level line: **{rate:.0%} parse** (`ast.parse`). The first ones that parse, then the first "
                f"ones that do not:")
    good, bad = [f for f in functions if parses(f)], [f for f in functions if not parses(f)]
    for function in good[:SHOWN_FUNCTIONS // 2] + bad[:SHOWN_FUNCTIONS - min(len(good), SHOWN_FUNCTIONS // 2)]:
        report.code(function, caption="parses" if parses(function) else "does not parse")
    print((good or bad)[0])
    return {"parse_rate": rate}


def speech_section(report: Report, directories: dict[str, Path], out: Path) -> dict:
    """Speech: clips synthesised now, transcribed, translated and language-identified"""
    from zoo.speech.audio import SAMPLE_RATE
    from zoo.speech.data import SpeechCorpusConfig, make_clip, no_speech
    from zoo.speech.metrics import error_rate
    from zoo.speech.transcribe import transcribe

    model = load_pretrained(directories["whisper-cpu"]).eval()
    config = SpeechCorpusConfig(seed=DEMO_SEED)
    clips, index = {}, 0
    while len(clips) < len(config.languages):  # one fresh test-split sentence per language
        clip = make_clip(config, "test", index)
        index += 1
        if not clip.row["no_speech"] and clip.row["language"] not in clips:
            clips[clip.row["language"]] = clip
    rng = np.random.default_rng(DEMO_SEED)
    silence = no_speech("silence", 3.0, rng).astype(np.float32)
    audios = [clip.audio for clip in clips.values()] + [silence]
    heard = transcribe(model, audios)
    translated = transcribe(model, audios[:-1], task="translate")
    rows, correct_language = [], 0
    for (language, clip), result, translation in zip(clips.items(), heard, translated):
        error = error_rate([clip.row["text"]], [result["text"]], language)
        correct_language += result["language"] == language
        fields = {"said": clip.row["text"], "transcript": result["text"], "detected language": result["language"],
                  "error rate": f"{error:.0%}", "translation": translation["text"],
                  "reference translation": clip.row["translation"]}
        report.audio(clip.audio, SAMPLE_RATE, caption=f"{language}: {clip.row['voice']}", fields=fields)
        rows.append([language, result["language"], clip.row["text"], result["text"], f"{error:.0%}"])
        print(f"  [{language} -> {result['language']}] {result['text']!r}  (said {clip.row['text']!r})")
    quiet = heard[-1]
    report.audio(silence, SAMPLE_RATE, caption="3 s of silence",
                 fields={"transcript": quiet["text"] or "(nothing: correct)",
                         "no-speech probability": f"{quiet['no_speech_prob']:.2f}"})
    print(f"  [silence] {quiet['text']!r} (no-speech probability {quiet['no_speech_prob']:.2f})")
    report.table(["language", "detected", "said", "transcribed", "error rate"], rows,
                 caption="the clips above: word error rate (character error rate for Mandarin)")
    return {"language_correct": correct_language / len(clips), "silence_left_empty": not quiet["text"]}


def diffusion_section(report: Report, directories: dict[str, Path], out: Path) -> dict:
    """Images: captions the denoiser never drew, judged by an independent classifier"""
    from zoo.diffusion.data import draw_scene, scene_attributes
    from zoo.diffusion.judge import score
    from zoo.diffusion.pipeline import DEFAULT_GUIDANCE, DEFAULT_GUIDANCE_INTERVAL, DEFAULT_STEPS, TextToImagePipeline
    from zoo.diffusion.recipe import DiTDataConfig

    directory = directories["dit-shapes"]
    pipeline = TextToImagePipeline.from_pretrained(directory)
    judge_dir = directory / "judge" if (directory / "judge").is_dir() else directories.get("judge-shapes")
    if judge_dir is None:
        raise MissingFileError("the diffusion demo needs the judge: dit-shapes/judge or judge-shapes")
    judge = load_pretrained(judge_dir).eval()
    config = DiTDataConfig(seed=DEMO_SEED, image_size=pipeline.default_size())
    attributes = [scene_attributes(draw_scene(config, "test_heldout", i)) for i in range(IMAGE_PROMPTS)]
    prompts = [a.caption() for a in attributes]
    generator = torch.Generator().manual_seed(DEMO_SEED)
    # the pipeline's defaults: the sampler the manifest's figures were measured with (zoo.diffusion.evaluation)
    images = pipeline(prompts, num_images_per_prompt=IMAGES_PER_PROMPT, generator=generator,
                      output_type="np").images  # (N, H, W, 3) in [0, 1], prompt-major
    asked = [a for a in attributes for _ in range(IMAGES_PER_PROMPT)]
    verdicts = score(judge, torch.from_numpy(images).permute(0, 3, 1, 2) * 2 - 1, asked)
    items = []
    for i, (image, wanted) in enumerate(zip(images, asked)):
        ok = bool(verdicts["joint"][i])
        seen = "right" if ok else "wrong"
        items.append(((image * 255).round().astype(np.uint8), f"{wanted.caption()} · judge: {seen}", ok))
    joint = float(verdicts["joint"].float().mean())
    report.image_grid(items, columns=4, caption=f"{IMAGE_PROMPTS} held-out compositions (a shape and a colour never "
                      f"drawn together in training), {IMAGES_PER_PROMPT} images each, {DEFAULT_STEPS} steps, "
                      f"guidance {DEFAULT_GUIDANCE:g} for noise levels in ({DEFAULT_GUIDANCE_INTERVAL[0]}, "
                      f"{DEFAULT_GUIDANCE_INTERVAL[1]}]; the judge finds shape and colour right in {joint:.0%}")
    print(f"  the judge finds shape and colour right in {joint:.0%} of {len(images)} images")
    return {"joint": joint, "shape": float(verdicts["shape"].float().mean()),
            "colour": float(verdicts["colour"].float().mean())}


def vision_section(report: Report, directories: dict[str, Path], out: Path) -> dict:
    """Vision: the CNN and the ViT label new drawings"""
    from zoo.data.shapes import SceneConfig, ShapesDataset, materialize
    from zoo.vision.data import ImageTensors, evaluate

    results, rows = {}, []
    for name in ("alexnet-mini", "vit-nano"):
        if name not in directories:
            rows.append([name, "not shipped", "", "", ""])
            continue
        model = load_pretrained(directories[name]).eval()
        drawings = materialize(ShapesDataset(DRAWINGS, seed=DEMO_SEED, task="shape",
                                             config=SceneConfig(image_size=model.config.image_size)), progress=False)
        if list(drawings.classes) != list(model.config.class_names):
            raise InputError(f"{name} was trained on classes {model.config.class_names}, the drawings have "
                             f"{drawings.classes}")
        began = time.perf_counter()
        metrics = evaluate(model, ImageTensors(drawings.images, drawings.targets, drawings.classes),
                           out_dir=out / name)
        seconds = time.perf_counter() - began
        results[name] = metrics["top1"]
        rows.append([name, f"{model.num_params():,}", f"{metrics['top1']:.1%}",
                     f"{_figures(directories[name])[0].get('top1', float('nan')):.1%}", f"{DRAWINGS / seconds:,.0f}"])
        report.image(out / name / "confusion_matrix.png", caption=f"{name}: confusion matrix on {DRAWINGS} new "
                                                                  f"drawings", width=420)
        print(f"  {name}: {metrics['top1']:.1%} of {DRAWINGS} new drawings")
    report.table(["model", "parameters", f"top-1, {DRAWINGS} new drawings", "top-1, validation (manifest)",
                  "images/s"], rows, caption="the 2012 CNN against the Vision Transformer on the same drawings")
    return results


def lora_section(report: Report, directories: dict[str, Path], out: Path) -> dict:
    """Training: a LoRA fine-tune of the GPT through the trainer"""
    from zoo.evaluation import load_for_eval
    from zoo.text.code import sample_healed
    from zoo.text.generate import GenerationOptions
    from zoo.train import train

    corpus = write_lora_corpus(out / "lora_corpus.py")
    base_dir, run = directories["gpt-nano"], out / "lora"
    base, family, data, data_config = load_for_eval(base_dir, str(corpus))  # the base model on the new file
    data_config = dataclasses.replace(data_config, code_samples=0)
    before = family.evaluate(base.eval(), data, data_config)["val_loss"]
    metrics = train("gpt-nano", out=run, data=str(corpus), steps=LORA_STEPS, lora="r=8,alpha=16", overwrite=True,
                    sets=[f"train.init_from={base_dir}", "data.code_samples=0", f"train.eval_every={LORA_STEPS // 3}"])
    curve, after = _curve(run), metrics["val_loss"]
    report.text(f"`zoo train gpt-nano --lora r=8,alpha=16 --set train.init_from=<shipped gpt-nano> --data "
                f"{corpus.name}`: {LORA_STEPS} steps on a file of unit-conversion helpers the demo wrote; "
                f"validation loss {before:.2f} → {after:.2f}.")
    report.loss_curves({"LoRA fine-tune": curve}, caption="the fine-tune's training and validation loss")
    options = GenerationOptions(max_new_tokens=80, temperature=0.8, seed=DEMO_SEED)
    report.code(sample_healed(load_pretrained(run).eval(), "def ", 1, options)[0],
                caption="a sample from the fine-tuned model")
    print(f"  validation loss {before:.2f} -> {after:.2f} in {LORA_STEPS} steps")
    return {"val_loss_before": before, "val_loss_after": after}


def write_lora_corpus(path: Path, n: int = 400) -> Path:
    """A file in one house style the base model has not seen: small typed unit-conversion helpers."""
    units = [("metres", "feet", 3.28084), ("kilograms", "pounds", 2.20462), ("litres", "gallons", 0.264172),
             ("kilometres", "miles", 0.621371), ("celsius_steps", "fahrenheit_steps", 1.8),
             ("hours", "minutes", 60.0), ("bytes", "bits", 8.0), ("grams", "ounces", 0.035274)]
    rng = random.Random(DEMO_SEED)
    blocks = []
    for _ in range(n):
        source, target, factor = rng.choice(units)
        if rng.random() < 0.5:
            source, target, factor = target, source, 1 / factor
        digits = rng.choice((2, 3, 4))
        blocks.append(f'def {source}_to_{target}(value: float) -> float:\n'
                      f'    """Convert {source.replace("_", " ")} to {target.replace("_", " ")}."""\n'
                      f'    return round(value * {factor:.6g}, {digits})\n')
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(blocks))
    return path
