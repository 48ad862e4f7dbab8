"""Speculative decoding: a small draft model proposes tokens, the model checks them all in one forward pass.

    from zoo.text.generate import GenerationOptions, generate
    result = generate(model, "def ", GenerationOptions(max_new_tokens=100, temperature=0), draft=small_model)

Leviathan et al. (2023), "Fast Inference from Transformers via Speculative Decoding", and Chen et al. (2023),
"Accelerating Large Language Model Decoding with Speculative Sampling"; the loop follows gpt-fast's
speculative_decode. Each round the draft proposes k = `lookahead` tokens, one cheap step each; the model then
reads the last accepted token and the k proposals in one forward pass, k + 1 rows through every weight matrix,
which costs about one step when decoding is bound by reading the weights (batch 1 on a CPU). Proposals are
accepted from the first one on while the model agrees, and the model's own next token at the first
disagreement (or after the last proposal) comes with them: 1 to k + 1 tokens per round.

  greedy: a proposal is accepted when it is the model's argmax, so the output is exactly the model's own
          greedy output, whatever the draft proposes (only the speed depends on the draft);
  sampling: a proposal x drawn from the draft's distribution q is accepted with probability
          min(1, p(x) / q(x)), and at the first rejection a token is drawn from norm(max(0, p - q))
          (Leviathan et al., Algorithm 1; Chen et al., Algorithm 2), so every token is distributed as the
          model's own p. p and q are both taken after the options' temperature, top-k, top-p and min-p.

One prompt at a time (a list is decoded prompt by prompt), with the model's and the draft's KV caches rewound
past rejected proposals. The draft must share the model's tokenizer (the same vocabulary). Not with beam
search, a repetition penalty (its seen-token set would differ at every proposed position) or compile.
"""

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from zoo.decoding import (
    DecodingOptions,
    Sampler,
    TokenState,
    apply_processors,
    check_prompts,
    device_of,
    make_processors,
    packed_weights,
)
from zoo.errors import InputError
from zoo.utils import eval_mode


@dataclass
class Speculation:
    """How one speculative decode went: draft tokens proposed and accepted, and rounds (the model's forward
    passes after the prompt's)."""

    proposed: int = 0
    accepted: int = 0
    rounds: int = 0

    @property
    def acceptance(self) -> float:
        return self.accepted / max(self.proposed, 1)


def check_draft(model: nn.Module, draft: nn.Module, options: DecodingOptions, lookahead: int):
    if not isinstance(draft, nn.Module) or not hasattr(draft, "vocab_size"):
        raise InputError(f"draft must be a GPT (a smaller model with the same tokenizer), got {type(draft).__name__}")
    if draft.vocab_size != model.vocab_size:
        raise InputError(f"the draft's vocabulary ({draft.vocab_size} tokens) differs from the model's "
                         f"({model.vocab_size}); a draft must use the model's tokenizer")
    if not isinstance(lookahead, int) or isinstance(lookahead, bool) or lookahead < 1:
        raise InputError(f"lookahead must be an integer >= 1 (draft tokens per round), got {lookahead!r}")
    if options.beam_size is not None:
        raise InputError(f"speculative decoding (draft=...) does not combine with beam_size={options.beam_size}; "
                         f"allowed: greedy (temperature=0) or sampling")
    if options.compile:
        raise InputError("speculative decoding (draft=...) runs eager, its steps change shape every round; "
                         "allowed: compile=False")
    if options.repetition_penalty != 1.0:
        raise InputError(f"speculative decoding (draft=...) does not combine with repetition_penalty="
                         f"{options.repetition_penalty}; allowed: 1.0 (off)")


def early_exit_draft(model: nn.Module, n_layers: int) -> nn.Module:
    """A draft for a model that has none: the model's own first n_layers blocks, then its final norm and head,
    all shared with the model (no copy). Self-speculative decoding (Zhang et al., 2023, "Draft & Verify";
    Elhoushi et al., 2024, "LayerSkip"): it proposes well only where the model's early layers already point
    to its final answer, which a model not trained for early exit does not promise."""
    layers = model.backbone.config.n_layers
    if not isinstance(n_layers, int) or not 1 <= n_layers < layers:
        raise InputError(f"n_layers must be an integer in [1, {layers - 1}] (fewer than the model's {layers}), "
                         f"got {n_layers!r}")
    config = replace(model.config, backbone=replace(model.backbone.config, n_layers=n_layers))
    with torch.device("meta"):  # no weights of its own: every module is the model's
        draft = type(model)(config)  # the model's own class (a GPT)
    draft.embed, draft.pos_embed, draft.head = model.embed, model.pos_embed, model.head
    draft.backbone.blocks = nn.ModuleList(model.backbone.blocks[:n_layers])
    draft.backbone.norm, draft.backbone.rope = model.backbone.norm, model.backbone.rope
    draft.tokenizer = model.tokenizer
    return draft.train(model.training)


@torch.inference_mode()
def speculative_decode(model: nn.Module, draft: nn.Module, prompt: Sequence[int], options: DecodingOptions,
                       state: TokenState, lookahead: int = 4) -> Speculation:
    """Continue one prompt (token ids) into `state`, the draft proposing `lookahead` tokens per round."""
    check_draft(model, draft, options, lookahead)
    check_prompts([prompt], options.max_new_tokens, min(model.max_seq_len, draft.max_seq_len))
    device = device_of(model)
    processors = make_processors(options, model.vocab_size)
    sampler = Sampler(options.temperature, options.seed, device)
    caches = model.make_cache(1, len(prompt) + options.max_new_tokens), \
        draft.make_cache(1, len(prompt) + options.max_new_tokens)
    stats = Speculation()
    with eval_mode(model), eval_mode(draft), packed_weights(model, options, 1), \
            packed_weights(draft, options, 1):
        ids = torch.tensor([list(prompt)], device=device)
        draft.prefill(ids, None, caches[1])  # its guess for the first token is not needed: the model gives it
        token = _choose(sampler, apply_processors(processors, model.prefill(ids, None, caches[0]).float(), None))
        done = _emit(state, [token], options.max_new_tokens)
        while not done:
            k = min(lookahead, options.max_new_tokens - len(state.tokens) - 1)  # the round's tokens must fit
            proposals, q = _propose(draft, caches[1], [*prompt, *state.tokens], k, processors, sampler)
            start = caches[0].length
            logits = model(torch.tensor([[token, *proposals]], device=device), cache=caches[0])[0]  # (k + 1, V)
            p = apply_processors(processors, logits.float(), None)
            n, token = _verify(sampler, proposals, p, q)
            for cache in caches:  # forget what was read after the last accepted proposal
                _rewind(cache, min(cache.length, start + n + 1))
            stats.proposed, stats.accepted, stats.rounds = stats.proposed + k, stats.accepted + n, stats.rounds + 1
            done = _emit(state, [*proposals[:n], token], options.max_new_tokens)
    state.finish("length")
    return stats


def _propose(draft: nn.Module, cache, sequence: list[int], k: int, processors, sampler: Sampler):
    """k draft tokens after `sequence` and the draft's processed logits for each ((k, V); greedy: argmax).
    The draft first reads what it has not seen yet: the last token, or two when it missed the previous
    round's bonus token."""
    device = cache.valid.device
    feed, proposals, q = sequence[cache.length:], [], []
    for _ in range(k):
        logits = apply_processors(processors, draft(torch.tensor([feed], device=device), cache=cache)[0, -1:].float(),
                                  None)
        q.append(logits[0])
        feed = [_choose(sampler, logits)]
        proposals.append(feed[0])
    return proposals, (torch.stack(q) if q else None)


def _verify(sampler: Sampler, proposals: list[int], p: torch.Tensor, q: torch.Tensor | None) -> tuple[int, int]:
    """How many proposals the model accepts, and the token that follows them. p: the model's processed logits
    after the last accepted token and after each proposal ((k + 1, V)); q: the draft's for each proposal."""
    if sampler.greedy:
        choices = p.argmax(dim=-1).tolist()
        n = 0
        while n < len(proposals) and proposals[n] == choices[n]:
            n += 1
        return n, choices[n]
    p = p.softmax(dim=-1)
    for i, proposal in enumerate(proposals):
        q_i = q[i].softmax(dim=-1)
        # accept with probability min(1, p(x) / q(x)); q(x) > 0 as the draft drew x from q
        if torch.rand((), generator=sampler.generator, device=p.device) * q_i[proposal] <= p[i, proposal]:
            continue
        residual = (p[i] - q_i).clamp(min=0)  # rejected: draw from what p has beyond q
        weights = residual if residual.sum() > 0 else p[i]
        return i, int(torch.multinomial(weights, 1, generator=sampler.generator))
    return len(proposals), int(torch.multinomial(p[-1], 1, generator=sampler.generator))


def _choose(sampler: Sampler, logits: torch.Tensor) -> int:
    return int(sampler(logits.reshape(1, -1))[0])


def _emit(state: TokenState, tokens: list[int], max_new_tokens: int) -> bool:
    """Append the round's tokens until the row finishes (end of text, a stop string) or is full; True then."""
    for token in tokens:
        state.append(token)
        if state.finished or len(state.tokens) >= max_new_tokens:
            return True
    return False


def _rewind(cache, length: int):
    """Cut a one-row cache back to `length` positions: later keys/values are overwritten by the next writes
    (an eager step attends only to the filled prefix), and the RoPE position steps back with it."""
    cache.next_position -= cache.length - length
    cache.length = length
