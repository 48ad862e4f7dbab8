"""The family contract v2 and the import graph: plugin families, loud import failures, param groups with
their own learning rates, per-step loss metrics, MFU from the trained context, FLOPs without frozen modules,
and no import cycle (families never reach into zoo/train)."""

import ast
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from zoo.nn import transformer_flops_per_token
from zoo.registry import get_family, split_decay
from zoo.train import TrainConfig, Trainer, metrics
from zoo.train.metrics import measure_flops

ROOT = Path(__file__).resolve().parents[1]


def zoo_imports(path: Path, modules) -> set[str]:
    """Every zoo module a source file imports, at the top or inside functions (`from zoo.train import
    checkpointing` imports the submodule zoo.train.checkpointing; `from zoo.registry import Family`, zoo.registry)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "zoo"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "zoo":
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in modules else node.module)
    return found


def module_graph() -> dict[str, set[str]]:
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
               for p in (ROOT / "zoo").rglob("*.py")}
    return {name: {m for m in zoo_imports(path, modules) if m in modules and m != name}
            for name, path in modules.items()}


def test_no_import_cycle_between_zoo_modules():
    graph = module_graph()
    # `zoo` (the package __init__) re-exports the public API: every submodule import passes through it
    graph = {name: deps - {"zoo"} for name, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(name, path):
        if state.get(name) == 1:
            raise AssertionError("import cycle: " + " -> ".join([*path, name]))
        if state.get(name) == 2:
            return
        state[name] = 1
        for dep in sorted(graph[name]):
            visit(dep, [*path, name])
        state[name] = 2

    for name in sorted(graph):
        visit(name, [])


def test_families_and_the_backbone_import_nothing_from_the_trainer():
    graph = module_graph()
    offenders = {name: sorted(d for d in deps if d.startswith("zoo.train"))
                 for name, deps in graph.items() if name.startswith(("zoo.nn", "zoo.text", "zoo.vision", "zoo.data",
                                                                     "zoo.speech", "zoo.diffusion"))}
    assert not {k: v for k, v in offenders.items() if v}
    assert not any(d.startswith(("zoo.checkpoint", "zoo.train", "zoo.models")) for d in graph["zoo.registry"])


def test_a_listed_family_that_fails_to_import_is_an_error():
    env = {**os.environ, "ZOO_FAMILIES": "zoo_no_such_family_module", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "zoo.cli", "list"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    assert "zoo_no_such_family_module" in result.stderr and "ZOO_FAMILIES" in result.stderr


def test_split_decay_puts_matrices_and_vectors_apart():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    groups = split_decay(list(model.named_parameters()), 0.1)
    assert [(len(g["params"]), g["weight_decay"]) for g in groups] == [(1, 0.1), (3, 0.0)]


# ------------------------------------------------------------------------------------------ trainer hooks


def tiny_trainer(corpus, out, family=None, **train) -> Trainer:
    family = family or get_family("gpt")
    config = dataclasses.replace(family.config_class(), backbone=dataclasses.replace(
        family.config_class().backbone, n_layers=2, dim=32, n_heads=2, max_seq_len=16))
    data_config = family.data_config(tokenizer="char", seq_len=train.pop("seq_len", None))
    settings = {"batch_size": 8, "log_every": 1, "eval_every": 0, "tensorboard": False, "warmup": 2, "lr": 1e-2,
                "steps": 4, **train}
    return Trainer(family, config, data_config, TrainConfig(**settings), out, str(corpus), "gpt-nano")


def test_param_groups_hook_and_lr_scale(tmp_path, corpus):
    gpt = get_family("gpt")

    def embeddings_slower(named, weight_decay):
        embed = [p for n, p in named if n.startswith("embed")]
        rest = [p for n, p in named if not n.startswith("embed")]
        return [{"params": embed, "weight_decay": 0.0, "lr_scale": 0.25},
                {"params": rest, "weight_decay": weight_decay}]

    trainer = tiny_trainer(corpus, tmp_path, family=dataclasses.replace(gpt, param_groups=embeddings_slower))
    result = trainer.train_step()
    lrs = [group["lr"] for group in trainer.optimizer.param_groups]
    assert lrs == pytest.approx([0.25 * result["lr"], result["lr"]])
    assert trainer.optimizer.param_groups[0]["params"][0] is trainer.raw_model.embed.weight

    def loses_one(named, weight_decay):
        return [{"params": [p for _, p in named][1:], "weight_decay": 0.0}]

    with pytest.raises(ValueError, match="param_groups must place each of the"):
        tiny_trainer(corpus, tmp_path / "b", family=dataclasses.replace(gpt, param_groups=loses_one))


def test_loss_metrics_are_averaged_and_logged(tmp_path, corpus):
    gpt = get_family("gpt")

    def with_metrics(model, batch):
        loss = gpt.loss(model, batch)
        return loss, {"twice": 2 * loss.detach(), "constant": 3.0}

    trainer = tiny_trainer(corpus, tmp_path, family=dataclasses.replace(gpt, loss=with_metrics))
    result = trainer.train_step()
    assert result["twice"] == pytest.approx(2 * result["loss"], rel=1e-6) and result["constant"] == 3.0

    def clashing(model, batch):
        return gpt.loss(model, batch), {"grad_norm": 1.0}

    trainer = tiny_trainer(corpus, tmp_path / "b", family=dataclasses.replace(gpt, loss=clashing))
    with pytest.raises(ValueError, match="may not be named grad_norm"):
        trainer.train_step()


def test_mfu_counts_the_trained_context_not_the_maximum(tmp_path, corpus):
    trainer = tiny_trainer(corpus, tmp_path, seq_len=8)  # the model could take 16 tokens; training uses 8
    n = sum(p.numel() for p in trainer.raw_model.parameters())
    assert trainer.flops_per_sample == pytest.approx(8 * transformer_flops_per_token(n, 2, 32, 8))


def test_cpu_peak_is_measured_in_the_dtype_the_run_computes_in(monkeypatch):
    """A bf16 run's MFU is over a bf16 matmul's rate: on a CPU with bf16 units that is several times the fp32 rate,
    and an fp32 peak put bf16 runs above 100%."""
    monkeypatch.setattr(metrics, "_cpu_peaks", {})
    monkeypatch.setattr(metrics, "matmul_flops_per_s", lambda dtype: {torch.bfloat16: 2e9, torch.float32: 1e9}[dtype])
    cpu = torch.device("cpu")
    assert (metrics.peak_flops(cpu, "bf16"), metrics.peak_flops(cpu, "fp32")) == (2e9, 1e9)
    assert metrics.peak_flops(cpu, "auto-resolved-elsewhere") == 1e9  # anything but bf16/fp16 multiplies in fp32


def test_matmul_rate_is_measured_in_the_given_dtype(monkeypatch):
    seen = []
    real_matmul = torch.Tensor.__matmul__
    monkeypatch.setattr(torch.Tensor, "__matmul__", lambda a, b: seen.append((a.dtype, b.dtype)) or real_matmul(a, b))
    rate = metrics.matmul_flops_per_s(torch.bfloat16, size=64)
    assert rate > 0 and seen and set(seen) == {(torch.bfloat16, torch.bfloat16)}


def test_measured_flops_leave_out_frozen_modules():
    frozen, trained = nn.Linear(64, 64).requires_grad_(False), nn.Linear(64, 8)
    x = torch.randn(4, 64)

    def step():
        trained(frozen(x)).sum().backward()

    total, without = measure_flops(step), measure_flops(step, exclude=[frozen])
    assert total - without == 2 * 4 * 64 * 64  # the frozen forward matmul, and nothing else
    # the trained layer's forward and weight gradient; no input gradient: nothing before it is trained
    assert without == 2 * (2 * 4 * 64 * 8)


def test_fsdp_with_ema_evaluates_exports_and_resumes_the_average(tmp_path, corpus):
    """EMA under FSDP2 (a process group of one, the same code path as many ranks): evaluation and export see
    the averaged weights, and a resume restores the sharded averages through DCP."""
    from zoo.train.distributed import teardown

    try:
        trainer = tiny_trainer(corpus, tmp_path, strategy="fsdp", ema=0.5, steps=6, checkpoint_every=3)
        for _ in range(3):
            trainer.train_step()
        trainer.save_checkpoint()
        later = [trainer.train_step()["loss"] for _ in range(2)]
        shadow = [s.full_tensor().clone() for s in trainer.ema.shadow_params]
        live = [p.full_tensor().clone() for p in trainer.params]
        assert max((s - p).abs().max() for s, p in zip(shadow, live)) > 1e-3  # the average is not the live model
        ema_metrics = trainer.evaluate(quick=True)
        assert all(torch.equal(p.full_tensor(), q) for p, q in zip(trainer.params, live))  # restored after
        names = [n for n, _ in trainer.model.named_parameters()]
        reference = trainer.family.build(trainer.model_config)  # a plain copy holding the EMA weights
        missing, unexpected = reference.load_state_dict(dict(zip(names, shadow)), strict=False)
        assert (missing, unexpected) == (["head.weight"], [])  # the tied head is the embedding itself
        reference.tokenizer = trainer.raw_model.tokenizer
        expected = trainer.family.evaluate(reference, trainer.data, trainer.data_config, quick=True)
        assert ema_metrics["val_loss"] == pytest.approx(expected["val_loss"], rel=1e-6)

        resumed = Trainer(get_family("gpt"), trainer.model_config, trainer.data_config, trainer.config, tmp_path,
                          str(corpus), "gpt-nano", resume=True)
        assert resumed.step == 3
        assert [resumed.train_step()["loss"] for _ in range(2)] == pytest.approx(later, rel=1e-6)
        for s, t in zip(resumed.ema.shadow_params, shadow):
            torch.testing.assert_close(s.full_tensor(), t, rtol=1e-6, atol=1e-7)

        resumed.export()
        import zoo

        exported = zoo.load(tmp_path).state_dict()
        name = "backbone.blocks.0.attn.qkv.weight"
        index = [n for n, _ in resumed.model.named_parameters()].index(name)
        torch.testing.assert_close(exported[name], resumed.ema.shadow_params[index].full_tensor())
    finally:
        teardown()


def test_family_commands_reach_the_cli(tmp_path, capsys):
    import json

    import zoo
    from zoo.cli import build_parser, main
    from zoo.text.generate import GenerationOptions, generate
    from zoo.text.tokenizer import CharTokenizer

    commands = set(build_parser()._subparsers._group_actions[0].choices)
    assert {"list", "train", "eval", "demo", "generate", "classify"} <= commands
    tokenizer = CharTokenizer.train("abc def ghi")
    torch.manual_seed(0)
    model = zoo.load("gpt-nano", vocab_size=tokenizer.vocab_size, backbone={"n_layers": 1, "dim": 32, "n_heads": 2})
    model.tokenizer = tokenizer
    model.save_pretrained(tmp_path)
    args = ["generate", str(tmp_path), "--prompt", "ab", "--max-new-tokens", "5", "--temperature", "0", "--json"]
    assert main([*args, "--beam-size", "3"]) == 0
    printed = json.loads(capsys.readouterr().out.splitlines()[-1])
    expected = generate(zoo.load(tmp_path), "ab", GenerationOptions(max_new_tokens=5, temperature=0, beam_size=3))
    assert printed["token_ids"] == expected.tokens
    assert main([*args[:-3], "--beam-size", "3"]) == 2  # beam search with sampling (the CLI's default 0.8)
    assert "beam_size" in capsys.readouterr().err
