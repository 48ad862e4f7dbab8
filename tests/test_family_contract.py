"""The family contract carries an encoder-decoder: tests/families/reverse.py, a test-only family that learns to
reverse digit strings, trained, checkpointed, distributed, evaluated and decoded by the unchanged zoo/train,
zoo/nn and zoo/decoding (none of which names it)."""

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # a bare `pytest` puts only tests/ on the path; the plugin is tests.families.reverse
    sys.path.insert(0, str(ROOT))

import zoo  # noqa: E402
from tests.families import reverse  # noqa: E402  (registers the family and reverse-tiny)
from zoo.registry import get_family  # noqa: E402
from zoo.train import TrainConfig, Trainer  # noqa: E402
from zoo.train.distributed import teardown  # noqa: E402
from zoo.train.metrics import measure_flops  # noqa: E402
from zoo.train.trainer import split_loss, to_device  # noqa: E402

PLUGIN = "tests.families.reverse"
STEPS = 300


def train_config(**overrides) -> TrainConfig:
    entry = zoo.registry.get_model_entry("reverse-tiny")
    return TrainConfig(**{**entry.train, "eval_every": 0, "log_every": 10, "tensorboard": False, **overrides})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """reverse-tiny trained in-process through Trainer.fit (strategy single, EMA 0.99), exported."""
    out = tmp_path_factory.mktemp("reverse")
    trainer = Trainer(get_family("reverse"), reverse.reverse_tiny(), reverse.ReverseDataConfig(),
                      train_config(steps=STEPS, ema=0.99, checkpoint_every=STEPS // 2), out, name="reverse-tiny")
    start = time.perf_counter()
    metrics = trainer.fit()
    seconds = time.perf_counter() - start
    print(f"\nreverse-tiny: {STEPS} steps + export in {seconds:.1f} s; {metrics}")
    return trainer, out, metrics


# ---------------------------------------------------------------------------------------- 1. it learns


@pytest.mark.slow
def test_trained_model_reverses_held_out_strings_greedy_and_beam(trained):
    trainer, out, metrics = trained
    model = zoo.load(out).eval()  # the exported directory, rebuilt through the registry
    features = trainer.data.frozen["features"]
    strings = trainer.data.val.strings
    assert len(strings) == 320 and all(reverse.is_validation(s) for s in strings)
    assert {len(s) for s in strings} == set(range(2, 13))  # every length, mixed within each decoded batch
    # held out: no training item is a validation string
    assert not any(reverse.is_validation(trainer.data.train[i]["source"][1:].tolist()) for i in range(2000))

    greedy = reverse.exact_accuracy(model, features, strings)
    beam = reverse.exact_accuracy(model, features, strings, beam_size=4)
    print(f"exact-sequence accuracy on {len(strings)} held-out strings: greedy {greedy:.4f}, beam(4) {beam:.4f}")
    assert greedy >= 0.95 and beam >= 0.95
    assert metrics["exact_accuracy"] == greedy and metrics["beam_exact_accuracy"] == beam  # what fit() reported

    # An untrained model of the same shape gets none right, so the accuracy is the training's.
    torch.manual_seed(0)
    assert reverse.exact_accuracy(reverse.ReverseModel(model.config), features, strings[:64]) == 0.0


def test_decoding_encodes_each_string_once_and_caches_cross_attention(trained):
    """Greedy and beam search call the encoder once, and each decoder layer's cross-attention K/V projection
    once (in prefill); every later step reads the cached keys/values, reordered with the beams."""
    trainer, out, _ = trained
    model = zoo.load(out).eval()
    calls = {"encoder": 0, "cross_kv": 0, "decoder": 0}
    model.encoder.register_forward_hook(lambda *a: calls.__setitem__("encoder", calls["encoder"] + 1))
    model.decoder.register_forward_hook(lambda *a: calls.__setitem__("decoder", calls["decoder"] + 1))
    for block in model.decoder.blocks:
        block.cross_attn.kv.register_forward_hook(lambda *a: calls.__setitem__("cross_kv", calls["cross_kv"] + 1))
    strings = [[1, 2, 3], [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2], [4, 4]]
    for beam_size in (None, 4):
        calls.update(encoder=0, cross_kv=0, decoder=0)
        got = reverse.reverse_strings(model, trainer.data.frozen["features"], strings, beam_size)
        assert got == [s[::-1] for s in strings], beam_size
        assert calls["encoder"] == 1 and calls["cross_kv"] == len(model.decoder.blocks), (beam_size, calls)
        if beam_size is None:  # prefill + one step per new token of the longest string (12 digits; EOS not fed)
            assert calls["decoder"] == 13


# ---------------------------------------------------------------------------------------- 4. EMA


@pytest.mark.slow
def test_evaluation_and_export_use_the_ema_weights(trained):
    trainer, out, _ = trained
    family, data = trainer.family, trainer.data
    ema_copy = copy.deepcopy(trainer.raw_model)
    with torch.no_grad():
        for param, shadow in zip([p for p in ema_copy.parameters() if p.requires_grad], trainer.ema.shadow_params):
            param.copy_(shadow)
    via_trainer = trainer.evaluate(quick=True)
    of_ema = family.evaluate(ema_copy, data, trainer.data_config, quick=True)
    of_live = family.evaluate(trainer.raw_model, data, trainer.data_config, quick=True)
    assert via_trainer == of_ema
    assert abs(of_live["val_loss"] - of_ema["val_loss"]) > 1e-7 * of_ema["val_loss"]  # they are different weights

    exported = safetensors.torch.load_file(out / "model.safetensors")
    live = trainer.raw_model.state_dict()
    assert set(exported) == set(live)
    for name, value in ema_copy.state_dict().items():
        torch.testing.assert_close(exported[name], value, rtol=0, atol=0)
    assert any(not torch.equal(exported[name], live[name]) for name in live)


# ---------------------------------------------------------------------------------------- 5. frozen module


def holds(tensors, frozen: torch.nn.Module) -> bool:
    """Does any tensor in `tensors` equal one of the frozen module's parameters?"""
    return any(t.shape == p.shape and torch.equal(t.cpu(), p.detach().cpu())
               for t in tensors for p in frozen.parameters())


@pytest.mark.slow
def test_frozen_features_are_not_trained_saved_counted(trained):
    trainer, out, _ = trained
    features = trainer.data.frozen["features"]
    data_config = trainer.data_config
    # never trained: the weights are still the seeded ones, with no gradients
    fresh = reverse.DigitFeatures(data_config.feature_dim, seed=data_config.seed)
    for name, value in fresh.state_dict().items():
        assert torch.equal(features.state_dict()[name], value), name
    assert not any(p.requires_grad or p.grad is not None for p in features.parameters())
    assert not features.training

    # not in the optimizer, the checkpoint or the exported weights
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not optimized & {id(p) for p in features.parameters()}
    assert optimized == {id(p) for p in trainer.raw_model.parameters()}
    state = torch.load(out / "checkpoints" / f"step_{STEPS:08d}" / "state.pt", weights_only=True)
    assert set(state["model"]) == set(trainer.raw_model.state_dict())
    assert not holds(state["model"].values(), features) and not holds(state["sharded"]["ema"].values(), features)
    assert not holds(safetensors.torch.load_file(out / "model.safetensors").values(), features)

    # left out of the FLOP count: the trainer's measured figure is the model's alone
    sample = to_device(trainer.family.collate([trainer.data.train[0]]), trainer.env.device)

    def forward_backward():
        split_loss(trainer.family.loss(trainer.raw_model, sample, features=features), "reverse")[0].backward()

    everything = measure_flops(forward_backward)
    model_only = measure_flops(forward_backward, exclude=[features])
    of_features = measure_flops(lambda: features(sample["source"]))
    trainer.raw_model.zero_grad(set_to_none=True)
    assert trainer.flops_per_sample == model_only
    assert of_features > 0 and everything - model_only == of_features


def test_fsdp_shards_the_model_but_not_the_frozen_features(tmp_path):
    """TrainConfig(strategy="fsdp") in one process: a process group of one, the same code path as many ranks."""
    from torch.distributed.tensor import DTensor

    try:
        trainer = Trainer(get_family("reverse"), reverse.reverse_tiny(), reverse.ReverseDataConfig(val_size=16),
                          train_config(steps=2, batch_size=8, strategy="fsdp"), tmp_path)
        before = {k: v.clone() for k, v in trainer.data.frozen["features"].state_dict().items()}
        for _ in range(2):
            trainer.train_step()
        assert all(isinstance(p, DTensor) for p in trainer.model.parameters())
        for name, param in trainer.data.frozen["features"].named_parameters():
            assert type(param) is torch.nn.Parameter and not isinstance(param.data, DTensor), name
            assert torch.equal(param, before[name]), name
        # decoding calls prefill/step, not forward: the sharded model gathers its weights around them too
        # (here right after a step, when FSDP has resharded everything; no forward() has gathered them)
        with torch.no_grad():
            accuracy = reverse.exact_accuracy(trainer.model, trainer.frozen["features"], trainer.data.val.strings)
        assert 0 <= accuracy <= 1
    finally:
        teardown()


# ---------------------------------------------------------------------------------------- 6, 7


def test_zoo_train_and_nn_never_name_the_family():
    for package in ("train", "nn"):
        for path in sorted((ROOT / "zoo" / package).rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                assert not any(word in line for word in ("reverse", "Reverse", "digit")), f"{path}:{number}: {line}"


@pytest.mark.slow
def test_family_metric_is_logged_every_step(trained):
    _, out, _ = trained
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == list(range(10, STEPS + 1, 10))
    assert all(0 <= r["token_accuracy"] <= 1 for r in steps)
    assert steps[0]["token_accuracy"] < 0.8 and steps[-1]["token_accuracy"] > 0.99  # it is the real accuracy
    assert records[-1]["val_exact_accuracy"] >= 0.95 and "val_beam_exact_accuracy" in records[-1]


# ---------------------------------------------------------------------------------------- 2, 3: processes

SMALL = ["--set", "train.batch_size=16", "--set", "train.log_every=1", "--set", "train.eval_every=0",
         "--set", "train.tensorboard=false", "--set", "train.warmup=2", "--set", "data.val_size=16"]


def env_for(home: Path) -> dict:
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "OMP_NUM_THREADS": "1", "ZOO_HOME": str(home), "PYTHONUNBUFFERED": "1",
            "ZOO_FAMILIES": PLUGIN, "PYTHONPATH": pythonpath}


def zoo_train(nproc: int | None, *args) -> list[str]:
    if nproc is None:
        return [sys.executable, "-m", "zoo.cli", "train", "reverse-tiny", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "zoo.cli", "train", "reverse-tiny", *args]


def run(cmd, home, timeout=240):
    result = subprocess.run(cmd, env=env_for(home), capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def logged(run_dir: Path, key: str = "loss") -> dict[int, float]:
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return {r["step"]: r[key] for r in records if key in r}


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    home, out = tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("runs") / "single"
    run(zoo_train(None, "--out", str(out), "--steps", "8", *SMALL), home)
    return out, home


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_ranks_match_one_process(strategy, single_run, tmp_path):
    reference_dir, home = single_run
    out = tmp_path / strategy
    # eval_every=4: the family's evaluation (greedy decoding on prefill/step) runs on every rank mid-training,
    # on the wrapped (under fsdp, sharded) model, and must not shift the training that follows
    run(zoo_train(2, "--out", str(out), "--steps", "8", *SMALL, "--set", f"train.strategy={strategy}",
                  "--set", "train.eval_every=4"), home)
    reference, got = logged(reference_dir), logged(out)
    assert 4 in logged(out, "val_exact_accuracy")
    assert sorted(got) == list(range(1, 9))
    assert reference[8] < reference[1] - 0.1  # it learns, so equal curves are not equal constants
    for step in range(1, 9):
        assert got[step] == pytest.approx(reference[step], rel=1e-5), (strategy, step)
        # the family's metric is averaged over ranks like the loss
        assert logged(out, "token_accuracy")[step] == pytest.approx(logged(reference_dir, "token_accuracy")[step],
                                                                    rel=1e-5)
    assert isinstance(zoo.load(out).config, reverse.ReverseConfig)  # the exported model loads


@pytest.mark.slow
def test_kill_and_resume_with_workers_continues_exactly(tmp_path, zoo_home):
    """kill -9 after the step-4 checkpoint, --resume: the same losses as the run never interrupted, with two
    DataLoader workers computing the items in both; and workers give the same losses as none."""
    common = ["--steps", "16", *SMALL, "--set", "train.batch_size=64", "--set", "train.checkpoint_every=4",
              "--set", "model.decoder.dropout=0.1"]  # dropout: the resumed RNG streams must match too
    workers = [*common, "--set", "train.num_workers=2"]
    straight, in_process = tmp_path / "straight", tmp_path / "no_workers"
    run(zoo_train(None, *workers, "--out", str(straight)), zoo_home)
    run(zoo_train(None, *common, "--out", str(in_process)), zoo_home)

    resumed = tmp_path / "resumed"
    process = subprocess.Popen(zoo_train(None, *workers, "--out", str(resumed)), env=env_for(zoo_home), cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    marker = resumed / "checkpoints" / "step_00000004" / "COMPLETE"
    deadline = time.time() + 180
    while not marker.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.005)
    finished = process.poll() is not None
    os.killpg(process.pid, signal.SIGKILL)  # the trainer and its DataLoader workers (its own session)
    process.wait()
    assert not finished and marker.exists(), "training finished (or failed) before it could be killed"
    assert not (resumed / "checkpoints" / "step_00000016").exists()

    result = run(zoo_train(None, *workers, "--out", str(resumed), "--resume"), zoo_home)
    assert "at step" in result.stdout + result.stderr
    a, b, c = logged(straight), logged(resumed), logged(in_process)
    assert sorted(a) == sorted(b) == sorted(c) == list(range(1, 17))
    assert a[16] < a[1] - 0.1
    for step in range(1, 17):
        assert b[step] == pytest.approx(a[step], rel=1e-6), ("resumed", step)
        assert c[step] == pytest.approx(a[step], rel=1e-6), ("num_workers=0", step)
