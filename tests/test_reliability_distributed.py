"""A training run that meets trouble (issue 13, requirements 5 and 6).

Non-finite steps: a NaN/inf loss or gradient skips the update (parameters, optimizer state and EMA unchanged; with
fp16 the loss scale halves); train.max_nonfinite in a row stop the run with NonFiniteError, the last good
checkpoint untouched. Ranks: a rank killed -9 or hung makes the others exit non-zero within a bound; under
`torchrun --max-restarts=1` the restarted workers resume from the last checkpoint; SIGTERM (a preempted machine)
checkpoints at the step boundary and exits 0, and `--resume` continues exactly.

The processes are real (torchrun, gloo, CPU) and tiny (tests/train_helpers.py's TINY GPT); NaNs are injected from
the test, through a copy of the GPT family whose loss misbehaves on chosen calls.
"""

import dataclasses
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

import zoo.registry
from tests.test_train import InfGradient, make_trainer
from tests.train_helpers import TINY, env_for, kill_process_tree, losses, run, zoo_train_cmd
from zoo import cli
from zoo.checkpoint import CONFIG_FILE
from zoo.registry import get_family
from zoo.train import NonFiniteError
from zoo.train.checkpointing import checkpoint_dirs
from zoo.utils import sha256_file

DEADLINE_S = 180  # only so that a run that hangs fails its test instead of blocking the suite
FAIL_FAST_S = 60  # the bound the survivors of a dead or hung rank must exit within
RELATIVE = 1e-6  # resumed losses against the uninterrupted run's, as tests/test_train.py's resume test
STEPS = 300  # 2 ranks, ~5 ms a step: long enough to signal a run from outside mid-way, short to finish
DROPOUT = ["--set", "model.backbone.dropout=0.1"]  # so that resuming must restore every rank's RNG too


# --------------------------------------------------------------------------------------- non-finite steps


def poisoned_gpt(bad_calls, how: str = "nan_loss"):
    """The GPT family with a loss that goes non-finite on the calls (1-based) in `bad_calls`: `nan_loss` makes the
    loss and every gradient NaN, `nan_constant` the loss alone (a NaN term with no gradient), `inf_gradient` the
    gradients alone (the loss stays finite, as an fp16 overflow in backward)."""
    gpt, calls = get_family("gpt"), {"n": 0}

    def loss(model, batch):
        calls["n"] += 1
        value = gpt.loss(model, batch)
        if calls["n"] not in bad_calls:
            return value
        return {"nan_loss": lambda: value * math.nan, "nan_constant": lambda: value + torch.tensor(math.nan),
                "inf_gradient": lambda: InfGradient.apply(value)}[how]()

    return dataclasses.replace(gpt, loss=loss)


def snapshot(trainer) -> list[torch.Tensor]:
    """Every tensor an update changes: parameters, AdamW's moments and step counts, the EMA weights."""
    tensors = [p.detach().clone() for p in trainer.params]
    for state in trainer.optimizer.state.values():
        tensors += [state[key].clone() for key in sorted(state)]
    if trainer.ema is not None:
        tensors += [shadow.clone() for shadow in trainer.ema.shadow_params]
    return tensors


def unchanged(before: list[torch.Tensor], after: list[torch.Tensor]) -> bool:
    return len(before) == len(after) and all(torch.equal(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize("how", ["nan_loss", "nan_constant", "inf_gradient"])
def test_a_nonfinite_step_changes_no_parameter_optimizer_state_or_ema(how, tmp_path, corpus):
    trainer = make_trainer(corpus, tmp_path, family=poisoned_gpt({3}, how), ema=0.9)
    trainer.train_step()
    trainer.train_step()
    before = snapshot(trainer)
    assert len(before) == 5 * len(trainer.params)  # parameters; exp_avg, exp_avg_sq, step; EMA weights

    result = trainer.train_step()  # the third call
    assert result["skipped"] and not math.isfinite(result["loss"] if how != "inf_gradient" else result["grad_norm"])
    assert unchanged(before, snapshot(trainer))
    assert (trainer.step, trainer.skipped, trainer.nonfinite_in_row) == (3, 1, 1)

    result = trainer.train_step()  # a good step updates again and ends the run of bad ones
    assert not result["skipped"] and trainer.nonfinite_in_row == 0
    assert not unchanged(before, snapshot(trainer))


@pytest.mark.parametrize("how", ["nan_loss", "nan_constant"])
def test_a_nonfinite_fp16_step_is_skipped_and_halves_the_loss_scale(how, tmp_path, corpus):
    """The trainer refuses fp16 on CPU (tests/test_train.py's test_fp16_is_refused_on_cpu; the CUDA test there
    covers the overflow the scaler handles by itself). Its GradScaler logic does not depend on the device, so a CPU
    GradScaler drives the same path here: scale, unscale_, skip, back off. `nan_constant` leaves the gradients
    finite, so only the trainer's own back-off (not the scaler's inf check) can lower the scale."""
    trainer = make_trainer(corpus, tmp_path, family=poisoned_gpt({2}, how))
    trainer.scaler = torch.amp.GradScaler("cpu")
    scale = trainer.scaler.get_scale()
    assert not trainer.train_step()["skipped"] and trainer.scaler.get_scale() == scale
    before = snapshot(trainer)

    result = trainer.train_step()
    assert result["skipped"] and unchanged(before, snapshot(trainer))
    assert trainer.scaler.get_scale() == scale / 2
    assert trainer.nonfinite_in_row == 1  # a non-finite loss is a divergence, unlike an fp16 gradient overflow

    # The next step runs at the halved scale and updates: the skipped one closed the scaler's step (without that,
    # this step's unscale_ raises "unscale_() has already been called on this optimizer since the last update()").
    assert not trainer.train_step()["skipped"] and trainer.scaler.get_scale() == scale / 2
    assert not unchanged(before, snapshot(trainer)) and trainer.nonfinite_in_row == 0


def digests(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): sha256_file(p) for p in sorted(directory.rglob("*")) if p.is_file()}


def test_max_nonfinite_in_a_row_stop_the_run_and_leave_the_last_good_checkpoint_untouched(tmp_path, corpus):
    """Steps 5, 6 and 7 are NaN with max_nonfinite=3: fit() raises at step 7, after the checkpoint of step 4 and
    before any other (the one at step 8, the final one, the export)."""
    trainer = make_trainer(corpus, tmp_path, family=poisoned_gpt(range(5, 100)), steps=10, checkpoint_every=4,
                           max_nonfinite=3)
    written = {}
    save = trainer.save_checkpoint

    def save_and_record():
        save()
        latest = checkpoint_dirs(tmp_path)[-1]
        written[latest.name] = digests(latest)

    trainer.save_checkpoint = save_and_record
    with pytest.raises(NonFiniteError) as error:
        trainer.fit()
    message = str(error.value)
    for part in ("3 non-finite steps in a row", "at step 7", "train.max_nonfinite=3", "step_00000004"):
        assert part in message, (part, message)
    assert list(written) == ["step_00000004"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_00000004"]  # no .tmp_* either
    assert digests(tmp_path / "checkpoints" / "step_00000004") == written["step_00000004"]
    assert not (tmp_path / CONFIG_FILE).exists()  # nothing exported


# ------------------------------------------------------------------------------------------ processes


@pytest.fixture
def start():
    """Popen for `zoo train` commands (stdout and stderr together); whatever still runs at the end is killed."""
    started = []

    def start(cmd: list[str], zoo_home, env: dict | None = None) -> subprocess.Popen:
        started.append(subprocess.Popen(cmd, env={**env_for(zoo_home), **(env or {})}, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True))
        return started[-1]

    yield start
    for process in started:
        if process.poll() is None:
            kill_process_tree(process)  # SIGKILL ends a stopped process too


def logged_steps(out: Path) -> int:
    log = out / "log.jsonl"
    return len(log.read_text().splitlines()) if log.exists() else 0


def wait_for(condition, *processes: subprocess.Popen, what: str):
    """Poll until `condition()`; fail if a process ends first or the deadline passes."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        ended = [p for p in processes if p.poll() is not None]
        assert not ended, f"waiting for {what}, a process ended: {ended[0].returncode}, {finish(ended[0])[1][-3000:]}"
        assert time.monotonic() < deadline, f"waiting for {what}: over {DEADLINE_S} s"
        time.sleep(0.005)


def workers(agent: subprocess.Popen) -> dict[int, psutil.Process]:
    """torchrun's worker processes by global rank."""
    found = {}
    for child in psutil.Process(agent.pid).children(recursive=True):
        environ = child.environ()
        if "RANK" in environ and "zoo.cli" in child.cmdline():
            found[int(environ["RANK"])] = child
    return found


def wait_for_workers(agents: list[subprocess.Popen], n: int) -> dict[int, psutil.Process]:
    found = {}

    def all_up():
        found.clear()
        for agent in agents:
            found.update(workers(agent))
        return len(found) == n

    wait_for(all_up, *agents, what=f"{n} workers")
    return found


def finish(process: subprocess.Popen, timeout: float = DEADLINE_S) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def last_checkpoint_step(out: Path) -> int:
    return int(checkpoint_dirs(out)[-1].name.split("_")[1])


def assert_stopped_by_sigterm(out: Path, output: str, steps: int) -> int:
    """The run stopped early at a step boundary: a checkpoint at the last logged step, not exported."""
    stopped = int(re.search(r"SIGTERM: stopped at step (\d+)", output)[1])
    assert stopped < steps and max(losses(out)) == stopped == last_checkpoint_step(out), output[-3000:]
    assert not (out / CONFIG_FILE).exists()
    return stopped


def assert_same_losses(got: dict[int, float], reference: dict[int, float]):
    assert sorted(got) == sorted(reference)
    assert len(set(reference.values())) > len(reference) // 2  # the losses move: equal steps are not constants
    for step in reference:
        assert got[step] == pytest.approx(reference[step], rel=RELATIVE), step


# --------------------------------------------------------------------------------------------- SIGTERM



def signalling_gpt(at_call: int):
    """The GPT family, sending this process SIGTERM from inside its loss on one call (1-based): mid-step."""
    gpt, calls = get_family("gpt"), {"n": 0}

    def loss(model, batch):
        calls["n"] += 1
        if calls["n"] == at_call:
            os.kill(os.getpid(), signal.SIGTERM)
        return gpt.loss(model, batch)

    return dataclasses.replace(gpt, loss=loss)


def test_sigterm_checkpoints_at_the_step_boundary_exits_0_and_resume_continues_exactly(tmp_path, corpus,
                                                                                       monkeypatch, capsys):
    """`zoo train` in this process, signalled during step 5: it finishes the step, saves it, returns 0 and puts
    the previous SIGTERM handler back; `--resume` then gives the uninterrupted run's losses."""
    args = ["train", "gpt-nano", "--data", str(corpus), "--steps", "12", *TINY, *DROPOUT]
    assert cli.main([*args, "--out", str(tmp_path / "straight")]) == 0

    out, unhandled = tmp_path / "stopped", []
    real_get_family = zoo.registry.get_family
    monkeypatch.setattr(zoo.registry, "get_family",
                        lambda name: signalling_gpt(5) if name == "gpt" else real_get_family(name))

    def fallback(*_):  # should the trainer not catch the signal, it must not end pytest
        unhandled.append(True)

    previous = signal.signal(signal.SIGTERM, fallback)
    try:
        assert cli.main([*args, "--out", str(out)]) == 0
        assert signal.getsignal(signal.SIGTERM) is fallback and not unhandled
    finally:
        signal.signal(signal.SIGTERM, previous)
    output = capsys.readouterr().out
    assert assert_stopped_by_sigterm(out, output, 12) == 5 and "--resume" in output

    monkeypatch.setattr(zoo.registry, "get_family", real_get_family)
    assert cli.main([*args, "--out", str(out), "--resume"]) == 0
    assert "at step 5" in capsys.readouterr().out
    assert_same_losses(losses(out), losses(tmp_path / "straight"))


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, corpus):
    """The uninterrupted reference on 2 DDP ranks, and the arguments that make it."""
    home = tmp_path_factory.mktemp("home")
    args = ["gpt-nano", "--data", str(corpus), "--steps", str(STEPS), *TINY, *DROPOUT, "--set", "train.strategy=ddp"]
    out = tmp_path_factory.mktemp("runs") / "straight"
    run(zoo_train_cmd(2, *args, "--out", str(out)), home)
    return args, losses(out), home


@pytest.mark.slow
def test_sigterm_on_two_ranks_stops_every_rank_at_one_step_and_resume_continues_exactly(two_ranks, tmp_path, start):
    """First SIGTERM to rank 1's worker alone: rank 0 never gets it, yet both stop at the same step (they agree at
    every step boundary). Then to torchrun's agent alone, which passes it on to every worker: they stop, save and
    exit 0, while the agent itself re-raises the signal and exits 1 (torch/distributed/elastic/agent/server/api.py,
    LocalElasticAgent.run: `except SignalException: ... raise`). The resumed steps between the two stops are the
    uninterrupted run's (resuming from the second checkpoint is the same code again)."""
    args, reference, home = two_ranks
    out = tmp_path / "run"
    cmd = zoo_train_cmd(2, *args, "--out", str(out))

    agent = start(cmd, home)
    wait_for(lambda: logged_steps(out) >= 20, agent, what="step 20")
    workers(agent)[1].send_signal(signal.SIGTERM)
    rc, output = finish(agent)
    assert rc == 0, output[-3000:]
    first = assert_stopped_by_sigterm(out, output, STEPS)
    assert sorted(p.name for p in checkpoint_dirs(out)[-1].glob("rng_rank*.pt")) == ["rng_rank0.pt", "rng_rank1.pt"]

    agent = start([*cmd, "--resume"], home)
    wait_for(lambda: logged_steps(out) >= first + 20, agent, what=f"step {first + 20}")
    agent.send_signal(signal.SIGTERM)
    _, output = finish(agent)  # the agent's own status: 1, above
    assert f"at step {first}" in output
    second = assert_stopped_by_sigterm(out, output, STEPS)
    assert second >= first + 20
    assert_same_losses(losses(out), {step: reference[step] for step in range(1, second + 1)})


# ---------------------------------------------------------------------------------- kill -9, restarts


@pytest.mark.slow
def test_torchrun_restarts_the_ranks_after_a_kill_and_they_resume_from_the_last_checkpoint(two_ranks, tmp_path, start):
    """kill -9 rank 1 after the first checkpoint: torchrun stops rank 0 and starts both again, which resume
    (TORCHELASTIC_RESTART_COUNT > 0) instead of training from step 0, and the run ends as if uninterrupted.

    TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1: by default torch 2.9's torchrun keeps one TCPStore across restarts
    (DynamicRendezvousHandler makes its server once), so the restarted ranks can read the dead ranks' gloo addresses
    from it ("Gloo connectFullMesh failed ... Connection refused"; pytorch/pytorch#135712). Measured here: 3
    restarts in 5 failed so without it, none in 4 with it."""
    args, reference, home = two_ranks
    out = tmp_path / "run"
    cmd = [*zoo_train_cmd(2, *args, "--out", str(out), "--set", "train.checkpoint_every=10")]
    cmd.insert(cmd.index("--standalone"), "--max-restarts=1")
    agent = start(cmd, home, env={"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"})
    first = wait_for_workers([agent], 2)
    wait_for(lambda: bool(checkpoint_dirs(out)), agent, what="the first checkpoint")
    first[1].kill()
    first[0].wait(timeout=FAIL_FAST_S)  # torchrun stops the survivor before it restarts the group
    rc, output = finish(agent)
    assert rc == 0, output[-3000:]
    resumed = int(re.search(r"resumed from \S+ at step (\d+)", output)[1])
    assert 10 <= resumed < STEPS
    assert_same_losses(losses(out), reference)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nodes(start, n: int, out: Path, corpus, zoo_home, *sets: str) -> list[subprocess.Popen]:
    """n torchrun agents, one worker each, as n machines meeting through the c10d rendezvous: when one worker
    dies, no agent stops the others' workers, which must notice by themselves.

    The first agent hosts the rendezvous store, as the machine the endpoint names does on a cluster. Left to
    themselves, agents on one host race to bind the port, and when the winner's worker is the one killed, its agent
    exits with the store: the others' agents then fail (RendezvousConnectionError) and SIGTERM their workers, a
    second failure racing the one under test."""
    port = free_port()
    return [start([sys.executable, "-m", "torch.distributed.run", f"--nnodes={n}", "--nproc_per_node=1",
                   f"--node_rank={node}", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
                   f"--rdzv-conf=is_host={int(node == 0)}", "--rdzv-id=zoo-test", "-m", "zoo.cli", "train",
                   "gpt-nano", "--data", str(corpus), "--out", str(out), "--steps", "100000", *TINY, "--set",
                   "train.strategy=ddp", *sets], zoo_home)
            for node in range(n)]


@pytest.mark.slow
def test_a_rank_killed_mid_step_makes_every_other_rank_exit_non_zero(tmp_path, corpus, zoo_home, start):
    """3 machines; kill -9 the third machine's worker while the ranks train. Its sockets close with it, and the
    others' next collective fails at once (gloo: "Connection reset by peer"), which they report in one line naming
    the checkpoint to resume from. Measured: they exit 3-5 s after the kill."""
    out = tmp_path / "run"
    agents = start_nodes(start, 3, out, corpus, zoo_home, "--set", "train.batch_size=12",  # 4 samples a rank
                         "--set", "train.checkpoint_every=10")
    ranks = wait_for_workers(agents, 3)
    wait_for(lambda: logged_steps(out) >= 20, *agents, what="step 20")
    # the rendezvous orders ranks by its own rule, not by --node_rank: find which ranks the machines hold
    (victim,), survivors = workers(agents[2]), sorted(rank for agent in agents[:2] for rank in workers(agent))
    ranks[victim].kill()
    killed = time.monotonic()
    outputs = []
    for agent in agents:
        rc, output = finish(agent, timeout=FAIL_FAST_S)
        assert rc != 0, output[-3000:]
        outputs.append(output)
    assert time.monotonic() - killed < FAIL_FAST_S
    # the survivors say so in one line each, naming the checkpoint to resume from
    reports = [re.search(r"zoo train: error: rank (\d) of 3 lost another rank at step \d+ .*The last checkpoint, "
                         r".*step_\d+, is whole: rerun the same command with --resume", output) for output in outputs]
    assert sorted(int(report[1]) for report in reports if report) == survivors, "\n".join(o[-2000:] for o in outputs)
    assert not any(p.is_running() for p in ranks.values())


@pytest.mark.slow
def test_a_hung_rank_makes_the_others_exit_non_zero_after_train_dist_timeout_s(tmp_path, corpus, zoo_home, start):
    """SIGSTOP the second machine's worker: its sockets stay open, so only the collective timeout ends the first's
    wait (gloo's default is 30 min; here train.dist_timeout_s=5). Measured: the first machine exits 10 s after the
    stop."""
    out = tmp_path / "run"
    agents = start_nodes(start, 2, out, corpus, zoo_home, "--set", "train.dist_timeout_s=5")
    ranks = wait_for_workers(agents, 2)
    wait_for(lambda: logged_steps(out) >= 20, *agents, what="step 20")
    (waiting,), (hung,) = workers(agents[0]), workers(agents[1])
    ranks[hung].suspend()
    rc, output = finish(agents[0], timeout=FAIL_FAST_S)
    assert rc != 0 and re.search(rf"zoo train: error: rank {waiting} of 2 lost another rank at step \d+ \(it died, "
                                 r"or hung past train.dist_timeout_s=5\): .*Timed out waiting 5000ms", output), \
        output[-3000:]
