"""Train one model on two machines with torchrun: the command for each node, or both "nodes" here (--local).

    python examples/distributed/two_nodes.py --host HOST                  # print the command for each node
    python examples/distributed/two_nodes.py --host HOST --node-rank 0    # run it: on node 0 (HOST is its address)
    python examples/distributed/two_nodes.py --host HOST --node-rank 1    #          on node 1, at the same time
        [--model gpt-nano] [--nproc-per-node P] [--port 29500] [--out runs/two-nodes] [--steps N] [--set S ...]
    python examples/distributed/two_nodes.py --local --out /tmp/two-nodes    # both nodes on this machine, tiny

Each node runs the same torchrun line but for its --node_rank (README "Many processes, many machines"):

    torchrun --nnodes=2 --nproc_per_node=P --node_rank=R --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 \\
        --rdzv-id=zoo-two-nodes -m zoo.cli train gpt-nano --out OUT --set train.strategy=fsdp

The two torchrun agents meet at HOST:PORT (c10d rendezvous; node 0's agent hosts it, so HOST must be reachable
from node 1), then start P processes each: 2 x P ranks train one model, FSDP2 sharding it over all of them (NCCL
on GPUs, gloo on CPUs). train.batch_size is the global batch, so the numbers do not depend on the machine count.
OUT must be one folder that both machines see (a shared file system): every rank writes its shard of each
checkpoint there, rank 0 the logs and the final model.

--local runs both agents on 127.0.0.1, one CPU process each (gloo), training a 2-layer gpt-nano of width 32 on
200,000 characters of the built-in corpus for --steps (default 10), then checks that both nodes finished and
that OUT holds a model trained by 2 ranks.
"""

import argparse
import json
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch

# --local: the size of tests/test_train.py's two-node test, on the built-in corpus cut short
LOCAL = ["data.tokenizer=char", "data.max_chars=200000", "data.code_samples=0", "model.backbone.n_layers=2",
         "model.backbone.dim=32", "model.backbone.n_heads=2", "model.backbone.max_seq_len=32", "train.batch_size=8",
         "train.log_every=1", "train.eval_every=0", "train.warmup=2", "train.tensorboard=false", "train.device=cpu"]

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--host", help="node 0's address (reachable from node 1)")
parser.add_argument("--node-rank", type=int, choices=(0, 1), help="run this node's command (else print both)")
parser.add_argument("--local", action="store_true", help="both nodes on this machine: a tiny model, a few steps")
parser.add_argument("--model", default="gpt-nano")
parser.add_argument("--nproc-per-node", type=int, help="processes per node; default: one per GPU, else 1")
parser.add_argument("--port", type=int, default=29500)
parser.add_argument("--out", default="runs/two-nodes")
parser.add_argument("--steps", type=int)
parser.add_argument("--strategy", default="fsdp", choices=("ddp", "zero1", "fsdp"))
parser.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.FIELD=VALUE")
args = parser.parse_args()


def node_command(node_rank: int, host: str, port: int, nproc: int, sets: list[str], steps: int | None) -> list[str]:
    """torchrun's arguments (after `torchrun`) for one node: the same on both but for --node_rank."""
    command = ["--nnodes=2", f"--nproc_per_node={nproc}", f"--node_rank={node_rank}", "--rdzv-backend=c10d",
               f"--rdzv-endpoint={host}:{port}", "--rdzv-id=zoo-two-nodes",
               "-m", "zoo.cli", "train", args.model, "--out", args.out, "--set", f"train.strategy={args.strategy}"]
    command += ["--steps", str(steps)] if steps is not None else []
    return command + [arg for setting in sets for arg in ("--set", setting)]


def torchrun(command: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *command]  # `torchrun` of this Python's torch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_log(out: Path, node_rank: int) -> Path:
    return out.with_name(f"{out.name}.node-{node_rank}.log")


def run_local() -> int:
    """Both agents as child processes of this one; each node's output goes to OUT.node-R.log beside the run
    directory (zoo train refuses to write a run into a directory holding other files)."""
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    port, steps = free_port(), args.steps or 10
    agents = []
    for node_rank in (0, 1):
        command = node_command(node_rank, "127.0.0.1", port, 1, [*LOCAL, *args.sets], steps)
        print(f"node {node_rank}: torchrun {shlex.join(command)}", flush=True)
        log = open(node_log(out, node_rank), "w")
        agents.append((node_rank, subprocess.Popen(torchrun(command), stdout=log, stderr=subprocess.STDOUT), log))
    # A node that fails stops the other, which would otherwise wait for its peer until a timeout.
    while any(agent.poll() is None for _, agent, _ in agents):
        if any(agent.poll() not in (None, 0) for _, agent, _ in agents):
            for _, agent, _ in agents:
                if agent.poll() is None:
                    agent.terminate()
        time.sleep(0.2)
    failed = []
    for node_rank, agent, log in agents:
        log.close()
        print(f"node {node_rank}: {'finished' if agent.returncode == 0 else f'failed (exit {agent.returncode})'}")
        if agent.returncode != 0:
            failed.append(node_rank)
            print("".join(node_log(out, node_rank).read_text().splitlines(True)[-30:]), file=sys.stderr)
    if failed:
        return 1

    # What the run left: the model, written once by rank 0, trained by the two ranks (one per node).
    import zoo

    world_size = json.loads((out / "train_config.json").read_text())["world_size"]
    if world_size != 2 or not (out / "model.safetensors").is_file():
        print(f"expected a model trained by 2 ranks in {out}; world_size={world_size}", file=sys.stderr)
        return 1
    model = zoo.load(out)
    losses = {r["step"]: r["loss"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())
              if "loss" in r}
    first, last = min(losses), max(losses)
    print(f"both nodes finished: {out} holds the model ({model.num_params():,} parameters), trained by "
          f"{world_size} ranks on 2 nodes; loss {losses[first]:.3f} at step {first}, {losses[last]:.3f} at step {last}")
    return 0


if __name__ == "__main__":
    if args.local:
        sys.exit(run_local())
    if args.host is None:
        parser.error("--host HOST (node 0's address) is needed, or --local")
    nproc = args.nproc_per_node or max(1, torch.cuda.device_count())
    commands = [node_command(node_rank, args.host, args.port, nproc, args.sets, args.steps) for node_rank in (0, 1)]
    if args.node_rank is None:
        for node_rank, command in enumerate(commands):
            print(f"# on node {node_rank}:\ntorchrun {shlex.join(command)}")
        sys.exit(0)
    sys.exit(subprocess.run(torchrun(commands[args.node_rank])).returncode)
