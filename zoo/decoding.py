"""Autoregressive decoding shared by every family: greedy, sampling and beam search on a KV cache.

    from zoo.decoding import DecodingOptions, decode
    states = decode(model, [[5, 17, 3], [9]], DecodingOptions(max_new_tokens=50, temperature=0))
    states[0].tokens                       # the new token ids of the first prompt; .finish_reason says why it ended
    best = decode(model, prompts, DecodingOptions(temperature=0, beam_size=4),
                  states=[TokenState(eot_id) for _ in prompts])   # beam search; best[0].score, .sum_logprob

This module works on token ids. Text (tokenizers, stop strings, streaming) is a layer the caller supplies
through the per-row state objects (TextState here; zoo.text.generate builds prompts and results around it),
so a GPT and a Whisper-style speech decoder run the same loop. It follows openai/whisper's decoding.py:
a frozen options object, an `Inference`-like model interface, logit filters, a sampler or a beam search
decoder, and a ranker for the finished beam candidates.

The algorithm (gpt-fast / Hugging Face style):
  1. a batch of prompts of different lengths is LEFT-padded, with a (B, T) mask, so every row's next token
     sits in the same (last) column;
  2. prefill: one forward pass over the whole prompt writes every layer's keys/values into a cache
     preallocated for prompt + max_new_tokens positions (plus cross-attention keys/values of the context,
     once), and computes logits for the last position only;
  3. decode: per step, the logits go through the logit processors, then the sampler picks one token per row
     (greedy or sampling) or the beam search keeps the beam_size best continuations per prompt and reorders
     the cache to follow them; the chosen tokens are fed back as one (B, 1) step on the cache. A row that
     finished keeps being fed a pad token so the batch stays rectangular, but its output is frozen.

A model takes part by implementing `AutoregressiveModel` (below): make_cache, prefill, step, max_seq_len and
vocab_size. A family adds its own rules as logit processors (`processors=` of decode, sample and beam_search);
one whose rule depends on what was generated so far (Whisper's timestamp rules, zoo.speech.decoding) sets
`needs_history` and is handed a TokenHistory: each row's tokens so far and the step index. The loop keeps
that history only when such a processor is present, so the GPT path does no extra work per step.
"""

import contextlib
import copy
import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from zoo.errors import InputError
from zoo.nn.packed import prepacked_linears
from zoo.utils import eval_mode

FINISH_REASONS = ("stop", "length", "eot")
PAD_ID = 0  # fed to padding positions (masked out) and to finished rows (ignored): any valid id does


# ----------------------------------------------------------------------------------------------------------
# the model interface


class AutoregressiveModel(Protocol):
    """What decoding needs from a model: a next-token distribution, computed incrementally on a KV cache.

    max_seq_len: the context limit in tokens (prompt + new tokens). vocab_size: V, the width of the logits.
    make_cache(batch, max_len): an empty cache for `batch` rows of up to `max_len` positions; it must have
        `reorder(indices, same_context=False)` (beam search selects and repeats rows; same_context: each row's
        source shares its context, so context keys/values need not move), as zoo.nn.Cache does.
    prefill(tokens, mask, cache, **context): tokens (B, T) LEFT-padded prompts, mask (B, T) True for real
        tokens (None: no padding); writes the prompt into the cache and returns (B, V) logits of the last
        position. `context` is whatever else the model conditions on, given once: a speech decoder takes its
        encoder output here, whose cross-attention keys/values zoo.nn caches in KVCache.cross_kv.
    step(tokens, cache): tokens (B, 1), one new token per row; appends them to the cache and returns (B, V)
        logits of the next position.
    """

    max_seq_len: int
    vocab_size: int

    def make_cache(self, batch: int, max_len: int): ...
    def prefill(self, tokens: torch.Tensor, mask: torch.Tensor | None, cache, **context) -> torch.Tensor: ...
    def step(self, tokens: torch.Tensor, cache) -> torch.Tensor: ...


# The methods besides forward() that run the model's parameters: a sharded (FSDP) model must gather its
# weights around them too, so the trainer registers them (an evaluation may decode during training).
COMPUTE_METHODS = ("prefill", "step")


# ----------------------------------------------------------------------------------------------------------
# options


@dataclass(frozen=True)
class DecodingOptions:
    """How to decode; validated on construction, immutable afterwards.

    temperature 0 means greedy decoding (top_k/top_p/min_p are then irrelevant: they never remove the argmax).
    top_k: keep the k most likely tokens (None: all). top_p: nucleus sampling (Holtzman et al., 2020), keep the
    smallest set of tokens whose probability mass reaches top_p (1.0: all). min_p: keep tokens with probability
    >= min_p * the top token's probability (0.0: all). repetition_penalty: CTRL's penalty (Keskar et al., 2019,
    sec. 4.1) on tokens already in prompt or output (1.0: off). stop: strings that end generation; they are
    matched on the decoded new text (not the prompt; a match may span several tokens) and are not part of the
    result (the text layer's TextState applies them). seed: of the sampler's own torch.Generator (None: a
    fresh random seed). compile: torch.compile the one-token decode step with the logit processors and the
    choice of the token, so inductor fuses their small kernels (opt-in: the first call compiles, 10 to 30 s on
    a 2-core CPU, once per process for a batch of 1 and once for larger batches; README's Benchmarks has the
    gain); it samples by the exponential race (choose_tokens), from the same distribution as the eager
    torch.multinomial but from other random numbers, so a seed gives other tokens compiled than eager.
    prepack: on a CPU, multiply by oneDNN-prepacked copies of the weights while generating (zoo.nn.packed;
    about 2x faster decoding matmuls, the same fp32 results up to rounding), compiled or not.

    Beam search (as openai/whisper's BeamSearchDecoder) replaces sampling when beam_size is set; it needs
    temperature=0. beam_size: live hypotheses per prompt (None: no beam search). patience: stop a prompt once
    round(beam_size * patience) candidates have finished (Kasai et al., 2022, "Beam Decoding with Controlled
    Patience"; None = 1.0, the usual stopping rule). length_penalty: how finished candidates are ranked: None
    divides the summed log-prob by the length (whisper's MaximumLikelihoodRanker); a float alpha in [0, 1]
    divides it by ((5 + length) / 6) ** alpha (Wu et al., 2016, "Google's NMT", eq. 14; 0 = the raw summed
    log-prob). suppress_tokens: token ids that are never generated (their logits are set to -inf).
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
    beam_size: int | None = None
    patience: float | None = None
    length_penalty: float | None = None
    suppress_tokens: tuple[int, ...] = ()

    def __post_init__(self):
        name = type(self).__name__  # errors name the class the caller wrote (GenerationOptions in zoo.text)

        def is_int(value):
            return isinstance(value, int) and not isinstance(value, bool)

        def is_number(value):
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        if not is_int(self.max_new_tokens) or self.max_new_tokens < 1:
            raise InputError(f"{name}.max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        if not is_number(self.temperature) or self.temperature < 0:
            raise InputError(f"{name}.temperature must be a finite number >= 0 (0 = greedy), got {self.temperature!r}")
        if self.top_k is not None and (not is_int(self.top_k) or self.top_k < 1):
            raise InputError(f"{name}.top_k must be None (off) or an integer >= 1, got {self.top_k!r}")
        if not is_number(self.top_p) or not 0 < self.top_p <= 1:
            raise InputError(f"{name}.top_p must be in (0, 1] (1 = off), got {self.top_p!r}")
        if not is_number(self.min_p) or not 0 <= self.min_p <= 1:
            raise InputError(f"{name}.min_p must be in [0, 1] (0 = off), got {self.min_p!r}")
        if not is_number(self.repetition_penalty) or self.repetition_penalty <= 0:
            raise InputError(f"{name}.repetition_penalty must be a finite number > 0 (1 = off, > 1 discourages "
                             f"repeats), got {self.repetition_penalty!r}")
        if isinstance(self.stop, str) or not isinstance(self.stop, (tuple, list)):
            raise InputError(f"{name}.stop must be a tuple of strings, e.g. stop=('\\n\\n',), got {self.stop!r}")
        if not all(isinstance(s, str) and s for s in self.stop):
            raise InputError(f"{name}.stop must hold non-empty strings, got {self.stop!r}")
        object.__setattr__(self, "stop", tuple(self.stop))  # a list is accepted; stored hashable
        if self.seed is not None and not is_int(self.seed):
            raise InputError(f"{name}.seed must be None or an integer, got {self.seed!r}")
        for flag in ("compile", "prepack"):
            if not isinstance(getattr(self, flag), bool):
                raise InputError(f"{name}.{flag} must be True or False, got {getattr(self, flag)!r}")

        if self.beam_size is not None and (not is_int(self.beam_size) or self.beam_size < 1):
            raise InputError(f"{name}.beam_size must be None (no beam search) or an integer >= 1, "
                             f"got {self.beam_size!r}")
        if self.patience is not None and (not is_number(self.patience) or self.patience <= 0):
            raise InputError(f"{name}.patience must be None (= 1.0) or a finite number > 0, got {self.patience!r}")
        if self.length_penalty is not None and (not is_number(self.length_penalty)
                                                or not 0 <= self.length_penalty <= 1):
            raise InputError(f"{name}.length_penalty must be None (divide by the length) or a number in [0, 1] "
                             f"(alpha of ((5 + length) / 6) ** alpha), got {self.length_penalty!r}")
        if (isinstance(self.suppress_tokens, (str, bytes)) or not isinstance(self.suppress_tokens, (tuple, list))
                or not all(is_int(t) and t >= 0 for t in self.suppress_tokens)):
            raise InputError(f"{name}.suppress_tokens must be a tuple of token ids (integers >= 0), "
                             f"got {self.suppress_tokens!r}")
        object.__setattr__(self, "suppress_tokens", tuple(self.suppress_tokens))

        # combinations that cannot mean what they say (whisper refuses patience without beam_size too)
        if self.beam_size is None:
            for field in ("patience", "length_penalty"):
                if getattr(self, field) is not None:
                    raise InputError(f"{name}.{field}={getattr(self, field)!r} needs beam_size: it only affects "
                                     f"beam search; set beam_size (e.g. 4) or leave {field}=None")
        else:
            if self.temperature != 0:
                raise InputError(f"{name}.beam_size={self.beam_size} needs temperature=0: beam search keeps the "
                                 f"most likely continuations and does not sample; got temperature="
                                 f"{self.temperature!r} (use beam_size=None to sample)")
            if round(self.beam_size * (self.patience or 1.0)) < 1:
                raise InputError(f"{name}.patience={self.patience!r} with beam_size={self.beam_size} waits for "
                                 f"round(beam_size * patience) = 0 finished candidates; patience must be above "
                                 f"{0.5 / self.beam_size:g} (so that at least 1 is collected)")


# ----------------------------------------------------------------------------------------------------------
# decoding: the entry point, then the sampling loop and beam search


def decode(model: AutoregressiveModel, prompts: Sequence[Sequence[int]], options: DecodingOptions,
           states: "list[TokenState] | None" = None, processors: "Sequence[LogitProcessor]" = (),
           logprobs: bool = False, **context) -> "list[TokenState]":
    """Continue every prompt (a list of token ids) until it finishes; returns one finished state per prompt.

    states: one empty per-row state per prompt, which decides when a row is finished and records its tokens
    (default: TokenState() with no end-of-text id, so rows end at max_new_tokens; a TextState adds text and
    stop strings). With beam search the returned states are the best hypotheses, with `sum_logprob` and
    `score` set. processors: a family's own logit processors, applied before the options' ones. logprobs:
    greedy/sampling also sum each row's token log-probs into `sum_logprob` (see sample()). context: passed
    to model.prefill (e.g. an encoder's output).
    """
    states = states if states is not None else [TokenState() for _ in prompts]
    if len(states) != len(prompts):
        raise InputError(f"decode() needs one state per prompt, got {len(states)} states for {len(prompts)} prompts")
    if options.beam_size is not None:
        return [candidates[0] for candidates in beam_search(model, prompts, options, states, processors, **context)]
    for _ in sample(model, prompts, options, states, processors, logprobs, **context):
        pass
    return states


@torch.inference_mode()  # on a generator function torch enters the mode only while the generator runs
def sample(model: AutoregressiveModel, prompts: Sequence[Sequence[int]], options: DecodingOptions,
           states: "list[TokenState]", processors: "Sequence[LogitProcessor]" = (), logprobs: bool = False,
           **context) -> Generator[None, None, None]:
    """Greedy or sampled decoding: fill `states`, yielding after every step (a text layer can stream the new
    text in between).

    processors: applied before the options' own (make_processors). logprobs: sum each row's token log-probs,
    end-of-text included, into state.sum_logprob, as openai/whisper's avg_logprob does: from the logits after
    the filtering processors (the given ones, suppression, repetition penalty) and before those that only
    reshape the distribution for sampling (temperature, top-k, top-p, min-p), i.e. at temperature 1."""
    check_prompts(prompts, options.max_new_tokens, model.max_seq_len)
    device = device_of(model)
    B, T = len(prompts), max(len(row) for row in prompts)
    filters = [*processors, *make_processors(options, model.vocab_size)]
    # the processors after the log-probs are taken: none unless asked (one loop, as before, for the text layer)
    split = len(filters)
    if logprobs:
        split = next((i for i, p in enumerate(filters) if getattr(p, "reshapes", False)), split)
    filters, shapers = filters[:split], filters[split:]
    history = TokenHistory(B, options.max_new_tokens, device) if needs_history(filters + shapers) else None
    sampler = Sampler(options.temperature, options.seed, device, race=options.compile)
    step = _compiled_step() if options.compile else _step
    # Compiled, the processors and the choice of the next token join the step's graph (one call instead of a
    # dozen small kernels per token), unless the loop needs the logits in between (log-probs) or a processor
    # reads the history; the sampler's noise is drawn outside, from its own generator.
    fused = options.compile and not logprobs and history is None

    idx, mask = left_pad(prompts, device)
    seen = seen_tokens(idx, mask, model.vocab_size) if options.repetition_penalty != 1.0 else None
    cache = model.make_cache(B, min(T + options.max_new_tokens, model.max_seq_len))
    with eval_mode(model), packed_weights(model, options, rows=B):
        logits, tokens = model.prefill(idx, mask, cache, **context), None  # (B, V)
        for i in range(options.max_new_tokens):
            if tokens is None:  # the step gave logits (the prefill's, or an unfused step's): choose here
                logits = apply_processors(filters, logits.float(), seen, history)
                if logprobs:
                    step_logprobs = logits.log_softmax(dim=-1)
                tokens = sampler(apply_processors(shapers, logits, seen, history))  # (B,)
            if logprobs:
                chosen = step_logprobs.gather(1, tokens[:, None])[:, 0].tolist()
                for state, logprob in zip(states, chosen):
                    if not state.finished:
                        state.sum_logprob = (state.sum_logprob or 0.0) + logprob
            for state, token in zip(states, tokens.tolist()):
                if not state.finished:
                    state.append(token)
            if history is not None:
                history.append(tokens)
            yield
            if all(state.finished for state in states) or i == options.max_new_tokens - 1:
                break  # the last token is never fed back: its logits would be unused
            if seen is not None:
                seen[torch.arange(B, device=device), tokens] = True
            # finished rows get a pad token: the batch stays rectangular, their output is frozen above
            feed = torch.tensor([PAD_ID if state.finished else state.tokens[-1] for state in states],
                                dtype=torch.long, device=device)[:, None]
            if fused:
                noise = sampler.noise(B, model.vocab_size)
                tokens = step(model, feed, cache, filters, seen, choose=True, noise=noise)
            else:
                logits, tokens = step(model, feed, cache), None
    for state in states:
        state.finish("length")


@torch.inference_mode()
def beam_search(model: AutoregressiveModel, prompts: Sequence[Sequence[int]], options: DecodingOptions,
                states: "list[TokenState]", processors: "Sequence[LogitProcessor]" = (),
                **context) -> "list[list[TokenState]]":
    """Beam search over every prompt at once (len(prompts) x beam_size rows); returns each prompt's finished
    candidates, best first by the length-penalised score (the n-best list; decode() keeps the first).
    processors: applied before the options' own; a TokenHistory follows the beams (reordered with them)."""
    check_prompts(prompts, options.max_new_tokens, model.max_seq_len)
    device = device_of(model)
    N, T, K = len(prompts), max(len(row) for row in prompts), options.beam_size
    # temperature 0: the options add suppression and the penalty only
    processors = [*processors, *make_processors(options, model.vocab_size)]
    history = TokenHistory(N * K, options.max_new_tokens, device) if needs_history(processors) else None
    step = _compiled_step() if options.compile else _step

    idx, mask = left_pad(prompts, device)
    seen = seen_tokens(idx, mask, model.vocab_size) if options.repetition_penalty != 1.0 else None
    cache = model.make_cache(N, min(T + options.max_new_tokens, model.max_seq_len))
    search = BeamSearch(states, K, options.patience, options.length_penalty, device,
                        normalize=not any(getattr(p, "returns_logprobs", False) for p in processors))
    with eval_mode(model), packed_weights(model, options, rows=N * K):
        logits = model.prefill(idx, mask, cache, **context)  # (N, V): each prompt once
        rows = torch.arange(N, device=device).repeat_interleave(K)  # then beam_size copies of each
        cache.reorder(rows)
        logits = logits.index_select(0, rows)
        seen = seen.index_select(0, rows) if seen is not None else None
        for i in range(options.max_new_tokens):
            logits = apply_processors(processors, logits.float(), seen, history)
            sources, tokens = search.update(logits)  # (N*K,) rows the new beams extend, (N*K,) their tokens
            if search.done or i == options.max_new_tokens - 1:
                break
            cache.reorder(sources, same_context=True)  # a beam's source is one of its own prompt's beams
            if history is not None:
                history.reorder(sources)
                history.append(tokens)
            if seen is not None:
                seen = seen.index_select(0, sources)
                seen[torch.arange(N * K, device=device), tokens] = True
            logits = step(model, tokens[:, None], cache)
    return search.ranked()


# ----------------------------------------------------------------------------------------------------------
# beam search


class BeamSearch:
    """openai/whisper's BeamSearchDecoder on batched rows: prompt i owns rows [i*K, (i+1)*K).

    Each step scores every continuation of every live beam by its summed log-prob, walks them best first,
    moves those that finish (end of text, or whatever the row state calls finished, e.g. a stop string) to
    the prompt's finished list and keeps the K best unfinished ones as the new beams. A prompt is done once
    round(K * patience) candidates have finished (Kasai et al., 2022) or no live beam is left; its rows are
    then frozen (fed a pad token, output ignored) until every prompt is done or max_new_tokens is reached.
    """

    def __init__(self, states: "list[TokenState]", beam_size: int, patience: float | None,
                 length_penalty: float | None, device, normalize: bool = True):
        self.beam_size = beam_size
        self.normalize = normalize  # False: the processed logits are already log-scores (returns_logprobs)
        self.max_candidates = round(beam_size * (patience or 1.0))
        self.length_penalty = length_penalty
        self.device = device
        self.beams: list[TokenState | None] = [state.fork() for state in states for _ in range(beam_size)]
        # Every prompt's K rows start as copies of one prompt: only the first may expand at the first step,
        # or the K best continuations would be K copies of the same one.
        self.sum_logprobs = torch.full((len(self.beams),), -math.inf, device=device)
        self.sum_logprobs[::beam_size] = 0.0
        self.finished: list[list[TokenState]] = [[] for _ in states]
        self.complete = [False] * len(states)

    @property
    def done(self) -> bool:
        return all(self.complete)

    def update(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N*K, V) processed logits -> the new beams: the rows they extend and their new tokens, (N*K,) each."""
        K = self.beam_size
        logprobs = logits.float().log_softmax(dim=-1) if self.normalize else logits.float()
        V = logprobs.shape[-1]
        scores = (self.sum_logprobs[:, None] + logprobs).view(len(self.finished), K * V)
        # a beam ends with at most one end-of-text token, so the 2K best continuations usually hold K that go
        # on; stop strings can finish more, and then the prompt's row is searched further (_ranked)
        top, flat = scores.topk(min(2 * K, K * V), dim=-1)
        top, flat = top.tolist(), flat.tolist()
        previous = self.sum_logprobs.tolist()
        sources, tokens, sums, beams = [], [], [], []
        for i in range(len(self.finished)):
            rows = range(i * K, (i + 1) * K)
            if self.complete[i]:  # frozen: keep the rows where they are
                sources += rows
                tokens += [PAD_ID] * K
                sums += [previous[r] for r in rows]
                beams += [self.beams[r] for r in rows]
                continue
            live, newly_finished = [], []
            for score, index in _ranked(top[i], flat[i], scores[i]):
                if score == -math.inf or len(live) == K:
                    break  # sorted: the rest cannot be reached (zero probability) or are not needed
                source, token = i * K + index // V, index % V
                beam = self.beams[source].fork()
                beam.append(token)
                beam.sum_logprob = score
                (newly_finished if beam.finished else live).append((source, token, score, beam))
            # fewer than K continuations with nonzero probability (a tiny vocabulary): dead rows, never chosen
            live += [(i * K, PAD_ID, -math.inf, None)] * (K - len(live))
            for source, token, score, beam in live:
                sources.append(source)
                tokens.append(token)
                sums.append(score)
                beams.append(beam)
            room = self.max_candidates - len(self.finished[i])
            self.finished[i] += [beam for *_, beam in newly_finished[:room]]
            self.complete[i] = len(self.finished[i]) >= self.max_candidates or live[0][2] == -math.inf
        self.beams = beams
        self.sum_logprobs = torch.tensor(sums, device=self.device)
        return (torch.tensor(sources, dtype=torch.long, device=self.device),
                torch.tensor(tokens, dtype=torch.long, device=self.device))

    def ranked(self) -> "list[list[TokenState]]":
        """Each prompt's candidates, best first. As in whisper, a prompt with fewer than K finished candidates
        (max_new_tokens came first) also ranks its best live beams, up to K candidates in all."""
        out = []
        for i, finished in enumerate(self.finished):
            candidates = list(finished)
            if len(candidates) < self.beam_size:
                live = [b for b in self.beams[i * self.beam_size:(i + 1) * self.beam_size]
                        if b is not None and b.sum_logprob > -math.inf]
                live.sort(key=lambda b: b.sum_logprob, reverse=True)
                candidates += live[:self.beam_size - len(candidates)]
            for candidate in candidates:
                candidate.finish("length")  # no-op for a finished one; decodes text for a TextState
                candidate.score = length_normalized(candidate.sum_logprob, candidate.n_scored, self.length_penalty)
            out.append(sorted(candidates, key=lambda c: c.score, reverse=True))
        return out


def length_normalized(sum_logprob: float, length: int, length_penalty: float | None) -> float:
    """The ranking score of a finished candidate. Summed log-probs favour short sequences (every token costs
    probability), so they are divided by a length term: the length itself (None; whisper's default) or
    Google NMT's lp = ((5 + length) / 6) ** alpha (Wu et al., 2016, eq. 14), alpha in [0, 1], 0 = none."""
    length = max(length, 1)
    penalty = length if length_penalty is None else ((5 + length) / 6) ** length_penalty
    return sum_logprob / penalty


def _ranked(top: list[float], flat: list[int], scores: torch.Tensor):
    """(score, index) pairs of one prompt's continuations, best first: the precomputed top ones, then (rarely
    needed) the rest."""
    yield from zip(top, flat)
    if len(top) < scores.numel():
        rest, order = scores.sort(descending=True)
        yield from zip(rest[len(top):].tolist(), order[len(top):].tolist())


# ----------------------------------------------------------------------------------------------------------
# logit processors: (B, V) logits -> (B, V) logits. `seen` (B, V) bool marks tokens in the prompt or output.


class LogitProcessor:
    """One rule on the next-token logits, called as processor(logits, seen).

    needs_history: the rule depends on each row's tokens generated so far (not the prompt) or on the step
    index; it is then called as processor(logits, seen, history) with a TokenHistory (False: never built).
    reshapes: the rule only reshapes the distribution for sampling (temperature, top-k, top-p, min-p) rather
    than deciding what may come next; log-probs (sample(logprobs=True)) are taken before such rules.
    returns_logprobs: the rule returns each token's final log-score, e.g. fused with a second model's scores
    (zoo.speech.joint); beam search adds them to the beams' sums as they are instead of renormalizing them
    with a log-softmax, which would shift every row by its own constant and so change how beams compare.
    """

    needs_history = False
    reshapes = False
    returns_logprobs = False

    def __call__(self, logits: torch.Tensor, seen: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError


class TokenHistory:
    """The tokens each row has generated so far, for processors with needs_history: `tokens` (B, step) and
    `step`, the index of the token about to be chosen (0 at the first). Beam search reorders it with the
    beams, so row r is always row r's own hypothesis. Rows that already finished keep growing with whatever
    they are fed; their output is ignored."""

    def __init__(self, batch: int, max_len: int, device):
        self.buffer = torch.zeros(batch, max_len, dtype=torch.long, device=device)
        self.step = 0

    @property
    def tokens(self) -> torch.Tensor:
        return self.buffer[:, :self.step]

    def append(self, tokens: torch.Tensor):
        self.buffer[:, self.step] = tokens
        self.step += 1

    def reorder(self, indices: torch.Tensor):
        self.buffer = self.buffer.index_select(0, indices)


def needs_history(processors: Sequence[LogitProcessor]) -> bool:
    return any(getattr(p, "needs_history", False) for p in processors)


def apply_processors(processors: Sequence[LogitProcessor], logits: torch.Tensor, seen: torch.Tensor | None,
                     history: TokenHistory | None = None) -> torch.Tensor:
    for processor in processors:
        if getattr(processor, "needs_history", False):
            logits = processor(logits, seen, history)
        else:
            logits = processor(logits, seen)
    return logits


class SuppressTokens(LogitProcessor):
    """Never generate these token ids (whisper's SuppressTokens): their logits become -inf."""

    def __init__(self, token_ids: Sequence[int]):
        self.token_ids = list(token_ids)

    def __call__(self, logits, seen):
        logits = logits.clone()  # the caller's tensor may be a view of the model's output
        logits[:, self.token_ids] = -math.inf
        return logits


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

    reshapes = True

    def __init__(self, temperature: float):
        self.temperature = temperature

    def __call__(self, logits, seen):
        return logits / self.temperature


class TopK(LogitProcessor):
    """Keep exactly the k largest logits (ties at the boundary broken by torch.topk), mask the rest."""

    reshapes = True

    def __init__(self, k: int):
        self.k = k

    def __call__(self, logits, seen):
        k = min(self.k, logits.shape[-1])
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, logits.topk(k, dim=-1).indices, True)
        return logits.masked_fill(~keep, -math.inf)


class TopP(LogitProcessor):
    """Nucleus sampling (Holtzman et al., 2020): keep the smallest set of most likely tokens whose total
    probability is >= p. A token is dropped when the tokens ranked above it already reach p."""

    reshapes = True

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

    reshapes = True

    def __init__(self, min_p: float):
        self.min_p = min_p

    def __call__(self, logits, seen):
        probs = logits.softmax(dim=-1)
        drop = probs < self.min_p * probs.amax(dim=-1, keepdim=True)
        return logits.masked_fill(drop, -math.inf)


def make_processors(options: DecodingOptions, vocab_size: int | None = None) -> list[LogitProcessor]:
    """The processors the options ask for: suppression, then Hugging Face's order. Greedy decoding and beam
    search need only suppression and the penalty: temperature, top-k, top-p and min-p never change which
    token is the most likely. vocab_size (the model's), when given, checks suppress_tokens against it."""
    processors: list[LogitProcessor] = []
    if options.suppress_tokens:
        if vocab_size is not None and max(options.suppress_tokens) >= vocab_size:
            raise InputError(f"suppress_tokens holds token id {max(options.suppress_tokens)}, but the model's "
                             f"vocabulary has {vocab_size} tokens (allowed ids: 0..{vocab_size - 1})")
        processors.append(SuppressTokens(options.suppress_tokens))
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
    """Greedy (temperature 0: argmax) or sampling from softmax(logits) with a private generator, so a seed
    reproduces a sample without touching the global RNG.

    race: sample by the exponential race (choose_tokens with `noise`) rather than torch.multinomial. Both draw
    from softmax(logits), but from different random numbers, so a seed gives other tokens with race than
    without; the race's argmax can run inside a compiled graph (sample(compile=True) uses it), multinomial
    cannot.
    """

    def __init__(self, temperature: float, seed: int | None, device, race: bool = False):
        self.greedy = temperature == 0
        self.race = race
        self.device = device
        self.generator = None
        if not self.greedy:
            self.generator = torch.Generator(device=device)
            if seed is None:
                self.generator.seed()
            else:
                self.generator.manual_seed(seed)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, V) processed logits -> (B,) token ids."""
        if self.greedy or self.race:
            return choose_tokens(logits, self.noise(*logits.shape))
        return torch.multinomial(logits.softmax(dim=-1), 1, generator=self.generator).squeeze(-1)

    def noise(self, batch: int, vocab_size: int) -> torch.Tensor | None:
        """The exponential race's (batch, vocab_size) uniform draws in [0, 1), from the private generator (None:
        greedy); choose_tokens turns them into exponential ones, where a compiled step fuses the logarithm."""
        if self.greedy:
            return None
        return torch.rand(batch, vocab_size, device=self.device, generator=self.generator)


def choose_tokens(logits: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    """(B, V) processed logits -> (B,) token ids: the argmax, or with noise U (iid uniform in [0, 1),
    Sampler.noise) a sample from p = softmax(logits) by the exponential race, argmax(p / E) with E = -log(U)
    ~ Exp(1) (as pytorch-labs/gpt-fast): E_i / p_i is exponential with rate p_i, and the first of independent
    exponential clocks to ring is clock i with probability p_i / sum(p). It is the Gumbel-max trick (Gumbel,
    1954; Maddison et al., 2014, "A* Sampling") with Gumbel noise -log(E), without the last logarithm."""
    if noise is None:
        return logits.argmax(dim=-1)
    probs = logits.float().softmax(dim=-1)
    # U = 0 (a 2^-24 chance in float32) gives E = inf: that token loses this one race (p / inf = 0). E is never
    # 0, so a masked token (p = 0) always scores 0, never 0 / 0 = NaN, which argmax would rank first.
    return (probs / -noise.log()).argmax(dim=-1)


# ----------------------------------------------------------------------------------------------------------
# per-row state: token ids (TokenState), plus text, stop strings and streaming (TextState)


class TokenState:
    """One row's (or one beam hypothesis's) output: its new token ids and why it finished. It finishes at the
    end-of-text id, if the model has one. Beam search sets sum_logprob (of the new tokens) and score;
    sample(logprobs=True) sets sum_logprob."""

    def __init__(self, eot_id: int | None = None):
        self.eot_id = eot_id
        self.tokens: list[int] = []
        self.finish_reason: str | None = None
        self.sum_logprob: float | None = None
        self.score: float | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def n_scored(self) -> int:
        """The length a beam candidate is ranked by: its tokens without a final end-of-text (as whisper)."""
        return len(self.tokens) - (self.finish_reason == "eot")

    def append(self, token: int):
        self.tokens.append(token)
        if token == self.eot_id:
            self.finish_reason = "eot"

    def finish(self, reason: str):
        if self.finish_reason is None:
            self.finish_reason = reason

    def fork(self) -> "TokenState":
        """An independent copy (beam search extends one hypothesis in several ways)."""
        twin = copy.copy(self)
        twin.tokens = list(self.tokens)
        return twin


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


class TextState(TokenState):
    """A row with text: its new tokens, their text (cut at a stop string), why it finished, and how much of
    the text has been streamed. `tokenizer` is anything with decode(ids) -> str and eot_id (None: none).

    Text is re-decoded from all new tokens at each step rather than pieced together from per-token strings: a
    byte-level BPE token may end inside a multi-byte character, which decodes as U+FFFD until the next token
    completes it (so trailing U+FFFD is held back too)."""

    def __init__(self, tokenizer, stop: StopStrings, track_text: bool):
        super().__init__(getattr(tokenizer, "eot_id", None))
        self.tokenizer = tokenizer
        self.stop = stop
        self.track_text = track_text  # decode every step (stop strings, streaming) or only at the end
        self.text = ""
        self.emitted = 0  # characters of self.text already streamed

    def append(self, token: int):
        super().append(token)
        if self.finished or not self.track_text:
            return
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
        super().finish(reason)

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
# helpers


def check_prompts(prompts: Sequence[Sequence[int]], max_new_tokens: int, max_seq_len: int):
    """Every prompt must be non-empty and fit the context with room for max_new_tokens: no silent truncation
    and no silent capping of the output length."""
    if not prompts:
        raise InputError("no prompts to decode: give at least one list of token ids")
    for i, row in enumerate(prompts):
        if len(row) == 0:
            raise InputError(f"prompt {i} is empty: decoding continues a prompt; give at least one token")
        if len(row) > max_seq_len:
            raise InputError(f"prompt {i} is {len(row)} tokens long, more than the model's context of "
                             f"max_seq_len={max_seq_len} tokens; shorten it (prompts are never truncated silently)")
    T = max(len(row) for row in prompts)  # batched prompts are padded to the longest
    if T + max_new_tokens > max_seq_len:
        raise InputError(f"the longest prompt ({T} token{'s' * (T != 1)}) + max_new_tokens ({max_new_tokens}) = "
                         f"{T + max_new_tokens} exceeds the model's context of max_seq_len={max_seq_len}; "
                         f"lower max_new_tokens to at most {max_seq_len - T} or shorten the prompt")


def left_pad(ids: Sequence[Sequence[int]], device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token lists -> (B, T) ids, LEFT-padded, and a (B, T) mask (True = real token; None if no padding)."""
    T = max(len(row) for row in ids)
    idx = torch.full((len(ids), T), PAD_ID, dtype=torch.long)
    mask = torch.zeros(len(ids), T, dtype=torch.bool)
    for i, row in enumerate(ids):
        idx[i, T - len(row):] = torch.tensor(list(row), dtype=torch.long)
        mask[i, T - len(row):] = True
    return idx.to(device), (mask.to(device) if not mask.all() else None)


def seen_tokens(idx: torch.Tensor, mask: torch.Tensor | None, vocab_size: int) -> torch.Tensor:
    """(B, V) bool: which tokens each prompt holds (for the repetition penalty); only real tokens, so left
    padding does not mark PAD_ID as seen."""
    B, T = idx.shape
    seen = torch.zeros(B, vocab_size, dtype=torch.bool, device=idx.device)
    real = mask if mask is not None else torch.ones_like(idx, dtype=torch.bool)
    rows_of = torch.arange(B, device=idx.device)[:, None].expand(B, T)
    seen[rows_of[real], idx[real]] = True
    return seen


def device_of(model) -> torch.device:
    tensor = next(model.parameters(), None) if isinstance(model, nn.Module) else None
    if tensor is None and isinstance(model, nn.Module):
        tensor = next(model.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def packed_weights(model, options: DecodingOptions, rows: int):
    """The block in which decoding runs: with options.prepack, on the model's oneDNN-packed weights
    (zoo.nn.packed; rows: the batch size)."""
    if options.prepack and isinstance(model, nn.Module):
        return prepacked_linears(model, rows=rows)
    return contextlib.nullcontext()


def _step(model, tokens: torch.Tensor, cache, processors: "Sequence[LogitProcessor]" = (),
          seen: torch.Tensor | None = None, choose: bool = False, noise: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 1) new tokens -> (B, V) next-token logits, appending their keys/values to the cache; then the given
    processors (history-free ones) on the logits. choose: return the (B,) next token ids instead, chosen by
    choose_tokens (greedy, or sampled with the given noise)."""
    logits = model.step(tokens, cache)
    if processors:
        logits = apply_processors(processors, logits.float(), seen)
    return choose_tokens(logits, noise) if choose else logits


_compiled_decode_step = None
# Graphs the one compiled step may hold. Every model, batch size (1 apart from the others) and set of processors
# adds one, so dynamo's default limit (8) is soon reached, and past it the step runs eagerly (one logged warning).
COMPILED_STEP_GRAPHS = 64


def _compiled_step():
    # One compiled function for the process: dynamo caches its graphs on the code object; dynamic=True because
    # the attended length grows by one every step (no recompilation per length). With prepack, the packed
    # weights go into the graph through an opaque operator (zoo.nn.packed): inductor packs weights itself only
    # when it freezes them as constants, which would go stale for a model that keeps training.
    global _compiled_decode_step
    if _compiled_decode_step is None:
        limit = torch._dynamo.config.recompile_limit
        torch._dynamo.config.recompile_limit = max(limit, COMPILED_STEP_GRAPHS)
        _compiled_decode_step = torch.compile(_step, dynamic=True)
    return _compiled_decode_step
