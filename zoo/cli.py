"""The `zoo` command: list | train | eval | demo, and the verbs the families register (generate, classify, ...).

    zoo list ["gpt*"]
    zoo train NAME [--out DIR] [--data PATH] [--steps N] [--set section.field=value ...] [--resume]
              [--lora r=8,alpha=16]
    zoo eval DIR [--data PATH] [--json]
    zoo generate DIR --prompt TEXT [--max-new-tokens N --temperature T --top-k K --top-p P --seed S]
                 [--stream] [--json] [--show-probs]
    zoo classify DIR IMAGE [--top-k K]
    zoo demo

Errors a user can cause (a bad name, path, value) print one clear line and exit with status 2.
"""

import argparse
import json
import sys
from pathlib import Path

from zoo.registry import families


def cmd_list(args):
    import zoo
    from zoo.registry import get_model_entry

    for name in zoo.list_models(args.pattern):
        entry = get_model_entry(name)
        print(f"{name:<16} {entry.family:<10} {entry.description}")


def cmd_train(args):
    from zoo.train import train

    metrics = train(args.name, out=args.out, data=args.data, steps=args.steps, sets=args.set, resume=args.resume,
                    lora=args.lora)
    if metrics:
        print(json.dumps(metrics))


def load_for_eval(directory: str, data_path: str | None):
    """The trained model in DIR, its family, and its data prepared as it was trained (or from --data)."""
    from zoo.checkpoint import load_pretrained
    from zoo.config import replace_config
    from zoo.registry import family_of_config, zoo_home

    model = load_pretrained(directory)
    family = family_of_config(model.config)
    run_file = Path(directory) / "train_config.json"
    run = json.loads(run_file.read_text()) if run_file.exists() else {}
    data_config = replace_config(family.data_config(), run.get("data", {}), "data") if family.data_config else None
    path = data_path if data_path is not None else run.get("data_path")
    data = family.prepare_data(model.config, data_config, path, zoo_home() / "cache", model=model)
    return model, family, data, data_config


def cmd_eval(args):
    model, family, data, data_config = load_for_eval(args.dir, args.data)
    if family.evaluate is None:
        raise ValueError(f"family {family.name!r} has no evaluation")
    metrics = family.evaluate(model.eval(), data, data_config, out_dir=Path(args.dir), quick=False)
    if args.json:
        print(json.dumps(metrics))
    else:
        for key, value in metrics.items():
            print(f"{key:>24}: {value:.4f}" if isinstance(value, float) else f"{key:>24}: {value}")


def cmd_demo(args):
    """The main job on the built-in data: train the GPT code model on the stdlib, then sample from it."""
    from zoo.checkpoint import load_pretrained
    from zoo.text.generate import GenerationOptions, format_table, generate, next_token_table
    from zoo.train import train

    out = Path(args.out)
    metrics = train("gpt-nano", out=out, steps=args.steps)
    print(f"\nvalidation loss {metrics['val_loss']:.3f}, perplexity {metrics['perplexity']:.2f}  "
          f"(model, log.jsonl and loss.png in {out})")
    model = load_pretrained(out).eval()
    prompt = "def "
    print(f"\nnext-token probabilities after {prompt!r}:\n" + format_table(next_token_table(model, prompt, k=8)))
    result = generate(model, prompt, GenerationOptions(max_new_tokens=200, temperature=0.8, top_k=50, seed=0))
    print(f"\nsample (temperature 0.8, top-k 50):\n{prompt}{result.text}")


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
    p.add_argument("--lora", help="train LoRA adapters only, e.g. r=8,alpha=16 (with --set train.init_from=DIR)")
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("eval", help="evaluate a trained model directory")
    p.add_argument("dir")
    p.add_argument("--data")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object (last line)")
    p.set_defaults(fn=cmd_eval)

    for family in families():  # the verbs each family serves: generate, classify, ...
        for command in family.commands:
            p = sub.add_parser(command.name, help=command.help)
            command.add_arguments(p)
            p.set_defaults(fn=command.run)

    p = sub.add_parser("demo", help="train the GPT code model on the built-in corpus and sample from it")
    p.add_argument("--out", default="runs/demo-gpt")
    p.add_argument("--steps", type=int)
    p.set_defaults(fn=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except (ValueError, FileNotFoundError, NotADirectoryError) as error:
        print(f"zoo {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
