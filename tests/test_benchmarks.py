"""The benchmark runner's report, the --quick --json contract of the benchmarks, the race's bookkeeping and the
GPU script's dry run. No timing is asserted: speed lives in the benchmarks, as ratios against a peer measured in
the same run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
CASE_KEYS = {"case", "zoo", "peer", "unit", "ratio"}

sys.path.insert(0, str(BENCHMARKS))  # the benchmarks import each other as scripts (timing.py)
import nanogpt_baby  # noqa: E402
import run_all  # noqa: E402


def run_script(*args, timeout=120) -> subprocess.CompletedProcess:
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)  # tests.families
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": pythonpath}
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=timeout,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_the_report_holds_every_case_with_its_ratio_and_the_chart_is_written(tmp_path):
    listed = tmp_path / "listed.json"
    listed.write_text(json.dumps([
        {"case": "attention time", "zoo": 10.0, "peer": 50.0, "unit": "ms", "ratio": 5.0},
        {"case": "attention memory", "zoo": 4.0, "peer": 100.0, "unit": "MiB", "ratio": 25.0, "target": 20.0}]))
    wrapped = tmp_path / "wrapped.json"  # a dict with "cases" (the race's JSON line) reads the same
    wrapped.write_text(json.dumps({"nanogpt_wall_s": 100.0, "cases": [
        {"case": "decode", "zoo": 150.0, "peer": 100.0, "unit": "tokens/s", "target": 2.0},  # no ratio: from unit
        {"case": "race", "zoo": 80.0, "peer": 100.0, "unit": "s", "target": 2.0}]}))
    results = [{"name": "attention", "seconds": 3.0, "cases": run_all.load_cases(listed)},
               {"name": "text", "seconds": 4.0, "cases": run_all.load_cases(wrapped)},
               {"name": "speech", "seconds": 1.0, "error": "exited with 1", "cases": []}]
    assert [c["ratio"] for c in results[1]["cases"]] == [1.5, 1.25]  # a rate: zoo / peer; a time: peer / zoo
    meta = {"command": "python benchmarks/run_all.py", "quick": False, "threads": 2, "machine": run_all.machine(),
            "load_before": 0.5, "load_after": 1.25, "date": "2026-11-30 18:00 UTC", "seconds": 60.0}
    run_all.write_results(results, meta, tmp_path / "out")

    report = (tmp_path / "out" / "results.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0].startswith("| benchmark | case | zoo | peer | unit | ratio | target | met |")
    assert "| attention | attention time | 10.0 | 50.0 | ms | 5.00x |  |  |" in rows
    assert "| attention | attention memory | 4.00 | 100 | MiB | 25.00x | 20x | yes |" in rows
    assert "| text | decode | 150 | 100 | tokens/s | 1.50x | 2x | **no** |" in rows
    assert "| text | race | 80.0 | 100 | s | 1.25x | 2x | **no** |" in rows
    assert any(row.startswith("| speech | **failed: exited with 1**") for row in rows)
    machine = meta["machine"]
    for fact in (f"{machine['cores']} cores", f"torch {machine['torch']}", f"diffusers {machine['diffusers']}",
                 f"transformers {machine['transformers']}", "threads: 2", "0.50 before, 1.25 after",
                 "2026-11-30 18:00 UTC"):
        assert fact in report
    assert (tmp_path / "out" / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_attention_quick_json_has_the_documented_cases(tmp_path):
    out = tmp_path / "attention.json"
    run_script(str(BENCHMARKS / "attention.py"), "--quick", "--lengths", "256", "--json", str(out))
    cases = json.loads(out.read_text())
    assert [c["case"].rsplit(": ", 1)[1] for c in cases] == ["time", "peak memory"]
    for case in cases:
        assert CASE_KEYS <= set(case) and case["zoo"] > 0 and case["peer"] > 0
    assert cases[0]["ratio"] == pytest.approx(cases[0]["peer"] / cases[0]["zoo"])


def test_muon_quick_json_times_zoos_newton_schulz_choice_against_the_other(tmp_path):
    """benchmarks/muon.py: zoo's figure is the Newton-Schulz precision MuonWithAdamW picks on this machine (bf16
    where the CPU has bf16 units), the peer the other one, both over the same dit-shapes matrices."""
    import torch

    from zoo.train.strategy import has_bf16_units

    out = tmp_path / "muon.json"
    printed = run_script(str(BENCHMARKS / "muon.py"), "--quick", "--threads", "1", "--json", str(out)).stdout
    (case,) = json.loads(out.read_text())
    assert CASE_KEYS <= set(case) and case["zoo"] > 0 and case["peer"] > 0
    assert case["ratio"] == pytest.approx(case["peer"] / case["zoo"])
    chosen, other = ("bf16", "fp32") if has_bf16_units(torch.device("cpu")) else ("fp32", "bf16")
    assert f"Newton-Schulz in {chosen} (zoo's choice" in case["case"] and f"peer: {other})" in case["case"]
    assert "61 hidden matrices" in printed  # the denoiser's matrices Muon takes, as in training


def test_nanogpt_step_quick_json_is_one_line_with_the_documented_keys():
    lines = run_script(str(BENCHMARKS / "nanogpt_baby.py"), "--quick", "--threads", "1", "--json").stdout
    result = json.loads(lines.strip().splitlines()[-1])
    (case,) = result["cases"]
    assert CASE_KEYS <= set(case) and case["unit"] == "ms"
    assert case["ratio"] == pytest.approx(case["peer"] / case["zoo"])


def test_the_race_counts_zoo_from_its_launch_to_its_first_evaluation_at_the_target(tmp_path):
    """The race on a small file, both commands shortened (--quick): one JSON line with nanoGPT's wall time and
    final loss and zoo's time to reach it, read off zoo's run log (its evaluations carry elapsed_s)."""
    data = tmp_path / "text.txt"
    data.write_text((BENCHMARKS / "data" / "tinyshakespeare.txt").read_text(encoding="utf-8")[:30_000])
    # AdamW, not the race's Muon: torch.optim.Muon orthogonalises in bf16, many times slower than an AdamW step on a
    # CPU without bf16 units (README, the race); this test is about the counting (Muon learning: the test below)
    lines = run_script(str(BENCHMARKS / "nanogpt_baby.py"), "--race", "--quick", "--threads", "1", "--data",
                       str(data), "--zoo-set", "train.eval_every=20", "--zoo-set", "train.optimizer=adamw",
                       "--zoo-set", "train.lr=2e-3", "--zoo-set", "train.min_lr=2e-4", "--json", timeout=240).stdout
    result = json.loads(lines.strip().splitlines()[-1])
    for key in ("nanogpt_wall_s", "nanogpt_val_loss", "zoo_time_to_loss_s", "zoo_wall_s", "zoo_val_loss",
                "time_ratio", "zoo_settings", "load_average"):
        assert key in result
    assert result["iterations"] == nanogpt_baby.QUICK_ITERS
    assert result["zoo_settings"]["train.steps"] == nanogpt_baby.QUICK_ITERS
    assert result["zoo_settings"]["train.eval_every"] == "20"  # a --zoo-set is taken as given, after the scaling
    run = result["runs"][0]
    assert 0 < run["zoo_log_opened_s"] < run["zoo_wall_s"]
    # AdamW's 100 steps pass nanoGPT's 100 iterations' loss by step 60 here: an evaluation on the way says when
    assert result["zoo_step_at_loss"] % 20 == 0 and result["zoo_step_at_loss"] < nanogpt_baby.QUICK_ITERS
    assert run["zoo_log_opened_s"] < result["zoo_time_to_loss_s"] < result["zoo_wall_s"]
    assert result["time_ratio"] == pytest.approx(result["zoo_time_to_loss_s"] / result["nanogpt_wall_s"])
    (case,) = result["cases"]
    assert CASE_KEYS <= set(case) and case["target"] == 2.0


def test_the_time_to_a_loss_is_the_first_evaluation_at_or_below_it():
    evaluations = [(250, 10.0, 2.5), (500, 20.0, 1.9), (750, 30.0, 1.8)]
    assert nanogpt_baby.time_to(evaluations, 1.9) == (500, 20.0)
    assert nanogpt_baby.time_to(evaluations, 1.7) == (None, None)


def test_the_gpu_script_dry_run_works_on_a_cpu(tmp_path):
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": pythonpath}
    result = subprocess.run(["bash", str(BENCHMARKS / "gpu.sh"), "--dry-run"], capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "would run: torchrun" in result.stdout and "train gpt-124m" in result.stdout
    assert "dry run, gpt-nano fp32 on the CPU:" in result.stdout and "tokens/s, MFU" in result.stdout


def _newton_schulz_step(bf16_units: bool, monkeypatch):
    """One MuonWithAdamW step of a tiny GPT's first hidden matrix, on a device with or without bf16 units: (the
    Muon optimizer built, how far the weight moved per unit of learning rate, the Newton-Schulz iterate of its
    gradient computed in float64)."""
    import torch
    from torch.optim import _muon

    import zoo
    from zoo.registry import split_decay
    from zoo.train import trainer
    from zoo.train.trainer import MuonWithAdamW

    monkeypatch.setattr(trainer, "has_bf16_units", lambda device: bf16_units)
    model = zoo.load("gpt-nano", vocab_size=11, backbone=dict(n_layers=1, n_heads=2, dim=16, max_seq_len=8))
    named = list(model.named_parameters())
    optimizer, _ = MuonWithAdamW.build(split_decay(named, 0.0), [1.0, 1.0], named, model, lr=1e-2, betas=(0.9, 0.95))
    muon = optimizer.optimizers["muon"]
    weight = muon.param_groups[0]["params"][0]
    assert weight.shape[0] > weight.shape[1]  # a tall matrix: the iteration runs on its transpose
    weight.grad = torch.randn(weight.shape, generator=torch.Generator().manual_seed(0))
    a, b, c = muon.param_groups[0]["ns_coefficients"]
    x = weight.grad.double().T
    x = x / x.norm()
    for _ in range(muon.param_groups[0]["ns_steps"]):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    reference = x.T.float()  # (the momentum only scales the first update, and the iteration divides scale out)
    before = weight.detach().clone()
    optimizer.step()
    moved = (before - weight.detach()) / _muon._adjust_lr(1e-2, "match_rms_adamw", weight.shape)
    return muon, moved, reference


def test_muon_runs_its_newton_schulz_iterations_in_fp32_where_the_device_has_no_bf16_units(monkeypatch):
    """Without bf16 units (an AVX2 CPU), Muon orthogonalises in fp32 (Fp32Muon), not in torch's bf16: one step
    moves a weight by the learning rate times the Newton-Schulz iterate of its gradient computed in float64, to
    fp32 precision. With them it is torch's own Muon, whose bf16 iterate is off by far more: so each check would
    fail on the other's path."""
    import torch

    from zoo.train.trainer import Fp32Muon

    muon, moved, reference = _newton_schulz_step(False, monkeypatch)
    assert isinstance(muon, Fp32Muon)
    assert (moved - reference).abs().max() < 1e-5, (moved - reference).abs().max()

    muon, moved, reference = _newton_schulz_step(True, monkeypatch)
    assert type(muon) is torch.optim.Muon
    assert (moved - reference).abs().max() > 1e-3, (moved - reference).abs().max()


def test_muon_takes_the_hidden_matrices_adamw_the_rest_and_its_state_round_trips(tmp_path):
    """train.optimizer=muon (the race's optimizer): Muon on the blocks' weight matrices; the embedding (tied to the
    head), norms and biases on AdamW; each family group keeps its weight decay and LR scale; one state dict."""
    import torch
    import torch.nn.functional as F

    import zoo
    from zoo.errors import InputError
    from zoo.registry import split_decay
    from zoo.train.trainer import MuonWithAdamW, TrainConfig

    def tiny_gpt():
        torch.manual_seed(0)
        return zoo.load("gpt-nano", vocab_size=11, backbone=dict(n_layers=1, n_heads=2, dim=16, max_seq_len=8))

    model = tiny_gpt()
    named = list(model.named_parameters())
    groups = split_decay(named, 0.1)  # matrices (decayed), vectors (not)
    optimizer, scales = MuonWithAdamW.build(groups, [1.0, 0.5], named, model, lr=1e-2, betas=(0.9, 0.95))
    on_muon = {id(p) for g in optimizer.optimizers["muon"].param_groups for p in g["params"]}
    assert sorted(n for n, p in named if id(p) in on_muon) == [
        "backbone.blocks.0.attn.proj.weight", "backbone.blocks.0.attn.qkv.weight",
        "backbone.blocks.0.mlp.down.weight", "backbone.blocks.0.mlp.gate_up.weight"]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.1, 0.0]  # muon; adamw: embedding, vectors
    assert scales == [1.0, 1.0, 0.5] and len(optimizer.param_groups) == len(scales)

    def step():
        model(torch.randint(0, 11, (2, 8))).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()

    before = [p.detach().clone() for _, p in named]
    step()
    assert all(not torch.equal(b, p) for b, (_, p) in zip(before, named))
    # and it learns: next-token loss on one fixed batch, fitted by Muon and AdamW together, against the same fit with
    # Muon's learning rate at 0 (AdamW alone moving the embedding and gains)
    batch = torch.randint(0, 11, (4, 9), generator=torch.Generator().manual_seed(1))

    def fit(muon_lr: float) -> list[float]:
        fresh = tiny_gpt()
        params = list(fresh.named_parameters())
        fitter, _ = MuonWithAdamW.build(split_decay(params, 0.1), [1.0, 0.5], params, fresh, lr=1e-2, betas=(0.9, 0.95))
        for group in fitter.optimizers["muon"].param_groups:
            group["lr"] = muon_lr
        losses = []
        for _ in range(60):
            loss = F.cross_entropy(fresh(batch[:, :-1]).flatten(0, 1), batch[:, 1:].flatten())
            loss.backward()
            fitter.step()
            fitter.zero_grad()
            losses.append(loss.item())
        return losses

    with_muon, without = fit(1e-2), fit(0.0)
    assert with_muon[-1] < 0.6 * with_muon[0] and with_muon[-1] < without[-1] - 0.2, (with_muon[-1], without[-1])
    torch.save(optimizer.state_dict(), tmp_path / "optim.pt")
    again, _ = MuonWithAdamW.build(groups, [1.0, 0.5], named, model, lr=1e-2, betas=(0.9, 0.95))
    again.load_state_dict(torch.load(tmp_path / "optim.pt", weights_only=True))
    saved, loaded = optimizer.state_dict(), again.state_dict()
    for kind in ("muon", "adamw"):
        assert loaded[kind]["param_groups"] == saved[kind]["param_groups"]
        for index, state in saved[kind]["state"].items():
            assert all(torch.equal(value, loaded[kind]["state"][index][key]) for key, value in state.items())
    for bad in ({"optimizer": "sgd"}, {"optimizer": "muon", "strategy": "zero1"},
                {"optimizer": "muon", "precision": "fp16"}):
        with pytest.raises(InputError, match="train.optimizer"):
            TrainConfig(**bad)


def test_the_inference_profile_names_the_top_operators_of_each_path(tmp_path):
    out = tmp_path / "profile.json"
    printed = run_script(str(BENCHMARKS / "profile_inference.py"), "--rounds", "1", "--rows", "3", "--json",
                         str(out), timeout=300).stdout
    results = json.loads(out.read_text())
    assert [r["case"] for r in results] == ["diffusion", "speech"]
    for result in results:
        assert result["best_ms"] > 0 and len(result["top"]) == 3
        assert all(0 < op["share"] <= 1 and op["calls"] >= 1 for op in result["top"])
        assert f"== {result['case']}: best of 1 calls" in printed
    # the DiT's multiplies run on the packed weights (the profile's reason for packing them)
    assert "mkldnn::_linear_pointwise" in [op["op"] for op in results[0]["top"]]
