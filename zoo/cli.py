"""The `zoo` command: list | train | eval | reproduce | demo, and the verbs the families register (generate, ...).

    zoo list ["gpt*"]                                 the weights column: shipped, trained ($ZOO_HOME) or -
    zoo train NAME [--out DIR] [--data PATH] [--steps N] [--set section.field=value ...] [--resume]
              [--lora r=8,alpha=16]
    zoo eval DIR [--data PATH] [--json]
    zoo reproduce NAME [--out DIR] [--set k=v ...] [--resume] [--json]
                                                      retrain shipped weights with their recorded command, compare
    zoo generate DIR --prompt TEXT [--max-new-tokens N --temperature T --top-k K --top-p P --seed S]
                 [--stream] [--json] [--show-probs]
    zoo classify DIR IMAGE [--top-k K]
    zoo export DIR [--to hf] OUT                      a trained model as a folder transformers / diffusers load
    zoo demo [--out runs/demo] [--train]               every shipped model on fresh input -> runs/demo/report.html

Errors a user can cause (a bad name, path, value) print one clear line and exit with status 2.
"""

import argparse
import json
import sys
from pathlib import Path

from zoo.errors import ZooError
from zoo.evaluation import evaluate_directory, load_for_eval  # noqa: F401 (zoo.cli.load_for_eval, as before)
from zoo.registry import families


def cmd_list(args):
    import zoo
    from zoo.checkpoint import CONFIG_FILE
    from zoo.registry import get_model_entry, zoo_home
    from zoo.shipped import shipped_names

    shipped = set(shipped_names())
    for name in zoo.list_models(args.pattern):
        entry = get_model_entry(name)
        # what zoo.load(name, pretrained=True) would load: the user's own training first, then zoo's
        weights = "trained" if (zoo_home() / name / CONFIG_FILE).exists() else "shipped" if name in shipped else "-"
        print(f"{name:<16} {entry.family:<10} {weights:<8} {entry.description}")


def cmd_train(args):
    from zoo.train import train

    metrics = train(args.name, out=args.out, data=args.data, steps=args.steps, sets=args.set, resume=args.resume,
                    lora=args.lora, overwrite=args.overwrite)
    if metrics:
        print(json.dumps(metrics))


def cmd_eval(args):
    from zoo.models import trained_dir

    directory = trained_dir(args.dir)  # a directory, or a model name's trained or shipped weights
    # plots go beside a run the user named by its path, never into shipped weights (their manifest lists every file)
    metrics = evaluate_directory(directory, args.data, out_dir=directory if Path(args.dir).exists() else None)
    if args.json:
        print(json.dumps(metrics))
    else:
        for key, value in metrics.items():
            print(f"{key:>24}: {value:.4f}" if isinstance(value, float) else f"{key:>24}: {value}")


def cmd_reproduce(args):
    from zoo.shipped import reproduce

    report = reproduce(args.name, args.out, args.set, resume=args.resume)
    if args.json:
        print(json.dumps(report))
        return
    print(f"\n{'metric':<24} {'shipped':>12} {'reproduced':>12} {'difference':>12}")
    for key, row in report["metrics"].items():
        cells = [f"{row[c]:>12.4f}" if row[c] is not None else f"{'-':>12}"
                 for c in ("shipped", "reproduced", "difference")]
        print(f"{key:<24} {' '.join(cells)}")
    shipped_time = report["shipped_wall_time_s"]
    print(f"\nwall time {report['wall_time_s']:.1f} s (shipped: "
          f"{f'{shipped_time:.1f} s' if shipped_time is not None else 'unknown'}); report in "
          f"{Path(report['out']) / 'reproduce.json'}")


def cmd_export(args):
    import zoo
    from zoo.interop import export_hf
    from zoo.models import trained_dir

    out = export_hf(zoo.load(trained_dir(args.dir)), args.out)
    print(f"wrote {out}")


def cmd_demo(args):
    from zoo.demo import run_demo

    run_demo(args.out, train=args.train)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zoo", description="A multimodal model zoo on one Transformer backbone.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="registered models")
    p.add_argument("pattern", nargs="?", default="*")
    p.set_defaults(fn=cmd_list)

    p = sub.add_parser("train", help="train a registered model (under torchrun for many processes)")
    p.add_argument("name")
    p.add_argument("--out", help="run directory (default: $ZOO_HOME/NAME)")
    p.add_argument("--data", help="data file or folder (default: the family's built-in data)")
    p.add_argument("--steps", type=int)
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override model.*, data.* or train.* fields; repeatable")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    p.add_argument("--overwrite", action="store_true",
                   help="start over in a previous run in --out, deleting its checkpoints")
    p.add_argument("--lora", help="train LoRA adapters only, e.g. r=8,alpha=16 (with --set train.init_from=DIR)")
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("eval", help="evaluate a trained model directory")
    p.add_argument("dir")
    p.add_argument("--data")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object (last line)")
    p.set_defaults(fn=cmd_eval)

    p = sub.add_parser("reproduce", help="retrain shipped weights with the command that made them and compare")
    p.add_argument("name")
    p.add_argument("--out", help="run directory (default: runs/reproduce/NAME)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override the recorded command's setting (repeatable), e.g. --set train.precision=auto")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted reproduction in --out from its latest checkpoint")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object (last line)")
    p.set_defaults(fn=cmd_reproduce)

    p = sub.add_parser("export", help="write a trained model in another ecosystem's format")
    p.add_argument("dir", help="a model directory or a name with trained weights")
    p.add_argument("--to", default="hf", choices=["hf"], help="the format: a folder transformers / diffusers load")
    p.add_argument("out", help="the folder to write (new or empty)")
    p.set_defaults(fn=cmd_export)

    for family in families():  # the verbs each family serves: generate, classify, ...
        for command in family.commands:
            p = sub.add_parser(command.name, help=command.help)
            command.add_arguments(p)
            p.set_defaults(fn=command.run)

    p = sub.add_parser("demo", help="every shipped model on fresh input, and runs/demo/report.html")
    p.add_argument("--out", default="runs/demo", help="where the report and the demo's runs go")
    p.add_argument("--train", action="store_true",
                   help="first retrain every shipped model with its recorded command, then demo the fresh ones "
                        "(run again with the same --out, it keeps finished retrainings and resumes a cut-short one)")
    p.set_defaults(fn=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except ZooError as error:
        print(f"zoo {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
