"""Train a character- or BPE-level GPT on any UTF-8 text file (or folder) and save it.

    python examples/text/train.py path/to/file.txt runs/my-gpt [--steps 2000] [--tokenizer char]
    python examples/text/train.py small.txt /tmp/gpt --steps 10      # a smoke test: seconds on a small file

The same as `zoo train gpt-nano --data FILE --out DIR ...`: the run directory gets log.jsonl, loss.png,
TensorBoard events, checkpoints/ and the final model (load it with zoo.load(DIR)).
"""

import argparse

from zoo.train import train

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("data")
parser.add_argument("out")
parser.add_argument("--steps", type=int, default=2000)
parser.add_argument("--tokenizer", choices=["char", "bpe"], default="char")
args = parser.parse_args()

# data.code_samples=0: the gpt-nano recipe (a Python code model) also scores how many sampled functions parse,
# which means nothing for other text.
metrics = train("gpt-nano", out=args.out, data=args.data, steps=args.steps,
                sets=[f"data.tokenizer={args.tokenizer}", "model.backbone.max_seq_len=128", "train.batch_size=32",
                      "data.code_samples=0"])
print(f"validation loss {metrics['val_loss']:.3f}, perplexity {metrics['perplexity']:.2f}")
