"""LoRA fine-tuning of a trained GPT on a text file, through the trainer: only small adapters train.

    python examples/text/lora.py [BASE_DIR] FILE OUT [--steps 200] [--rank 8] [--alpha 16] [--prompt TEXT]
    python examples/text/lora.py runs/my-gpt notes.txt runs/my-gpt-lora --steps 100

The same as `zoo train gpt-nano --lora r=8,alpha=16 --set train.init_from=BASE_DIR --data FILE --out OUT`: the
adapters (peft, on the backbone's linear layers) train while the base's weights stay frozen; OUT/adapter/ holds
them and OUT the merged model (zoo.load(OUT)), with log.jsonl and loss.png. BASE_DIR is any trained GPT directory
(examples/text/train.py makes one); left out, it is the gpt-nano that ships with zoo, if this checkout has one.
FILE is read with the base's tokenizer (a char-level base only knows its own corpus's characters).

Prints the validation loss on FILE's validation split (its last 10%) of the base model and of the fine-tuned
one, measured the same way on the same tokens, then a sample from the merged model.
"""

import argparse
import dataclasses

import zoo
from zoo.evaluation import load_for_eval
from zoo.shipped import shipped_dir
from zoo.text.generate import GenerationOptions, generate
from zoo.train import train

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("paths", nargs="+", metavar="PATH", help="[BASE_DIR] FILE OUT")
parser.add_argument("--steps", type=int, default=200)
parser.add_argument("--rank", type=int, default=8, help="LoRA rank r")
parser.add_argument("--alpha", type=int, default=16, help="LoRA scale alpha (the update is scaled by alpha / r)")
parser.add_argument("--prompt", help="default: the start of FILE")
parser.add_argument("--max-new-tokens", type=int, default=120)
args = parser.parse_args()

if len(args.paths) == 3:
    base_dir, file, out = args.paths
elif len(args.paths) == 2 and shipped_dir("gpt-nano") is not None:
    base_dir, (file, out) = str(shipped_dir("gpt-nano")), args.paths
else:
    parser.error("give BASE_DIR FILE OUT" + ("" if len(args.paths) != 2 else
                                             " (no gpt-nano ships with this checkout to default BASE_DIR to)"))

# The yardstick: the base's data preparation on FILE (its tokenizer and context), scored by the family's
# evaluation. The loss only: the recipe's code-sampling parse rate (data.code_samples) means nothing here.
base, family, data, data_config = load_for_eval(base_dir, data_path=file)
data_config = dataclasses.replace(data_config, code_samples=0)
before = family.evaluate(base.eval(), data, data_config)["val_loss"]
print(f"base model {base_dir}: validation loss on {file} {before:.3f}", flush=True)

# The recipe warms up for 50 steps, which suits training from scratch; a short fine-tune warms up for a tenth.
train("gpt-nano", out=out, data=file, steps=args.steps, lora=f"r={args.rank},alpha={args.alpha}",
      sets=[f"train.init_from={base_dir}", "data.code_samples=0", f"train.warmup={max(1, args.steps // 10)}"])

merged = zoo.load(out).eval()  # the export folds the adapters into the weights: a plain GPT again
after = family.evaluate(merged, data, data_config)["val_loss"]
print(f"after {args.steps} LoRA steps (r={args.rank}, alpha={args.alpha}): validation loss {before:.3f} -> "
      f"{after:.3f}")

with open(file, encoding="utf-8") as f:
    prompt = args.prompt if args.prompt is not None else f.read(16)
room = merged.max_seq_len - len(merged.tokenizer.encode(prompt))  # prompt and new tokens share the context
options = GenerationOptions(max_new_tokens=min(args.max_new_tokens, room), temperature=0.8, top_p=0.95, seed=0)
print("-" * 60 + f"\n{prompt}{generate(merged, [prompt], options)[0].text}")
