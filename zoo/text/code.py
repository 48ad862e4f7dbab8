"""Does the code model write Python that parses? The quality a user of a code model sees first.

    rate, functions = parse_rate(model, n=100, seed=0)

Sampling as a user would: the prompt `def `, temperature 0.8, one batch of n continuations. Each sample is cut at
its first top-level line after the opening one (a line that starts in column 0: the next definition, statement
or decorator), so one function is judged, with its body and nothing after it; `ast.parse` then accepts it or
not. A sample that reaches max_new_tokens before such a line is judged as it stands (usually cut mid-statement,
so it fails): a model that never closes a function is not credited. HumanEval's completions are cut the same
way, at the next top-level line (Chen et al., 2021, sec. 2.3's stop sequences).
"""

import ast

from zoo.text.generate import GenerationOptions, generate

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


def parse_rate(model, n: int = 100, seed: int = 0, max_new_tokens: int = MAX_NEW_TOKENS) -> tuple[float, list[str]]:
    """The share of n sampled functions that ast.parse accepts, and the functions (prompt included)."""
    if n < 1:
        raise ValueError(f"parse_rate needs n >= 1 samples, got {n}")
    max_new_tokens = min(max_new_tokens, model.max_seq_len - len(model.tokenizer.encode(PROMPT)))
    options = GenerationOptions(max_new_tokens=max_new_tokens, temperature=TEMPERATURE, seed=seed)
    functions = [first_function(PROMPT + result.text) for result in generate(model, [PROMPT] * n, options)]
    return sum(map(parses, functions)) / n, functions
