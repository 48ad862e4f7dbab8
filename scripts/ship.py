r"""Ship a finished run's weights inside the package (for maintainers): zoo/weights/NAME with its manifest.

    zoo train alexnet-mini --out runs/ship/alexnet-mini          (timed)
    python scripts/ship.py alexnet-mini runs/ship/alexnet-mini --wall-time-s 412 \
        --command "zoo train alexnet-mini --out runs/ship/alexnet-mini"
    python scripts/ship.py dit-shapes runs/ship/dit-shapes --command "..." --wall-time-s 5400 --set-data judge=
    python scripts/ship.py dit-shapes --remeasure        (the shipped files scored again by today's evaluation)
    python scripts/ship.py whisper-cpu --remeasure --eval-set corpus.train_clips=1

--command is the exact command that trained the run (`zoo reproduce NAME` runs it again); --wall-time-s is how
long it took. --set-data rewrites the shipped train_config.json's data section (paths of the maintainer's runs).
--eval-set changes a data field for --remeasure's evaluation only (a training split it does not read, shrunk to one
item).
Set ZOO_WEIGHTS_DIR to ship somewhere other than zoo/weights.
"""

import argparse
import json
import sys
from pathlib import Path

from zoo.shipped import MANIFEST, STORAGE_DTYPES, remeasure, ship, weights_root


def parse_data_overrides(items: list[str], option: str = "--set-data") -> dict[str, str]:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{option} {item!r}: expected field=value (e.g. {option} judge=)")
        overrides[key] = value
    return overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("name", help="the shipped name (the registered model it is a trained copy of)")
    parser.add_argument("run_dir", nargs="?", help="the finished run directory (zoo train --out DIR)")
    parser.add_argument("--command", help="the exact shell command that trained the run")
    parser.add_argument("--wall-time-s", type=float, help="how long that command ran, in seconds")
    parser.add_argument("--eval-set", action="append", default=[], metavar="FIELD=VALUE",
                        help="with --remeasure: a data field for the evaluation only (corpus.train_clips=1); "
                             "repeatable")
    parser.add_argument("--remeasure", action="store_true",
                        help="instead of shipping: evaluate the shipped NAME again and rewrite its manifest's metrics")
    parser.add_argument("--dtype", default="float16", choices=STORAGE_DTYPES, help="storage dtype of float tensors")
    parser.add_argument("--set-data", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a data.* field of the shipped train_config.json; repeatable")
    args = parser.parse_args(argv)
    shipping = (args.run_dir, args.command, args.wall_time_s)
    if args.remeasure and any(value is not None for value in shipping):
        parser.error("--remeasure takes only NAME: it scores the weights already shipped")
    if args.eval_set and not args.remeasure:
        parser.error("--eval-set is for --remeasure's evaluation; shipping evaluates the run's own data")
    if not args.remeasure and any(value is None for value in shipping):
        parser.error("shipping needs RUN_DIR, --command and --wall-time-s (or --remeasure NAME)")
    try:
        if args.remeasure:
            remeasure(args.name, data_overrides=parse_data_overrides(args.eval_set, "--eval-set"))
            directory = weights_root() / args.name
        else:
            directory = ship(args.run_dir, args.name, args.command, args.wall_time_s, dtype=args.dtype,
                             data_overrides=parse_data_overrides(args.set_data))
    except (ValueError, FileNotFoundError) as error:
        print(f"ship: error: {error}", file=sys.stderr)
        return 2
    print(summary(directory, json.loads((directory / MANIFEST).read_text())))
    return 0


def summary(directory: Path, manifest: dict) -> str:
    size = sum((directory / relative).stat().st_size for relative in manifest["files"])
    dirty = " (zoo/ had uncommitted changes)" if manifest["dirty"] else ""
    lines = [f"shipped {manifest['name']} to {directory}: {len(manifest['files'])} files, {size / 1e6:.1f} MB, "
             f"{manifest['dtype']}",
             f"  command: {manifest['command']}",
             f"  commit:  {manifest['commit'] or 'unknown'}{dirty}",
             f"  trained: {manifest['trained_at']} on {manifest['machine']}, {manifest['wall_time_s']:.0f} s",
             *([f"  metrics measured at commit {manifest['metrics_commit'] or 'unknown'}"
                f"{' (zoo/ had uncommitted changes)' if manifest.get('metrics_dirty') else ''}"]
               if "metrics_commit" in manifest else []),
             *(f"  {key:<24} {value:.4f}" for key, value in manifest["metrics"].items())]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
