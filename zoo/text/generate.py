"""Text generation for GPT: KV-cached decoding with the usual sampling suite, stop strings and streaming.

    from zoo.text.generate import GenerationOptions, generate, stream
    options = GenerationOptions(max_new_tokens=100, temperature=0.8, top_p=0.95, stop=("\\n\\n",), seed=0)
    result = generate(model, "def fib(n):", options)      # GenerationResult (a list of them for a list)
    for piece in stream(model, "def fib(n):", options):   # text pieces, as soon as they are final
        print(piece, end="", flush=True)

Faster decoding (README "Benchmarks"): GenerationOptions(compile=True) compiles the step; int8 weights and
activations, zoo.nn.packed.int8_dynamic(model), an inference copy; speculative decoding with a smaller model of
the same tokenizer, generate(model, prompt, options, draft=small_model) (zoo.text.speculative).

This is the text layer over zoo.decoding, which holds the decoding itself (prefill + one (B, 1) step per
token on a preallocated KV cache; logit processors, sampler, beam search) for every autoregressive family:
here prompts become token ids (the model's tokenizer), a batch is LEFT-padded, stop strings are matched on
the decoded text (zoo.decoding.TextState: a stop string may span several tokens), streamed text is held back
while it could still turn out to be the start of a stop string, and results come back as GenerationResult.

Beam search: generate(model, prompt, GenerationOptions(beam_size=4, temperature=0)); see DecodingOptions for
patience and length_penalty. It cannot stream (the best hypothesis is known only at the end).

Limits, chosen to fail loudly rather than correct silently (diffusers' rule):
  - an empty prompt is an error: a char-level model has no BOS token to start from;
  - a prompt longer than the model's context (max_seq_len) is an error (no silent truncation);
  - longest prompt + max_new_tokens > max_seq_len is an error naming both numbers (no silent capping);
  - characters outside a char-level vocabulary raise the tokenizer's own error.
"""

import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from zoo.decoding import DecodingOptions, StopStrings, TextState, check_prompts, decode, device_of, sample
from zoo.errors import InputError, InputTypeError
from zoo.text.speculative import speculative_decode
from zoo.utils import eval_mode

# ----------------------------------------------------------------------------------------------------------
# options and results


class GenerationOptions(DecodingOptions):
    """How to generate: zoo.decoding.DecodingOptions (sampling suite, stop strings, beam search, seed, compile,
    prepack), under the name the text API and its errors use."""


@dataclass
class GenerationResult:
    """One prompt's continuation.

    text: the generated text only (no prompt; without the stop string). tokens: every new token id,
    including a final end-of-text id or the tokens that spell a stop string. finish_reason: "stop" (a stop
    string), "eot" (the end-of-text token), "length" (max_new_tokens). tokens_per_s: this row's new tokens
    over the whole call's wall time (prefill included), so summing over a batch gives its throughput (for
    stream() the wall time includes the consumer's time between pieces). With beam search, sum_logprob is the
    summed log-probability of the new tokens and score the length-penalised value it was ranked by (None
    otherwise).
    """

    prompt: str
    text: str
    tokens: list[int] = field(repr=False)
    n_new_tokens: int
    tokens_per_s: float
    finish_reason: str
    sum_logprob: float | None = None
    score: float | None = None


# ----------------------------------------------------------------------------------------------------------
# prompts and results


def _tokenizer_of(model: nn.Module):
    from zoo.models import require_family

    require_family(model, ("gpt",), "text generation")  # another family's prefill needs more than tokens
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise InputError("this model has no tokenizer (model.tokenizer is None): load a trained model directory "
                         "(zoo.load(DIR)) or attach one, e.g. model.tokenizer = CharTokenizer.train(text)")
    return tokenizer


def _encode_prompts(model: nn.Module, prompts: Sequence[str], max_new_tokens: int = 0) -> list[list[int]]:
    """Token ids of every prompt, checked against the model's context (with room for max_new_tokens)."""
    tokenizer = _tokenizer_of(model)
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise InputTypeError(f"prompt {i} must be a str, got {type(prompt).__name__}")
        if not prompt:
            raise InputError(f"prompt {i} is empty: generation continues a prompt, and a char-level model has no "
                             f"BOS token to start from; give at least one character")
    ids = tokenizer.encode_batch(list(prompts))  # characters outside a char vocabulary: the tokenizer's error
    bos = getattr(tokenizer, "bos_id", None)  # an imported checkpoint's prompts start with it (zoo/text/hf.py)
    if bos is not None:
        ids = [[bos, *row] for row in ids]
    check_prompts(ids, max_new_tokens, model.max_seq_len)
    return ids


def _check_options(options) -> GenerationOptions:
    if options is None:
        return GenerationOptions()
    if not isinstance(options, DecodingOptions):
        raise InputTypeError(f"options must be a GenerationOptions (e.g. GenerationOptions(max_new_tokens=50, "
                             f"temperature=0.8)), got {type(options).__name__}")
    return options


def _check_prompts(prompts) -> list[str]:
    if isinstance(prompts, str):
        return [prompts]
    if not isinstance(prompts, (list, tuple)):
        raise InputTypeError(f"prompts must be a str or a non-empty list of str, got {type(prompts).__name__}")
    if not prompts:
        raise InputError("prompts is an empty list; allowed: a str or a non-empty list of str")
    return list(prompts)


def generate(model: nn.Module, prompts: str | list[str], options: GenerationOptions | None = None,
             draft: nn.Module | None = None, lookahead: int = 4) -> GenerationResult | list[GenerationResult]:
    """Continue one prompt (-> GenerationResult) or a batch of prompts (-> list of GenerationResult).

    A batch is decoded together (left padding + mask); each row's greedy output equals that prompt decoded
    alone. With sampling, one generator serves the whole batch, so a row's sample depends on the batch, and a
    seed reproduces the sample of the same call, but compile=True draws another one (from the same
    distribution; DecodingOptions.compile). With options.beam_size, each prompt's best beam-search hypothesis
    (zoo.decoding.BeamSearch). With a draft (a
    smaller GPT with the same tokenizer), speculative decoding (zoo.text.speculative), the draft proposing
    `lookahead` tokens per round: greedy output equal to the model's own, prompt by prompt.
    Raises ValueError for an empty prompt, a prompt longer than the context, longest prompt + max_new_tokens >
    max_seq_len, a model without a tokenizer, or characters a char-level tokenizer does not know.
    """
    options = _check_options(options)
    texts = _check_prompts(prompts)
    ids = _encode_prompts(model, texts, options.max_new_tokens)
    tokenizer = model.tokenizer
    stop = StopStrings(options.stop)
    rows = [TextState(tokenizer, stop, track_text=bool(options.stop)) for _ in texts]
    start = time.perf_counter()
    if draft is None:
        rows = decode(model, ids, options, rows)
    else:
        for prompt_ids, row in zip(ids, rows):
            speculative_decode(model, draft, prompt_ids, options, row, lookahead)
    elapsed = max(time.perf_counter() - start, 1e-9)
    results = [_result(text, row, elapsed) for text, row in zip(texts, rows)]
    return results[0] if isinstance(prompts, str) else results


def _result(prompt: str, row: TextState, elapsed: float) -> GenerationResult:
    return GenerationResult(prompt=prompt, text=row.text, tokens=row.tokens, n_new_tokens=len(row.tokens),
                            tokens_per_s=len(row.tokens) / elapsed, finish_reason=row.finish_reason,
                            sum_logprob=row.sum_logprob, score=row.score)


def stream(model: nn.Module, prompt: str, options: GenerationOptions | None = None,
           ) -> Generator[str, None, GenerationResult]:
    """Yield the continuation of one prompt in pieces, each as soon as it is final: text that could still be
    the start of a stop string is held back, and a stop string itself is never yielded. The pieces join to
    generate()'s text; the generator's return value (StopIteration.value) is the GenerationResult."""
    options = _check_options(options)
    if not isinstance(prompt, str):
        raise InputError(f"stream() takes one prompt (a str), got {type(prompt).__name__}; use generate() for "
                         f"a batch")
    if options.beam_size is not None:
        raise InputError(f"stream() cannot stream beam search (beam_size={options.beam_size}): the best hypothesis "
                         f"is known only at the end; use generate(), or beam_size=None to stream")
    # checked here, so errors surface at the call rather than at the first next()
    ids = _encode_prompts(model, [prompt], options.max_new_tokens)
    return _stream(model, prompt, ids, options)


def _stream(model, prompt, ids, options) -> Generator[str, None, GenerationResult]:
    row = TextState(model.tokenizer, StopStrings(options.stop), track_text=True)
    start = time.perf_counter()
    for _ in sample(model, ids, options, [row]):
        piece = row.take()
        if piece:
            yield piece
    piece = row.take()
    if piece:
        yield piece
    return _result(prompt, row, max(time.perf_counter() - start, 1e-9))


# ----------------------------------------------------------------------------------------------------------
# the next-token distribution (`zoo generate --show-probs`)


@torch.inference_mode()
def next_token_table(model: nn.Module, prompt: str, k: int = 10) -> list[tuple[str, float]]:
    """The k most likely next tokens after `prompt` and their probabilities (softmax at temperature 1)."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise InputError(f"k must be an integer >= 1, got {k!r}")
    ids = _encode_prompts(model, [prompt])
    tokens = torch.tensor(ids, dtype=torch.long, device=device_of(model))
    with eval_mode(model):
        logits = model.prefill(tokens, None, model.make_cache(1, tokens.shape[1]))[0]
    probs, top = logits.float().softmax(dim=-1).topk(min(k, logits.shape[-1]))
    return [(model.tokenizer.decode([i]), p) for i, p in zip(top.tolist(), probs.tolist())]


def format_table(table: Sequence[tuple[str, float]]) -> str:
    """Render next_token_table() as one line, like the lecture slide: `for 41.8%, t 17.4%, def 9.3%`.
    A token with surrounding or invisible whitespace is shown quoted (repr), so " for" and "\\n" stay readable."""

    def show(text: str) -> str:
        return text if text and text.strip() == text and text.isprintable() and "," not in text else repr(text)

    return ", ".join(f"{show(text)} {prob * 100:.1f}%" for text, prob in table)
