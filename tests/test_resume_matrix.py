"""Exact resume under kill -9 on 2 gloo ranks: GPT under DDP (fp32 and bf16), ZeRO-1 and FSDP2 (bf16), and the speech
(whisper-cpu) and diffusion (dit-shapes) recipes under DDP.

Each case trains STEPS steps uninterrupted; the same command runs again and is killed -9 (torchrun and both
workers at once, as when the machine dies) as soon as its first checkpoint is complete, then `--resume`s to
STEPS: every step's loss equals the uninterrupted run's. Dropout is on, and the diffusion loss draws its noise,
timesteps and dropped captions from the global generator, so each rank's restored RNG streams are checked along
with the weights, the optimizer state (and the diffusion recipe's EMA weights) and the data position.
"""

import json
import re
import subprocess
import time

import pytest
import torch

import zoo
from tests.train_helpers import TINY, env_for, kill_process_tree, losses, run, zoo_train_cmd
from zoo.registry import get_family

STEPS = 8
CHECKPOINT_EVERY = 2  # the kill waits for the first; the last, which would leave nothing to resume, is 3 later
RANKS = 2
DEADLINE_S = 180  # only so that a run that hangs fails the test instead of blocking it


def kill_after_first_checkpoint(cmd: list[str], out, zoo_home):
    process = subprocess.Popen(cmd, env=env_for(zoo_home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = out / "checkpoints" / f"step_{CHECKPOINT_EVERY:08d}" / "COMPLETE"
    deadline = time.monotonic() + DEADLINE_S
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    checkpointed, finished = marker.exists(), process.poll() is not None
    kill_process_tree(process)
    assert checkpointed and not finished, f"training ended (rc {process.returncode}) before it could be killed"


def final_val_loss(run_dir) -> float:
    """The exported model's validation loss (on the EMA weights where the recipe keeps them)."""
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [r["val_loss"] for r in records if "val_loss" in r][-1]


def assert_resume_is_exact(args: list[str], tmp_path, zoo_home):
    """`zoo train *args` on 2 ranks: uninterrupted, then killed and resumed. Every step after the resume, and the
    evaluation of the exported model, give the uninterrupted run's numbers exactly: the same operations run in
    the same order on the same values (measured: bit-identical in bf16 as in fp32)."""
    args = [*args, "--steps", str(STEPS), "--set", "train.log_every=1",
            "--set", f"train.checkpoint_every={CHECKPOINT_EVERY}"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run(zoo_train_cmd(RANKS, *args, "--out", str(straight)), zoo_home)
    kill_after_first_checkpoint(zoo_train_cmd(RANKS, *args, "--out", str(resumed)), resumed, zoo_home)
    result = run(zoo_train_cmd(RANKS, *args, "--out", str(resumed), "--resume"), zoo_home)

    start = int(re.search(r"resumed from \S+ at step (\d+)", result.stdout + result.stderr)[1])
    assert CHECKPOINT_EVERY <= start < STEPS, f"resumed at step {start}: the kill came after the last checkpoint"
    a, b = losses(straight), losses(resumed)
    assert sorted(a) == sorted(b) == list(range(1, STEPS + 1))
    assert len(set(a.values())) == STEPS  # the losses move, so equal steps are not equal constants
    for step in range(start + 1, STEPS + 1):
        assert b[step] == a[step], (step, b[step], a[step])
    assert final_val_loss(resumed) == final_val_loss(straight)


# ---------------------------------------------------------------------------------------------------- GPT


# DDP in both precisions; ZeRO-1 and FSDP2 in bf16 only: their fp32 runs save and restore through the same
# sharded checkpoint path, and bf16 adds the autocast state and FSDP2's MixedPrecisionPolicy on top of it
@pytest.mark.slow
@pytest.mark.parametrize(("strategy", "precision"), [("ddp", "fp32"), ("ddp", "bf16"), ("zero1", "bf16"),
                                                     ("fsdp", "bf16")])
def test_gpt_resumes_exactly(strategy, precision, tmp_path, corpus, zoo_home):
    assert_resume_is_exact(["gpt-nano", "--data", str(corpus), *TINY, "--set", "model.backbone.dropout=0.1",
                            "--set", f"train.strategy={strategy}", "--set", f"train.precision={precision}"],
                           tmp_path, zoo_home)


# ------------------------------------------------------------------------------------------ speech, diffusion


def tiny_speech_recipe() -> list[str]:
    """A corpus of 14 eSpeak clips (built once, cached under ZOO_HOME) and a 1 + 1 layer model of width 32."""
    sets = ["data.corpus.train_clips=8", "data.corpus.val_clips=2", "data.corpus.test_clips=2",
            "data.corpus.test_unseen_clips=2", "data.quick_eval_clips=2",
            "model.encoder.n_layers=1", "model.encoder.dim=32", "model.encoder.n_heads=2", "model.encoder.dropout=0.1",
            "model.decoder.n_layers=1", "model.decoder.dim=32", "model.decoder.n_heads=2", "model.decoder.dropout=0.1",
            "train.batch_size=4", "train.eval_every=0", "train.tensorboard=false", "train.warmup=2"]
    return [arg for s in sets for arg in ("--set", s)]


@pytest.mark.slow
def test_speech_recipe_resumes_exactly(tmp_path, zoo_home):
    assert_resume_is_exact(["whisper-cpu", *tiny_speech_recipe(), "--set", "train.strategy=ddp"], tmp_path, zoo_home)


def untrained_vae_and_judge(directory) -> tuple[str, str]:
    """Tiny 16 px model directories for the denoiser's frozen helpers: nothing here depends on their quality,
    and a distributed run must be given them (it will not train them on the side)."""
    torch.manual_seed(0)
    vae = zoo.load("vae-shapes", **get_family("vae").tiny)
    vae.set_scaling_factor(2.0)  # measured when a VAE is trained; any fixed value serves here
    vae.save_pretrained(directory / "vae")
    zoo.load("judge-shapes", **get_family("judge").tiny).save_pretrained(directory / "judge")
    return str(directory / "vae"), str(directory / "judge")


def tiny_diffusion_recipe(vae: str, judge: str) -> list[str]:
    sets = [f"data.vae={vae}", f"data.judge={judge}", "data.image_size=16", "data.n_train=32", "data.n_val=8",
            "data.n_test=4", "data.n_test_heldout=4", "model.patch_size=2", "model.backbone.n_layers=1",
            "model.backbone.dim=32", "model.backbone.n_heads=2", "model.backbone.context_dim=16",
            "model.backbone.dropout=0.1", "model.text.n_layers=1", "model.text.dim=16", "model.text.n_heads=2",
            "train.batch_size=8", "train.eval_every=0", "train.tensorboard=false", "train.warmup=2"]
    return [arg for s in sets for arg in ("--set", s)]


@pytest.mark.slow
def test_diffusion_recipe_resumes_exactly(tmp_path, zoo_home):
    vae, judge = untrained_vae_and_judge(tmp_path)
    assert_resume_is_exact(["dit-shapes", *tiny_diffusion_recipe(vae, judge), "--set", "train.strategy=ddp"],
                           tmp_path, zoo_home)


def render_diffusion_split(cache_dir):
    from zoo.diffusion.data import DiffusionDataConfig, load_split

    load_split(DiffusionDataConfig(image_size=16, n_train=8), "train", cache_dir)


def render_shapes(cache_dir):
    from zoo.data.shapes import ShapesDataset, materialize

    materialize(ShapesDataset(8, seed=0), cache_dir, progress=False)


@pytest.mark.parametrize("render", [render_diffusion_split, render_shapes])
def test_rendering_a_cold_data_cache_leaves_the_global_rng_alone(render, tmp_path):
    """The trainer builds the initial weights from the global RNG once the data is ready. Had rendering a cold
    cache drawn from it, a run would start from other weights than the same run on a warm cache (the run a
    resume is measured against), and rank 0, which fills the cache, from other weights than the other ranks."""
    torch.manual_seed(0)
    render(tmp_path)
    after_rendering = torch.rand(4)
    torch.manual_seed(0)
    assert torch.equal(after_rendering, torch.rand(4))
