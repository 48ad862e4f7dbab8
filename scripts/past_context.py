r"""Would a code GPT's capped samples parse if sampling went on past its context? (for maintainers)

    python scripts/past_context.py gpt-nano                 (the shipped weights, seeds 0 to 2)
    python scripts/past_context.py runs/gpt --seeds 10      (a run directory)

`parse_rate` samples at most context - prompt tokens, so a function still open at the cap is judged as it stands
and fails. This draws the same samples (`draw_samples`: prompt `def `, temperature 0.8, seed by seed), takes the
capped ones and samples on past the context the way nanoGPT's `generate` does: each next token from the last
max_seq_len tokens (the window slides, no KV cache), until the function has its next top-level line or `--extra`
more tokens. Then it cuts and parses them as `parse_rate` does. zoo's own `generate` refuses to pass the context
rather than slide.
"""

import argparse
from pathlib import Path

import torch

import zoo
from zoo.text.code import TEMPERATURE, draw_samples, first_function, parses


def has_next_top_level_line(text: str) -> bool:
    """Whether `first_function` cuts anything off: a line after the first starts in column 0."""
    return first_function(text) != text.rstrip() + "\n"


@torch.inference_mode()
def sample_past_context(model, texts: list[str], extra: int, generator: torch.Generator) -> list[str]:
    """Continue each text, one token at a time from its last max_seq_len tokens, until it has its next top-level
    line or `extra` more tokens. The rows are cropped to the shortest one's token count so they batch."""
    tokenizer, context = model.tokenizer, model.max_seq_len
    rows = [tokenizer.encode(text) for text in texts]
    shortest = min(map(len, rows))
    window = torch.tensor([row[-shortest:] for row in rows])
    open_rows = set(range(len(rows)))
    for _ in range(extra):
        logits = model(window[:, -context:], last_only=True)[:, -1].float()
        tokens = torch.multinomial((logits / TEMPERATURE).softmax(dim=-1), 1, generator=generator)
        window = torch.cat([window, tokens], dim=1)
        for i in list(open_rows):
            rows[i].append(tokens[i, 0].item())
            if has_next_top_level_line(tokenizer.decode(rows[i])):
                open_rows.discard(i)
        if not open_rows:
            break
    return [tokenizer.decode(row) for row in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a shipped name or a run directory of a code GPT")
    parser.add_argument("--seeds", type=int, default=3, help="parse_rate seeds 0 .. N-1, 100 samples each")
    parser.add_argument("--extra", type=int, default=768, help="most tokens to sample past the cap")
    args = parser.parse_args(argv)
    model = (zoo.load(args.model) if Path(args.model).is_dir() else zoo.load(args.model, pretrained=True)).eval()
    context = model.max_seq_len
    total = parsing = capped = ended = parsing_after = 0
    for seed in range(args.seeds):
        texts = draw_samples(model, 100, seed)  # the draw parse_rate(model, n=100, seed=seed) scores
        open_texts = [text for text in texts if not has_next_top_level_line(text)]
        total, parsing = total + len(texts), parsing + sum(parses(first_function(text)) for text in texts)
        if not open_texts:
            continue
        continued = sample_past_context(model, open_texts, args.extra, torch.Generator().manual_seed(seed))
        capped += len(open_texts)
        ended += sum(map(has_next_top_level_line, continued))
        parsing_after += sum(parses(first_function(text)) for text in continued)
    print(f"{args.model}: {parsing} of {total} sampled functions parse at the {context}-token cap; {capped} were "
          f"capped; sampled on past the context (at most {args.extra} tokens more) {ended} of those ended and "
          f"{parsing_after} parse, so {(parsing + parsing_after) / total:.1%} would parse")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
