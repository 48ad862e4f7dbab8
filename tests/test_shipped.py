"""Shipped pretrained weights (zoo/shipped.py): a tiny trained run is shipped (fp16, hashed, evaluated, its curve
and provenance recorded), loads through zoo.load's fallback, is refused when tampered with, shows in `zoo list`,
and `zoo reproduce` retrains it from its manifest's command."""

import datetime
import hashlib
import json
import shlex
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import zoo
from zoo.checkpoint import load_pretrained
from zoo.cli import main
from zoo.demo import TARGETS, _paced, _recorded_time_left, _time_left, metrics_section, retrain_all
from zoo.evaluation import evaluate_directory
from zoo.models import trained_dir
from zoo.registry import get_model_entry
from zoo.report import Report
from zoo.shipped import (
    ShippedWeightsError,
    cast_weights,
    load_shipped,
    loss_curve,
    read_manifest,
    reproduce_argv,
    ship,
    shipped_names,
    slow_precision,
    verify,
)
from zoo.train import checkpointing, train
from zoo.train.strategy import describe_cpu
from zoo.utils import git_state

NAME = "alexnet-mini"
TINY = ["data.n_train=64", "data.n_val=32", "train.batch_size=8", "train.log_every=1", "train.eval_every=0",
        "train.tensorboard=false", "train.warmup=1"]
COMMAND = f"zoo train {NAME} --out runs/ship/{NAME} --steps 2 " + " ".join(f"--set {s}" for s in TINY)
SHIPPED_FILES = {"config.json", "model.safetensors", "train_config.json", "helper/config.json",
                 "helper/model.safetensors"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A finished 2-step alexnet-mini run, plus a nested model directory (helper/, holding an integer tensor and
    metadata) with run litter of its own that must not ship."""
    out = tmp_path_factory.mktemp("runs") / NAME
    with pytest.MonkeyPatch.context() as patch:  # module-scoped: conftest's per-test ZOO_HOME is not set yet
        patch.setenv("ZOO_HOME", str(tmp_path_factory.mktemp("home")))
        train(NAME, out=out, steps=2, sets=TINY)
    helper = out / "helper"
    helper.mkdir()
    shutil.copyfile(out / "config.json", helper / "config.json")
    tensors = {**load_file(out / "model.safetensors"), "counter": torch.arange(5)}
    save_file(tensors, str(helper / "model.safetensors"), metadata={"format": "pt", "note": "kept"})
    (helper / "checkpoints").mkdir()
    (helper / "checkpoints" / "state.pt").write_bytes(b"not shipped")
    (helper / "log.jsonl").write_text("")
    return out


@pytest.fixture(scope="module")
def shipped(run_dir, tmp_path_factory) -> Path:
    """The weights root holding the shipped run."""
    root = tmp_path_factory.mktemp("weights")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZOO_HOME", str(tmp_path_factory.mktemp("home")))
        ship(run_dir, NAME, COMMAND, wall_time_s=12.5, root=root)
    return root


@pytest.fixture
def weights(shipped, tmp_path, monkeypatch) -> Path:
    """A private copy of the shipped root as ZOO_WEIGHTS_DIR, for tests that change it."""
    root = tmp_path / "weights"
    shutil.copytree(shipped, root)
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(root))
    return root


def logits(model, seed=0) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(seed)))


def same_weights(a, b) -> bool:
    """Bit-equal state dicts (equal weights can still give logits a few ulps apart: the CPU kernels' summation
    order depends on more than the values)."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def rounded(run_dir):
    """The run's model with every weight rounded to fp16 and back: what shipping should store."""
    return load_pretrained(run_dir).half().float()


# ----------------------------------------------------------------------------------------------------- ship


def test_ship_hashes_every_file_stores_fp16_and_records_metrics_curve_and_provenance(shipped, run_dir,
                                                                                       monkeypatch):
    directory = shipped / NAME
    manifest = json.loads((directory / "manifest.json").read_text())
    on_disk = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
    # loadable files only: no checkpoints/, log.jsonl, loss.png, confusion_matrix.png, metrics.json
    assert set(manifest["files"]) == SHIPPED_FILES == on_disk - {"manifest.json"}
    for relative, digest in manifest["files"].items():
        assert digest == hashlib.sha256((directory / relative).read_bytes()).hexdigest(), relative
    assert sorted(p.name for p in shipped.iterdir()) == [NAME]  # the temporary sibling is gone

    for relative in ("model.safetensors", "helper/model.safetensors"):
        original, stored = load_file(run_dir / relative), load_file(directory / relative)
        assert stored.keys() == original.keys()
        for key, tensor in original.items():
            expected = tensor.half() if tensor.is_floating_point() else tensor
            assert stored[key].dtype == expected.dtype and torch.equal(stored[key], expected), (relative, key)
    assert load_file(directory / "helper/model.safetensors")["counter"].dtype == torch.int64
    with safe_open(str(directory / "helper/model.safetensors"), framework="pt") as f:
        assert f.metadata()["note"] == "kept"

    run = json.loads((run_dir / "train_config.json").read_text())
    assert run["commit"] == git_state()[0] and "dirty" in run  # the trainer records the code it ran
    assert (manifest["name"], manifest["command"], manifest["dtype"]) == (NAME, COMMAND, "float16")
    assert (manifest["commit"], manifest["dirty"], manifest["wall_time_s"]) == (run["commit"], run["dirty"], 12.5)
    assert datetime.datetime.fromisoformat(manifest["trained_at"]).utcoffset() == datetime.timedelta(0)
    assert "CPUs" in manifest["machine"] and torch.__version__ in manifest["machine"]
    assert describe_cpu() in manifest["machine"] and "bf16 units: " in manifest["machine"]

    # the metrics are a fresh `zoo eval` of the shipped (fp16) files, not the run's fp32 metrics.json
    assert manifest["metrics"] == evaluate_directory(directory)
    assert set(manifest["metrics"]) >= {"top1", "val_loss"}
    assert manifest["metrics"]["val_loss"] != json.loads((run_dir / "metrics.json").read_text())["val_loss"]

    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert manifest["curve"]["step"] == [1, 2]
    assert manifest["curve"]["loss"] == [r["loss"] for r in records if "loss" in r]
    assert manifest["curve"]["val_step"] == [2] and manifest["curve"]["val_loss"][0] > 0


def test_the_curve_is_subsampled_keeping_both_ends(tmp_path):
    lines = [{"step": s, "loss": 1 / s} for s in range(1, 1001)] + [{"step": 1000, "val_loss": 0.5}]
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    curve = loss_curve(tmp_path / "log.jsonl")
    assert len(curve["step"]) == 200 and curve["step"][0] == 1 and curve["step"][-1] == 1000
    assert curve["loss"][-1] == 1 / 1000 and curve["val_step"] == [1000] and curve["val_loss"] == [0.5]


def test_a_failed_ship_leaves_the_shipped_copy_and_data_overrides_are_applied(run_dir, weights):
    before = (weights / NAME / "manifest.json").read_bytes()
    with pytest.raises(ValueError, match="no_such_field"):
        ship(run_dir, NAME, COMMAND, 1.0, data_overrides={"no_such_field": "1"}, root=weights)
    assert (weights / NAME / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in weights.iterdir()) == [NAME]

    ship(run_dir, NAME, COMMAND, 1.0, data_overrides={"n_val": "16"}, root=weights)
    assert json.loads((weights / NAME / "train_config.json").read_text())["data"]["n_val"] == 16
    verify(weights / NAME)


def test_remeasure_rewrites_only_the_metrics_with_the_code_that_measured_them(weights, monkeypatch, capsys):
    """After an evaluation change the figures are measured again on the same shipped files; the training
    provenance and the hashes stay."""
    import importlib.util

    manifest_path = weights / NAME / "manifest.json"
    before = json.loads(manifest_path.read_text())
    stale = {**before, "metrics": {key: -1.0 for key in before["metrics"]}}
    manifest_path.write_text(json.dumps(stale))
    spec = importlib.util.spec_from_file_location("ship_script", Path(__file__).parents[1] / "scripts" / "ship.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main([NAME, "--remeasure", "--eval-set", "n_train=1"]) == 0  # a training split it does not read
    after = json.loads(manifest_path.read_text())
    assert after["metrics"] == evaluate_directory(weights / NAME) == before["metrics"]
    assert (after["metrics_commit"], after["metrics_dirty"]) == git_state()
    assert {k: v for k, v in after.items() if not k.startswith("metrics")} == \
        {k: v for k, v in before.items() if k != "metrics"}
    assert f"metrics measured at commit {git_state()[0] or 'unknown'}" in capsys.readouterr().out
    verify(weights / NAME)
    with pytest.raises(SystemExit):
        script.main([NAME, "some/run", "--remeasure"])
    assert "--remeasure takes only NAME" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.main([NAME, "some/run"])
    assert "needs RUN_DIR, --command and --wall-time-s" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.main([NAME, "some/run", "--command", "c", "--wall-time-s", "1", "--eval-set", "n_train=1"])
    assert "--eval-set is for --remeasure" in capsys.readouterr().err


def test_a_tensor_that_overflows_the_storage_dtype_is_refused(tmp_path):
    save_file({"w": torch.tensor([1.0, 1e6])}, str(tmp_path / "a.safetensors"))
    with pytest.raises(ValueError, match="overflows"):
        cast_weights(tmp_path / "a.safetensors", tmp_path / "b.safetensors", torch.float16)


def test_git_state_is_none_without_git(monkeypatch):
    monkeypatch.setenv("PATH", "")
    assert git_state() == (None, None)


# ----------------------------------------------------------------------------------------------------- load


def test_load_shipped_gives_the_runs_logits_up_to_fp16_rounding(shipped, run_dir, monkeypatch):
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(shipped))
    model = load_shipped(NAME)
    assert same_weights(model, rounded(run_dir))
    got, reference = logits(model), logits(load_pretrained(run_dir))
    assert torch.allclose(got, logits(rounded(run_dir)), rtol=0, atol=1e-5)
    assert not torch.equal(got, reference)  # fp16 storage really rounded something
    assert torch.allclose(got, reference, rtol=1e-2, atol=1e-3 * reference.abs().max().item())


def test_zoo_load_prefers_zoo_home_then_shipped_weights_and_zoo_list_says_which(shipped, run_dir, monkeypatch,
                                                                                 zoo_home, capsys, tmp_path):
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(shipped))
    assert shipped_names() == [NAME]
    assert same_weights(zoo.load(NAME, pretrained=True), rounded(run_dir))

    def weights_column() -> dict[str, str]:
        assert main(["list", "alexnet*"]) == 0
        return {line.split()[0]: line.split()[2] for line in capsys.readouterr().out.splitlines()}

    assert weights_column() == {"alexnet": "-", "alexnet-2012": "-", NAME: "shipped"}

    shutil.copytree(run_dir, zoo_home / NAME)  # the user trained one: it wins
    assert same_weights(zoo.load(NAME, pretrained=True), load_pretrained(run_dir))
    assert weights_column()[NAME] == "trained"

    shutil.rmtree(zoo_home / NAME)
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(tmp_path / "none"))
    with pytest.raises(FileNotFoundError) as error:
        zoo.load(NAME, pretrained=True)
    message = str(error.value)
    assert str(zoo_home / NAME) in message and str(tmp_path / "none" / NAME) in message
    assert f"zoo train {NAME}" in message


def test_commands_take_a_model_name_with_trained_weights_as_well_as_a_directory(weights, run_dir, zoo_home, capsys,
                                                                                 tmp_path):
    from zoo.data.shapes import ShapesDataset

    image = tmp_path / "drawing.png"
    ShapesDataset(1, seed=5).pil(0).save(image)
    assert main(["classify", NAME, str(image), "--top-k", "2"]) == 0  # the shipped copy
    by_name = capsys.readouterr().out
    assert main(["classify", str(weights / NAME), str(image), "--top-k", "2"]) == 0  # the same, by directory
    assert capsys.readouterr().out == by_name and len(by_name.splitlines()) == 2
    assert trained_dir(NAME) == weights / NAME
    shutil.copytree(run_dir, zoo_home / NAME)
    assert trained_dir(NAME) == zoo_home / NAME  # the user's own training wins, as in zoo.load
    (weights / NAME / "config.json").write_text("{}")  # a tampered shipped copy is refused by name too
    shutil.rmtree(zoo_home / NAME)
    with pytest.raises(ShippedWeightsError, match="config.json"):
        trained_dir(NAME)
    assert main(["classify", "alexnet-2012", str(image)]) == 2  # registered, but nothing trained or shipped
    assert "zoo train alexnet-2012" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ tampering


def test_one_changed_byte_is_refused_naming_the_file_and_both_hashes(weights):
    path = weights / NAME / "model.safetensors"
    expected = read_manifest(NAME)["files"]["model.safetensors"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    actual = hashlib.sha256(bytes(data)).hexdigest()
    for load in (lambda: load_shipped(NAME), lambda: zoo.load(NAME, pretrained=True)):
        with pytest.raises(ShippedWeightsError, match="model.safetensors") as error:
            load()
        assert expected in str(error.value) and actual in str(error.value)


def test_a_missing_or_an_unlisted_file_is_refused(weights):
    (weights / NAME / "helper" / "notes.txt").write_text("added later")
    with pytest.raises(ShippedWeightsError, match=r"helper/notes\.txt is not listed"):
        load_shipped(NAME)
    (weights / NAME / "helper" / "notes.txt").unlink()
    (weights / NAME / "helper" / "model.safetensors").unlink()
    with pytest.raises(ShippedWeightsError, match=r"helper/model\.safetensors is missing"):
        verify(weights / NAME)


# ------------------------------------------------------------------------------------------------ reproduce


def test_reproduce_argv_replaces_out_and_lifts_environment_words(tmp_path):
    env, argv = reproduce_argv("OMP_NUM_THREADS=2 zoo train gpt-nano --out=runs/x --steps 3", tmp_path / "y")
    assert env == {"OMP_NUM_THREADS": "2"}
    assert argv[1:] == ["train", "gpt-nano", f"--out={tmp_path / 'y'}", "--steps", "3"]
    assert reproduce_argv("zoo train gpt-nano", tmp_path)[1][-2:] == ["--out", str(tmp_path)]


def test_zoo_reproduce_retrains_from_the_manifest_and_compares(weights, run_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # the `zoo` script does not run from the repository, where the tests' plugin family lives (all are imported
    # in this process already)
    monkeypatch.delenv("ZOO_FAMILIES", raising=False)
    out = tmp_path / "again"
    assert main(["reproduce", NAME, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "shipped" in printed and "reproduced" in printed and "difference" in printed
    assert not (tmp_path / "runs").exists()  # the manifest's --out was replaced

    report = json.loads((out / "reproduce.json").read_text())
    shipped_metrics = read_manifest(NAME)["metrics"]
    assert set(report["metrics"]) == set(shipped_metrics)
    row = report["metrics"]["val_loss"]
    assert row["shipped"] == shipped_metrics["val_loss"]
    assert row["reproduced"] == pytest.approx(row["shipped"], abs=0.05)
    assert row["difference"] == pytest.approx(row["reproduced"] - row["shipped"])
    assert report["wall_time_s"] > 0 and report["shipped_wall_time_s"] == 12.5
    assert json.loads((out / "train_config.json").read_text())["train"] == \
        json.loads((run_dir / "train_config.json").read_text())["train"]  # the same recipe and settings ran


def test_reproduce_set_overrides_the_recorded_command(weights, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ZOO_FAMILIES", raising=False)
    out = tmp_path / "again"
    assert main(["reproduce", NAME, "--out", str(out), "--set", "train.warmup=2", "--set", "train.precision=auto",
                 "--json"]) == 0
    train_settings = json.loads((out / "train_config.json").read_text())["train"]
    assert (train_settings["warmup"], train_settings["precision"]) == (2, "auto")  # the recorded warmup was 1
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["command"].endswith("--set train.warmup=2 --set train.precision=auto --overwrite")
    assert report["shipped_command"] == COMMAND

    assert main(["reproduce", NAME, "--out", str(tmp_path / "bad"), "--set", "lr=3"]) == 2
    assert "--set 'lr=3': expected section.field=value" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_a_reproduction_stopped_before_its_export_names_the_resume_command(weights, tmp_path, monkeypatch, capsys):
    """The trainer answers a SIGTERM with a checkpoint and exit status 0, exporting nothing: reproduce says so
    rather than evaluating a directory without a model."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ZOO_FAMILIES", raising=False)
    manifest_path = weights / NAME / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    stopped = ("import pathlib, sys; out = pathlib.Path(sys.argv[sys.argv.index('--out') + 1]); "
               "step = out / 'checkpoints' / 'step_00000001'; step.mkdir(parents=True); "
               f"(step / {checkpointing.MARKER!r}).touch()")  # a complete checkpoint, as the trainer leaves one
    manifest_path.write_text(json.dumps({**manifest, "command": shlex.join(["python", "-c", stopped])}))
    out = tmp_path / "again"
    assert main(["reproduce", NAME, "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert f"stopped before it exported a model into {out} (its latest checkpoint: step_00000001)" in error
    assert f"`zoo reproduce {NAME} --out {out} --resume` continues it" in error
    assert not (out / "reproduce.json").exists()


def test_reproduce_knows_when_it_would_train_in_bf16_without_bf16_units(weights, monkeypatch):
    monkeypatch.setattr("zoo.train.strategy.has_bf16_units", lambda device: False)
    assert not slow_precision(NAME, [])  # the recorded command trains in fp32
    assert slow_precision(NAME, ["train.precision=bf16"])
    assert not slow_precision(NAME, ["train.precision=bf16", "train.precision=auto"])  # the last --set wins
    monkeypatch.setitem(get_model_entry(NAME).train, "precision", "bf16")  # a recipe that says bf16 itself
    assert slow_precision(NAME, [])
    monkeypatch.setattr("zoo.train.strategy.has_bf16_units", lambda device: True)
    assert not slow_precision(NAME, [])


def test_demo_train_retrains_every_shipped_model_in_fp32_where_recorded_bf16_has_no_units(weights, tmp_path,
                                                                                         monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ZOO_FAMILIES", raising=False)
    monkeypatch.setattr("zoo.demo.slow_precision", lambda name, sets: True)  # as a bf16 recording on an AVX2 CPU
    directories = retrain_all(tmp_path / "train")
    assert directories == {NAME: tmp_path / "train" / NAME}
    report = json.loads((directories[NAME] / "reproduce.json").read_text())
    assert report["command"].endswith("--set train.precision=auto --overwrite")
    assert report["metrics"]["val_loss"]["reproduced"] == pytest.approx(report["metrics"]["val_loss"]["shipped"],
                                                                         abs=0.05)
    out = capsys.readouterr().out
    assert f"{NAME} was trained in bf16, and this machine has no bf16 units" in out
    assert f"{NAME} retrained in {report['wall_time_s'] / 60:.0f} min (its manifest: " in out


def test_demo_train_eta_scales_each_runs_wall_time_by_the_pace_on_its_manifests_machine():
    runs_left = [(1200, "machine A"), (600, "machine B")]  # (manifest's wall time still to go, its machine)
    assert _time_left(runs_left, {}) == "all runs left take about 30 min by their manifests' wall times"
    # two runs recorded on A retrained here in 300 s and 100 s where their manifests record 100 s each: twice A's
    # wall times; the run recorded on B keeps its manifest's time (B may have bf16 units that A lacks)
    assert _time_left(runs_left, {"machine A": [(300, 100), (100, 100)]}) == (
        "all runs left take about 30 min by their manifests' wall times; about 50 min at this machine's pace so far "
        "(1 of 2 scaled by the runs retrained here whose manifests name the same machine)")
    assert _time_left(runs_left[1:], {"machine A": [(300, 100)]}) == (
        "all runs left take about 10 min by their manifests' wall times")


def test_demo_train_eta_counts_only_the_steps_an_interrupted_run_has_left(weights, tmp_path):
    recorded = read_manifest(NAME)["wall_time_s"]
    steps = json.loads((weights / NAME / "train_config.json").read_text())["train"]["steps"]
    manifest, run_dir = read_manifest(NAME), tmp_path / NAME
    assert _recorded_time_left(NAME, manifest, run_dir, resumed=False) == recorded
    assert _recorded_time_left(NAME, manifest, run_dir, resumed=True) == recorded  # started, no checkpoint: all of it
    checkpoint = run_dir / "checkpoints" / f"step_{steps // 2:08d}"
    checkpoint.mkdir(parents=True)
    (checkpoint / "COMPLETE").touch()
    assert _recorded_time_left(NAME, manifest, run_dir, resumed=True) == pytest.approx(
        recorded * (1 - (steps // 2) / steps))
    # started for other weights: it starts over
    assert _recorded_time_left(NAME, manifest, run_dir, resumed=False) == recorded


def test_demo_train_eta_takes_this_machines_pace_only_from_runs_made_here_from_their_start():
    run = {"resumed_from": None, "shipped_wall_time_s": 100.0, "wall_time_s": 300.0, "machine": "machine A"}
    assert _paced(run, "machine A")
    assert not _paced(run, "machine B")  # made on another machine than this one
    assert not _paced({**run, "resumed_from": "step_00000101"}, "machine A")  # its wall time is its last stretch's
    assert not _paced({**run, "shipped_wall_time_s": None}, "machine A")  # no recorded wall time to compare with


def test_demo_train_reports_each_retrained_figure_beside_the_shipped_one(weights, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ZOO_FAMILIES", raising=False)
    target = next(t for t in TARGETS if t.model == NAME and t.metric == "top1")
    shipped_only = Report()
    metrics_section(shipped_only, {NAME: weights / NAME})  # `zoo demo`: the shipped figures, no comparison
    assert ">shipped</th>" not in shipped_only.html() and "on the shipped weights themselves" in shipped_only.html()

    manifest_path = weights / NAME / "manifest.json"  # a shipped figure the 2-step retraining cannot equal
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "metrics": {**manifest["metrics"], "top1": 0.5}}))
    directories = retrain_all(tmp_path / "train")
    capsys.readouterr()
    retrained = Report()
    metrics_section(retrained, directories)
    top1 = json.loads((directories[NAME] / "reproduce.json").read_text())["metrics"]["top1"]
    assert top1["shipped"] == 0.5 and top1["reproduced"] < 0.5
    html = retrained.html()
    assert '<th class="num">shipped</th>' in html and "<code>zoo demo --train</code> retrained" in html
    row = html[html.index(target.label):].split("</tr>")[0]
    assert target.show(top1["reproduced"]) in row and target.show(top1["shipped"]) in row
    assert f"{NAME}, {target.label}: retrained {target.show(top1['reproduced'])}, shipped " \
           f"{target.show(top1['shipped'])}" in capsys.readouterr().out


def test_demo_train_run_again_keeps_finished_models_and_resumes_an_interrupted_one(weights, tmp_path, monkeypatch,
                                                                                   capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ZOO_FAMILIES", raising=False)
    root = tmp_path / "train"
    retrain_all(root)
    report_path = root / NAME / "reproduce.json"
    first = json.loads(report_path.read_text())
    assert first["resumed_from"] is None and first["command"].endswith("--overwrite")

    capsys.readouterr()
    with monkeypatch.context() as patch:  # a finished reproduction of the weights shipped now is kept
        patch.setattr("zoo.demo.reproduce", lambda *args, **kwargs: pytest.fail("retrained a finished model"))
        patch.setattr("zoo.demo._recorded_time_left",  # nor is any of its time left in the ETA
                      lambda *args, **kwargs: pytest.fail("counted a finished model's wall time as left"))
        assert retrain_all(root) == {NAME: root / NAME}
    kept = capsys.readouterr().out
    assert f"{NAME} was retrained already" in kept
    assert f"{NAME} retrained in {first['wall_time_s'] / 60:.0f} min" in kept  # its pace counts for the ETA

    report_path.unlink()  # cut short after its last checkpoint, before the report: it continues from there
    retrain_all(root)
    second = json.loads(report_path.read_text())
    assert second["resumed_from"] == "step_00000002" and second["command"].endswith("--resume")
    assert second["metrics"]["val_loss"]["reproduced"] == pytest.approx(first["metrics"]["val_loss"]["reproduced"],
                                                                        abs=1e-6)

    manifest_path = weights / NAME / "manifest.json"  # the weights shipped again since: that run is another's
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "commit": "0" * 40}))
    capsys.readouterr()
    retrain_all(root)
    assert f"retraining {NAME}" in capsys.readouterr().out
    third = json.loads(report_path.read_text())
    assert third["shipped_commit"] == "0" * 40
    assert third["resumed_from"] is None and third["command"].endswith("--overwrite")  # started over


def test_reproduce_of_a_name_without_shipped_weights_exits_2_listing_the_shipped_ones(shipped, monkeypatch, capsys):
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(shipped))
    for name in ("no-such-model", "gpt-nano"):
        assert main(["reproduce", name]) == 2
        error = capsys.readouterr().err
        assert f"no shipped weights named {name!r}" in error and f"shipped: {NAME}" in error
