"""Sample from a trained GPT: one prompt streamed, then a batch of ragged prompts decoded together.

    python examples/text/sample.py runs/my-gpt "def " [--temperature 0.8] [--top-p 0.95] [--max-new-tokens 120]
"""

import argparse

import zoo
from zoo.text.generate import GenerationOptions, generate, stream

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("model_dir")
parser.add_argument("prompt")
parser.add_argument("--temperature", type=float, default=0.8)
parser.add_argument("--top-p", type=float, default=0.95)
parser.add_argument("--max-new-tokens", type=int, default=120)
args = parser.parse_args()

model = zoo.load(args.model_dir).eval()
options = GenerationOptions(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                            stop=("\n\n\n",), seed=0)
print(args.prompt, end="", flush=True)
for piece in stream(model, args.prompt, options):
    print(piece, end="", flush=True)
print("\n" + "-" * 60)

# Batched prompts of different lengths: left-padded, one KV cache, each row at its own RoPE positions.
greedy = GenerationOptions(max_new_tokens=40, temperature=0.0)
for result in generate(model, [args.prompt, args.prompt * 2, args.prompt[:1]], greedy):
    print(f"{result.prompt!r:>30} -> {result.text!r} ({result.tokens_per_s:.0f} tokens/s)")
