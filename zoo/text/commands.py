"""`zoo generate`: the text family's command (registered with the gpt family in zoo/text/gpt.py)."""

import argparse
import json

from zoo.registry import Command


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("dir", help="a trained GPT directory, a Hugging Face text model folder, or a model name with "
                               "trained weights (gpt-nano)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int)
    p.add_argument("--min-p", type=float, default=0.0)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int)
    p.add_argument("--beam-size", type=int, help="beam search with this many beams (needs --temperature 0)")
    p.add_argument("--patience", type=float, help="beam search: finished candidates = beam size x patience")
    p.add_argument("--length-penalty", type=float,
                   help="beam search ranking: None = log-prob / length; alpha = Google NMT's ((5 + len) / 6)^alpha")
    p.add_argument("--stop", action="append", help="stop string; repeatable")
    p.add_argument("--stream", action="store_true")
    p.add_argument("--show-probs", action="store_true", help="print the most likely next tokens and stop")
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace):
    from zoo.interop import load_directory
    from zoo.models import trained_dir
    from zoo.text.generate import GenerationOptions, format_table, generate, next_token_table, stream

    # the options first: a bad value is refused before the model loads
    options = GenerationOptions(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                                top_p=args.top_p, min_p=args.min_p, repetition_penalty=args.repetition_penalty,
                                seed=args.seed, stop=tuple(args.stop or ()), beam_size=args.beam_size,
                                patience=args.patience, length_penalty=args.length_penalty)
    model = load_directory(trained_dir(args.dir)).eval()  # zoo's own directory or a Hugging Face folder
    if args.show_probs:
        print(format_table(next_token_table(model, args.prompt, k=10 if args.top_k is None else args.top_k)))
        return
    if args.stream:
        print(args.prompt, end="", flush=True)
        pieces = stream(model, args.prompt, options)
        while True:
            try:
                print(next(pieces), end="", flush=True)
            except StopIteration as done:
                result = done.value  # the generator returns the full GenerationResult
                break
        print()
    else:
        result = generate(model, args.prompt, options)
        if not args.json:
            print(args.prompt + result.text)
    if args.json:
        print(json.dumps({"text": result.text, "tokens": result.n_new_tokens, "token_ids": result.tokens,
                          "tokens_per_s": result.tokens_per_s, "finish_reason": result.finish_reason}))


GENERATE = Command("generate", "generate text with a trained GPT", add_arguments, run)
