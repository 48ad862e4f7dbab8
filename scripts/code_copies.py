r"""How many of a code GPT's parsing samples are copies of its training text (for maintainers).

    python scripts/code_copies.py gpt-nano                 (the shipped weights)
    python scripts/code_copies.py runs/gpt                 (a run directory)

Draws the functions `parse_rate` scores (prompt `def `, temperature 0.8, the same seed) and counts the parsing ones
whose whole text occurs verbatim in the training split the model saw (its train_config.json's data.max_chars of the
built-in corpus, or its data_path). A parse rate made of copies would measure memorisation, not code writing.
"""

import argparse
import json
from pathlib import Path

import zoo
from zoo.shipped import shipped_dir
from zoo.text.code import parse_rate, parses
from zoo.text.data import read_corpus, split_corpus


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a shipped name or a run directory of a code GPT")
    parser.add_argument("--samples", type=int, default=100, help="functions to draw (parse_rate's default: 100)")
    args = parser.parse_args(argv)
    is_run_dir = Path(args.model).is_dir()
    directory = Path(args.model) if is_run_dir else shipped_dir(args.model)
    if directory is None:
        parser.error(f"{args.model!r} is neither a run directory nor a shipped name")
    run = json.loads((directory / "train_config.json").read_text())
    # a shipped name loads through its manifest, so the weights' sha256 is checked
    model = zoo.load(str(directory)) if is_run_dir else zoo.load(args.model, pretrained=True)
    rate, functions = parse_rate(model, n=args.samples)
    data = run["data"]
    train_text, _ = split_corpus(read_corpus(run.get("data_path"), data.get("max_chars"), data.get("units", "files")))
    parsing = [f for f in functions if parses(f)]
    copied = [f for f in parsing if f.strip() in train_text]
    print(f"{args.model}: {rate:.0%} of {args.samples} sampled functions parse; {len(copied)} of those {len(parsing)} "
          f"occur verbatim in the training split, {len(parsing) - len(copied)} do not")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
