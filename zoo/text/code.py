"""Does the code model write Python that parses? The quality a user of a code model sees first.

    rate, functions = parse_rate(model, n=100, seed=0)

Sampling as a user would: the prompt `def `, temperature 0.8, one batch of n continuations. Each sample is cut at
its first top-level line after the opening one (a line that starts in column 0: the next definition, statement
or decorator), so one function is judged, with its body and nothing after it; `ast.parse` then accepts it or
not. A sample that reaches max_new_tokens before such a line is judged as it stands (usually cut mid-statement,
so it fails): a model that never closes a function is not credited. HumanEval's completions are cut the same
way, at the next top-level line (Chen et al., 2021, sec. 2.3's stop sequences).

Token healing. A byte-level BPE writes " name" as one token, so `def ` encodes as "def" + a lone " ", a split the
model almost never saw before a name: conditioned on it, it writes "def unc   (obj):". So the prompt's last token
is backed off and the first sampled token must start with its text (" "), the token healing of Microsoft's
guidance library: the model chooses how `def ` continues the way it would have tokenised it.
"""

import ast
import math

import torch

from zoo.decoding import LogitProcessor, StopStrings, TextState, decode
from zoo.errors import InputError
from zoo.text.generate import GenerationOptions, _encode_prompts

PROMPT = "def "
TEMPERATURE = 0.8
MAX_NEW_TOKENS = 256


def first_function(text: str) -> str:
    """`text` up to (not including) its first top-level line after the first line; trailing blank lines dropped."""
    lines = text.split("\n")
    for i, line in enumerate(lines[1:], start=1):
        if line and not line[0].isspace():
            lines = lines[:i]
            break
    return "\n".join(lines).rstrip() + "\n"


def parses(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError):  # ValueError: a null byte in the source
        return False
    return True


class FirstTokenStartsWith(LogitProcessor):
    """At the first generated position only tokens whose text starts with `prefix` (token healing)."""

    needs_history = True

    def __init__(self, tokenizer, vocab_size: int, prefix: str):
        allowed = [i for i in range(vocab_size) if tokenizer.decode([i]).startswith(prefix)]
        if not allowed:
            raise InputError(f"no token of the vocabulary starts with {prefix!r}")
        self.banned = torch.ones(vocab_size, dtype=torch.bool)
        self.banned[allowed] = False

    def __call__(self, logits, seen, history):
        if history.step == 0:
            logits = logits.masked_fill(self.banned.to(logits.device), -math.inf)
        return logits


def sample_healed(model, prompt: str, n: int, options: GenerationOptions) -> list[str]:
    """n continuations of `prompt` (prompt included) with its last token healed (module docstring)."""
    tokenizer = model.tokenizer
    ids = _encode_prompts(model, [prompt], options.max_new_tokens - 1)[0]  # checked as if healed: one token less
    head, tail = tokenizer.decode(ids[:-1]), tokenizer.decode(ids[-1:])
    if not head:  # a one-token prompt has nothing to back off to
        rows = decode(model, [ids] * n, options, [TextState(tokenizer, StopStrings(()), False) for _ in range(n)])
        return [prompt + row.text for row in rows]
    healing = FirstTokenStartsWith(tokenizer, model.config.vocab_size, tail)
    rows = decode(model, [ids[:-1]] * n, options, [TextState(tokenizer, StopStrings(()), False) for _ in range(n)],
                  processors=[healing])
    return [head + row.text for row in rows]


def draw_samples(model, n: int, seed: int = 0, max_new_tokens: int = MAX_NEW_TOKENS) -> list[str]:
    """parse_rate's draw before the cut: n continuations of PROMPT at TEMPERATURE (prompt included), each at most
    max_new_tokens long and within the model's context."""
    max_new_tokens = min(max_new_tokens, model.max_seq_len - len(model.tokenizer.encode(PROMPT)))
    options = GenerationOptions(max_new_tokens=max_new_tokens, temperature=TEMPERATURE, seed=seed)
    return sample_healed(model, PROMPT, n, options)


def parse_rate(model, n: int = 100, seed: int = 0, max_new_tokens: int = MAX_NEW_TOKENS) -> tuple[float, list[str]]:
    """The share of n sampled functions that ast.parse accepts, and the functions (prompt included)."""
    if n < 1:
        raise InputError(f"parse_rate needs n >= 1 samples, got {n}")
    functions = [first_function(text) for text in draw_samples(model, n, seed, max_new_tokens)]
    return sum(map(parses, functions)) / n, functions
