"""Text generation for GPT: KV-cached decoding with the usual sampling suite, stop strings and streaming.

    from zoo.text.generate import GenerationOptions, generate, stream
    options = GenerationOptions(max_new_tokens=100, temperature=0.8, top_p=0.95, stop=("\\n\\n",), seed=0)
    result = generate(model, "def fib(n):", options)      # GenerationResult (a list of them for a list)
    for piece in stream(model, "def fib(n):", options):   # text pieces, as soon as they are final
        print(piece, end="", flush=True)

The algorithm (gpt-fast / Hugging Face style):
  1. encode the prompts; a batch of prompts of different lengths is LEFT-padded, with a (B, T) mask, so
     every row's next token sits in the same (last) column;
  2. prefill: one forward pass over the whole prompt writes every layer's keys/values into a cache
     preallocated for prompt + max_new_tokens positions, and computes logits for the last position only;
  3. decode: per step, the logits go through the logit processors and the sampler; the chosen tokens are
     fed back as one (B, 1) step on the cache. A row that finished (end of text, stop string) keeps being fed
     a pad token so the batch stays rectangular, but its output is frozen.

The pieces are small and compose under one frozen `GenerationOptions`, as in openai/whisper's decoding.py:
logit processors (RepetitionPenalty -> Temperature -> TopK -> TopP -> MinP, Hugging Face's order), a Sampler
(greedy or multinomial with its own seeded torch.Generator), StopStrings (matched on decoded text, so a stop
string may span several tokens) and a per-row TextState that holds back streamed text which could still turn
out to be the start of a stop string.

Limits, chosen to fail loudly rather than correct silently (diffusers' rule):
  - an empty prompt is an error: a char-level model has no BOS token to start from;
  - a prompt longer than the model's context (max_seq_len) is an error (no silent truncation);
  - longest prompt + max_new_tokens > max_seq_len is an error naming both numbers (no silent capping);
  - characters outside a char-level vocabulary raise the tokenizer's own error.
"""

import contextlib
import math
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from zoo.nn.packed import prepacked_linears

FINISH_REASONS = ("stop", "length", "eot")
PAD_ID = 0  # fed to padding positions (masked out) and to finished rows (ignored): any valid id does


# ----------------------------------------------------------------------------------------------------------
# options and results


@dataclass(frozen=True)
class GenerationOptions:
    """How to generate; validated on construction, immutable afterwards.

    temperature 0 means greedy decoding (top_k/top_p/min_p are then irrelevant: they never remove the argmax).
    top_k: keep the k most likely tokens (None: all). top_p: nucleus sampling (Holtzman et al., 2020), keep the
    smallest set of tokens whose probability mass reaches top_p (1.0: all). min_p: keep tokens with probability
    >= min_p * the top token's probability (0.0: all). repetition_penalty: CTRL's penalty (Keskar et al., 2019,
    sec. 4.1) on tokens already in prompt or output (1.0: off). stop: strings that end generation; they are
    matched on the decoded new text (not the prompt; a match may span several tokens) and are not part of the
    result. seed: of the sampler's own torch.Generator (None: a fresh random seed). compile: torch.compile the
    one-token decode step (opt-in: the first call compiles, about 30 s on a 2-core CPU, once per process and
    batch size; it pays off on a GPU and for long or repeated generations). prepack: on a CPU, multiply by
    oneDNN-prepacked copies of the weights while generating (zoo.nn.packed; about 2x faster decoding matmuls,
    the same fp32 results up to rounding); ignored with compile, whose CPU backend packs weights itself.
    """

    max_new_tokens: int = 100
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    compile: bool = False
    prepack: bool = True

    def __post_init__(self):
        def is_int(value):
            return isinstance(value, int) and not isinstance(value, bool)

        def is_number(value):
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        if not is_int(self.max_new_tokens) or self.max_new_tokens < 1:
            raise ValueError(f"GenerationOptions.max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        if not is_number(self.temperature) or self.temperature < 0:
            raise ValueError(f"GenerationOptions.temperature must be a finite number >= 0 (0 = greedy), "
                             f"got {self.temperature!r}")
        if self.top_k is not None and (not is_int(self.top_k) or self.top_k < 1):
            raise ValueError(f"GenerationOptions.top_k must be None (off) or an integer >= 1, got {self.top_k!r}")
        if not is_number(self.top_p) or not 0 < self.top_p <= 1:
            raise ValueError(f"GenerationOptions.top_p must be in (0, 1] (1 = off), got {self.top_p!r}")
        if not is_number(self.min_p) or not 0 <= self.min_p <= 1:
            raise ValueError(f"GenerationOptions.min_p must be in [0, 1] (0 = off), got {self.min_p!r}")
        if not is_number(self.repetition_penalty) or self.repetition_penalty <= 0:
            raise ValueError(f"GenerationOptions.repetition_penalty must be a finite number > 0 (1 = off, > 1 "
                             f"discourages repeats), got {self.repetition_penalty!r}")
        if isinstance(self.stop, str) or not isinstance(self.stop, (tuple, list)):
            raise ValueError(f"GenerationOptions.stop must be a tuple of strings, e.g. stop=('\\n\\n',), "
                             f"got {self.stop!r}")
        if not all(isinstance(s, str) and s for s in self.stop):
            raise ValueError(f"GenerationOptions.stop must hold non-empty strings, got {self.stop!r}")
        object.__setattr__(self, "stop", tuple(self.stop))  # a list is accepted; stored hashable
        if self.seed is not None and not is_int(self.seed):
            raise ValueError(f"GenerationOptions.seed must be None or an integer, got {self.seed!r}")
        for name in ("compile", "prepack"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"GenerationOptions.{name} must be True or False, got {getattr(self, name)!r}")


@dataclass
class GenerationResult:
    """One prompt's continuation.

    text: the generated text only (no prompt; without the stop string). tokens: every new token id,
    including a final end-of-text id or the tokens that spell a stop string. finish_reason: "stop" (a stop
    string), "eot" (the end-of-text token), "length" (max_new_tokens). tokens_per_s: this row's new tokens
    over the whole call's wall time (prefill included), so summing over a batch gives its throughput (for
    stream() the wall time includes the consumer's time between pieces).
    """

    prompt: str
    text: str
    tokens: list[int] = field(repr=False)
    n_new_tokens: int
    tokens_per_s: float
    finish_reason: str


# ----------------------------------------------------------------------------------------------------------
# logit processors: (B, V) logits -> (B, V) logits. `seen` (B, V) bool marks tokens in the prompt or output.


class LogitProcessor:
    def __call__(self, logits: torch.Tensor, seen: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError


class RepetitionPenalty(LogitProcessor):
    """CTRL (Keskar et al., 2019, sec. 4.1): a seen token's logit is divided by the penalty if positive and
    multiplied by it if negative, so a penalty > 1 always makes it less likely."""

    def __init__(self, penalty: float):
        self.penalty = penalty

    def __call__(self, logits, seen):
        penalised = torch.where(logits > 0, logits / self.penalty, logits * self.penalty)
        return torch.where(seen, penalised, logits)


class Temperature(LogitProcessor):
    """softmax(logits / T): T < 1 sharpens the distribution, T > 1 flattens it."""

    def __init__(self, temperature: float):
        self.temperature = temperature

    def __call__(self, logits, seen):
        return logits / self.temperature


class TopK(LogitProcessor):
    """Keep exactly the k largest logits (ties at the boundary broken by torch.topk), mask the rest."""

    def __init__(self, k: int):
        self.k = k

    def __call__(self, logits, seen):
        k = min(self.k, logits.shape[-1])
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, logits.topk(k, dim=-1).indices, True)
        return logits.masked_fill(~keep, -math.inf)


class TopP(LogitProcessor):
    """Nucleus sampling (Holtzman et al., 2020): keep the smallest set of most likely tokens whose total
    probability is >= p. A token is dropped when the tokens ranked above it already reach p."""

    def __init__(self, p: float):
        self.p = p

    def __call__(self, logits, seen):
        probs, order = logits.softmax(dim=-1).sort(dim=-1, descending=True)
        mass_before = probs.cumsum(dim=-1) - probs  # (B, V) mass of the strictly more likely tokens
        drop_sorted = mass_before >= self.p  # the top token has mass_before 0 < p: never dropped
        drop = torch.zeros_like(drop_sorted).scatter_(-1, order, drop_sorted)
        return logits.masked_fill(drop, -math.inf)


class MinP(LogitProcessor):
    """min-p sampling (Nguyen et al., 2024): keep tokens with probability >= min_p * the top probability, a
    cut-off that scales with the model's confidence."""

    def __init__(self, min_p: float):
        self.min_p = min_p

    def __call__(self, logits, seen):
        probs = logits.softmax(dim=-1)
        drop = probs < self.min_p * probs.amax(dim=-1, keepdim=True)
        return logits.masked_fill(drop, -math.inf)


def make_processors(options: GenerationOptions) -> list[LogitProcessor]:
    """The processors the options ask for, in Hugging Face's order. Greedy decoding needs only the penalty:
    temperature, top-k, top-p and min-p never change which token is the most likely."""
    processors: list[LogitProcessor] = []
    if options.repetition_penalty != 1.0:
        processors.append(RepetitionPenalty(options.repetition_penalty))
    if options.temperature > 0:
        if options.temperature != 1.0:
            processors.append(Temperature(options.temperature))
        if options.top_k is not None:
            processors.append(TopK(options.top_k))
        if options.top_p < 1.0:
            processors.append(TopP(options.top_p))
        if options.min_p > 0.0:
            processors.append(MinP(options.min_p))
    return processors


# ----------------------------------------------------------------------------------------------------------
# sampler


class Sampler:
    """Greedy (temperature 0: argmax) or multinomial sampling from softmax(logits) with a private generator,
    so a seed reproduces a sample without touching the global RNG."""

    def __init__(self, temperature: float, seed: int | None, device):
        self.greedy = temperature == 0
        self.generator = None
        if not self.greedy:
            self.generator = torch.Generator(device=device)
            if seed is None:
                self.generator.seed()
            else:
                self.generator.manual_seed(seed)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, V) processed logits -> (B,) token ids."""
        if self.greedy:
            return logits.argmax(dim=-1)
        return torch.multinomial(logits.softmax(dim=-1), 1, generator=self.generator).squeeze(-1)


# ----------------------------------------------------------------------------------------------------------
# stop strings and streamed text


class StopStrings:
    """Stop strings, matched on decoded text: a stop string may span several tokens (or end inside one)."""

    def __init__(self, stops: Sequence[str]):
        self.stops = tuple(stops)
        self.longest = max((len(s) for s in self.stops), default=0)

    def find(self, text: str, start: int = 0) -> int | None:
        """Index of the earliest stop string in text[start:] (as an index into text), or None."""
        hits = [i for i in (text.find(s, max(start, 0)) for s in self.stops) if i >= 0]
        return min(hits) if hits else None

    def held_back(self, text: str) -> int:
        """Length of the longest end of `text` that could still grow into a stop string (a proper prefix
        of one): streaming must not emit those characters yet."""
        longest = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:n]):
                    longest = n
                    break
        return longest


class TextState:
    """One row's output: its new tokens, their text (cut at a stop string), why it finished, and how much of
    the text has been streamed. Text is re-decoded from all new tokens at each step rather than pieced
    together from per-token strings: a byte-level BPE token may end inside a multi-byte character, which
    decodes as U+FFFD until the next token completes it (so trailing U+FFFD is held back too)."""

    def __init__(self, tokenizer, stop: StopStrings, track_text: bool):
        self.tokenizer = tokenizer
        self.stop = stop
        self.track_text = track_text  # decode every step (stop strings, streaming) or only at the end
        self.eot_id = getattr(tokenizer, "eot_id", None)
        self.tokens: list[int] = []
        self.text = ""
        self.finish_reason: str | None = None
        self.emitted = 0  # characters of self.text already streamed

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def append(self, token: int):
        self.tokens.append(token)
        if token == self.eot_id:
            self.finish_reason = "eot"
            return
        if self.track_text:
            stable_before = len(self.text.rstrip("\ufffd"))
            self.text = self.tokenizer.decode(self.tokens)
            # a stop string completed by this token ends in the new text: search only from where it could start
            cut = self.stop.find(self.text, stable_before - self.stop.longest + 1)
            if cut is not None:
                self.text = self.text[:cut]
                self.finish_reason = "stop"

    def finish(self, reason: str):
        if not self.track_text:
            self.text = self.tokenizer.decode(self.tokens)
        if self.finish_reason is None:
            self.finish_reason = reason

    def take(self) -> str:
        """The text that became final since the last call: everything once finished; before that, all but a
        trailing partial character and a trailing possible start of a stop string."""
        end = len(self.text)
        if not self.finished:
            stable = self.text.rstrip("\ufffd")
            end = len(stable) - self.stop.held_back(stable)
        piece = self.text[self.emitted:end]
        self.emitted = max(self.emitted, end)
        return piece


# ----------------------------------------------------------------------------------------------------------
# the decoding loop


def _tokenizer_of(model: nn.Module):
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise ValueError("this model has no tokenizer (model.tokenizer is None): load a trained model directory "
                         "(zoo.load(DIR)) or attach one, e.g. model.tokenizer = CharTokenizer.train(text)")
    return tokenizer


def _encode_prompts(model: nn.Module, prompts: Sequence[str], max_new_tokens: int = 0) -> list[list[int]]:
    """Token ids of every prompt, checked against the model's context (with room for max_new_tokens)."""
    tokenizer = _tokenizer_of(model)
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise ValueError(f"prompt {i} must be a str, got {type(prompt).__name__}")
        if not prompt:
            raise ValueError(f"prompt {i} is empty: generation continues a prompt, and a char-level model has no "
                             f"BOS token to start from; give at least one character")
    ids = tokenizer.encode_batch(list(prompts))  # characters outside a char vocabulary: the tokenizer's error
    max_seq_len = model.config.max_seq_len
    for i, row in enumerate(ids):
        if len(row) > max_seq_len:
            raise ValueError(f"prompt {i} is {len(row)} tokens long, more than the model's context of "
                             f"max_seq_len={max_seq_len} tokens; shorten it (prompts are never truncated silently)")
    T = max(len(row) for row in ids)  # batched prompts are padded to the longest
    if T + max_new_tokens > max_seq_len:
        raise ValueError(f"the longest prompt ({T} token{'s' * (T != 1)}) + max_new_tokens ({max_new_tokens}) = "
                         f"{T + max_new_tokens} exceeds the model's context of max_seq_len={max_seq_len}; "
                         f"lower max_new_tokens to at most {max_seq_len - T} or shorten the prompt")
    return ids


def _check_prompts(prompts) -> list[str]:
    if isinstance(prompts, str):
        return [prompts]
    if not isinstance(prompts, (list, tuple)) or not prompts:
        raise ValueError(f"prompts must be a str or a non-empty list of str, got {prompts!r}")
    return list(prompts)


def _decode_step(model: nn.Module, tokens: torch.Tensor, cache) -> torch.Tensor:
    """(B, 1) new tokens -> (B, V) next-token logits, appending their keys/values to the cache."""
    return model(tokens, cache=cache)[:, -1]


_compiled_decode_step = None


def _compiled_step():
    # One compiled function for the process: dynamo caches its graphs on the code object; dynamic=True because
    # the attended length grows by one every step (no recompilation per length).
    global _compiled_decode_step
    if _compiled_decode_step is None:
        _compiled_decode_step = torch.compile(_decode_step, dynamic=True)
    return _compiled_decode_step


def _left_pad(ids: list[list[int]], device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token lists -> (B, T) ids, LEFT-padded, and a (B, T) mask (True = real token; None if no padding)."""
    T = max(len(row) for row in ids)
    idx = torch.full((len(ids), T), PAD_ID, dtype=torch.long)
    mask = torch.zeros(len(ids), T, dtype=torch.bool)
    for i, row in enumerate(ids):
        idx[i, T - len(row):] = torch.tensor(row, dtype=torch.long)
        mask[i, T - len(row):] = True
    return idx.to(device), (mask.to(device) if not mask.all() else None)


@torch.inference_mode()  # on a generator function torch enters the mode only while the generator runs
def _decode(model: nn.Module, ids: list[list[int]], options: GenerationOptions, rows: list[TextState]):
    """Fill `rows`, yielding after every decode step (stream() hands the new text out in between)."""
    device = next(model.parameters()).device
    B, T = len(ids), max(len(row) for row in ids)
    max_seq_len = model.config.max_seq_len
    processors = make_processors(options)
    sampler = Sampler(options.temperature, options.seed, device)
    step = _compiled_step() if options.compile else _decode_step

    idx, mask = _left_pad(ids, device)
    seen = None
    if options.repetition_penalty != 1.0:  # (B, V): which tokens the prompt or output hold so far
        seen = torch.zeros(B, model.config.vocab_size, dtype=torch.bool, device=device)
        real = mask if mask is not None else torch.ones_like(idx, dtype=torch.bool)
        rows_of = torch.arange(B, device=device)[:, None].expand(B, T)
        seen[rows_of[real], idx[real]] = True  # only real tokens: padding must not mark PAD_ID as seen

    cache = model.make_cache(B, min(T + options.max_new_tokens, max_seq_len))
    packing = prepacked_linears(model, rows=B) if options.prepack and not options.compile else contextlib.nullcontext()
    with packing:
        logits = model(idx, mask=mask, cache=cache, last_only=True)[:, -1]  # prefill: (B, V)
        for i in range(options.max_new_tokens):
            logits = logits.float()
            for processor in processors:
                logits = processor(logits, seen)
            tokens = sampler(logits)  # (B,)
            for row, token in zip(rows, tokens.tolist()):
                if not row.finished:
                    row.append(token)
            yield
            if all(row.finished for row in rows) or i == options.max_new_tokens - 1:
                break  # the last token is never fed back: its logits would be unused
            if seen is not None:
                seen[torch.arange(B, device=device), tokens] = True
            # finished rows get a pad token: the batch stays rectangular, their output is frozen above
            feed = [PAD_ID if row.finished else row.tokens[-1] for row in rows]
            logits = step(model, torch.tensor(feed, dtype=torch.long, device=device)[:, None], cache)
    for row in rows:
        row.finish("length")


class _EvalMode:
    """Dropout off while generating (zoo.load returns a module in training mode); the mode is restored after."""

    def __init__(self, model: nn.Module):
        self.model, self.was_training = model, model.training

    def __enter__(self):
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was_training)


def generate(model: nn.Module, prompts: str | list[str], options: GenerationOptions | None = None,
             ) -> GenerationResult | list[GenerationResult]:
    """Continue one prompt (-> GenerationResult) or a batch of prompts (-> list of GenerationResult).

    A batch is decoded together (left padding + mask); each row's greedy output equals that prompt decoded
    alone. With sampling, one generator serves the whole batch, so a row's sample depends on the batch.
    Raises ValueError for an empty prompt, a prompt longer than the context, longest prompt + max_new_tokens >
    max_seq_len, a model without a tokenizer, or characters a char-level tokenizer does not know.
    """
    options = options or GenerationOptions()
    texts = _check_prompts(prompts)
    ids = _encode_prompts(model, texts, options.max_new_tokens)
    tokenizer = model.tokenizer
    stop = StopStrings(options.stop)
    rows = [TextState(tokenizer, stop, track_text=bool(options.stop)) for _ in texts]
    start = time.perf_counter()
    with _EvalMode(model):
        for _ in _decode(model, ids, options, rows):
            pass
    elapsed = max(time.perf_counter() - start, 1e-9)
    results = [GenerationResult(prompt=text, text=row.text, tokens=row.tokens, n_new_tokens=len(row.tokens),
                                tokens_per_s=len(row.tokens) / elapsed, finish_reason=row.finish_reason)
               for text, row in zip(texts, rows)]
    return results[0] if isinstance(prompts, str) else results


def stream(model: nn.Module, prompt: str, options: GenerationOptions | None = None,
           ) -> Generator[str, None, GenerationResult]:
    """Yield the continuation of one prompt in pieces, each as soon as it is final: text that could still be
    the start of a stop string is held back, and a stop string itself is never yielded. The pieces join to
    generate()'s text; the generator's return value (StopIteration.value) is the GenerationResult."""
    options = options or GenerationOptions()
    if not isinstance(prompt, str):
        raise ValueError(f"stream() takes one prompt (a str), got {type(prompt).__name__}; use generate() for "
                         f"a batch")
    # checked here, so errors surface at the call rather than at the first next()
    ids = _encode_prompts(model, [prompt], options.max_new_tokens)
    return _stream(model, prompt, ids, options)


def _stream(model, prompt, ids, options) -> Generator[str, None, GenerationResult]:
    row = TextState(model.tokenizer, StopStrings(options.stop), track_text=True)
    start = time.perf_counter()
    with _EvalMode(model):
        for _ in _decode(model, ids, options, [row]):
            piece = row.take()
            if piece:
                yield piece
    piece = row.take()
    if piece:
        yield piece
    elapsed = max(time.perf_counter() - start, 1e-9)
    return GenerationResult(prompt=prompt, text=row.text, tokens=row.tokens, n_new_tokens=len(row.tokens),
                            tokens_per_s=len(row.tokens) / elapsed, finish_reason=row.finish_reason)


# ----------------------------------------------------------------------------------------------------------
# the next-token distribution (`zoo generate --show-probs`)


@torch.inference_mode()
def next_token_table(model: nn.Module, prompt: str, k: int = 10) -> list[tuple[str, float]]:
    """The k most likely next tokens after `prompt` and their probabilities (softmax at temperature 1)."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    ids = _encode_prompts(model, [prompt])
    device = next(model.parameters()).device
    with _EvalMode(model):
        logits = model(torch.tensor(ids, dtype=torch.long, device=device), last_only=True)[0, -1]
    probs, top = logits.float().softmax(dim=-1).topk(min(k, logits.shape[-1]))
    return [(model.tokenizer.decode([i]), p) for i, p in zip(top.tolist(), probs.tolist())]


def format_table(table: Sequence[tuple[str, float]]) -> str:
    """Render next_token_table() as one line, like the lecture slide: `for 41.8%, t 17.4%, def 9.3%`.
    A token with surrounding or invisible whitespace is shown quoted (repr), so " for" and "\\n" stay readable."""

    def show(text: str) -> str:
        return text if text and text.strip() == text and text.isprintable() and "," not in text else repr(text)

    return ", ".join(f"{show(text)} {prob * 100:.1f}%" for text, prob in table)
