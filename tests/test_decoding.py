"""zoo.decoding: beam search (against greedy, brute force and full forward passes), length penalty, patience,
Cache.reorder, options validation, and an encoder-decoder model with cross-attention on the same loop.

Three models: a hand-built toy whose next-token probabilities are a fixed table keyed by the whole prefix (so
the best sequence is known by enumeration and a wrongly reordered cache gives wrong distributions); a tiny
GPT trained for a few dozen steps; and a tiny decoder with cross-attention to a random "audio" context.
"""

import math

import pytest
import torch
from torch import nn

from tests.gpt_helpers import half_trained_gpt
from zoo.decoding import DecodingOptions, TokenState, beam_search, decode, length_normalized
from zoo.errors import InputError
from zoo.nn import Transformer, TransformerConfig
from zoo.text.generate import GenerationOptions, generate, stream
from zoo.text.tokenizer import CharTokenizer


@pytest.fixture(scope="module")
def gpt():
    return half_trained_gpt()


def full_forward_logprob(model, prompt_ids: list[int], new_ids: list[int]) -> float:
    """Summed log-prob of new_ids after the prompt, from one forward pass without a cache."""
    with torch.no_grad():
        logprobs = model(torch.tensor([prompt_ids + new_ids]))[0].float().log_softmax(-1)
    positions = range(len(prompt_ids) - 1, len(prompt_ids) + len(new_ids) - 1)
    return sum(logprobs[p, t].item() for p, t in zip(positions, new_ids))


BEAM = dict(temperature=0.0, beam_size=4)


# ----------------------------------------------------------------------------------------------------------
# a toy model with a known best sequence


EOT, A, B, C, D, START = range(6)
# P(next | prefix). Greedy follows A (0.6) -> C (0.6) -> end (0.8): 0.288. The best sequence is B -> end:
# 0.4 * 0.85 = 0.34, whose first token greedy rejects. Unlisted prefixes end the text.
TABLE = {
    (START,): {A: 0.6, B: 0.4},
    (START, A): {C: 0.6, D: 0.4},
    (START, B): {EOT: 0.85, D: 0.15},
    (START, A, C): {EOT: 0.8, D: 0.2},
    (START, A, D): {EOT: 1.0},
    (START, B, D): {EOT: 1.0},
    (START, A, C, D): {EOT: 1.0},
}


class PrefixCache:
    """The toy's "KV cache": each row's tokens so far."""

    def __init__(self, batch: int):
        self.rows = [[] for _ in range(batch)]

    def reorder(self, indices: torch.Tensor, same_context: bool = False):  # the toy has no context
        self.rows = [list(self.rows[i]) for i in indices.tolist()]


class TableModel(nn.Module):
    """Implements zoo.decoding.AutoregressiveModel from TABLE: log-probs of the next token given the prefix."""

    max_seq_len = 16
    vocab_size = 6

    def __init__(self):
        super().__init__()
        self.steps = 0

    def make_cache(self, batch, max_len):
        return PrefixCache(batch)

    def _logits(self, cache):
        probs = torch.zeros(len(cache.rows), self.vocab_size)
        for i, row in enumerate(cache.rows):
            for token, p in TABLE.get(tuple(row), {EOT: 1.0}).items():
                probs[i, token] = p
        return probs.log()  # log 0 = -inf: impossible continuations

    def prefill(self, tokens, mask, cache):
        real = mask if mask is not None else torch.ones_like(tokens, dtype=torch.bool)
        cache.rows = [row[keep].tolist() for row, keep in zip(tokens, real)]
        return self._logits(cache)

    def step(self, tokens, cache):
        self.steps += 1
        for row, token in zip(cache.rows, tokens[:, 0].tolist()):
            row.append(token)
        return self._logits(cache)


def every_sequence(prefix=(START,), prob=1.0):
    """(new tokens, probability) of every way the toy can finish, by enumeration."""
    for token, p in TABLE.get(prefix, {EOT: 1.0}).items():
        if token == EOT:
            yield list(prefix[1:]) + [EOT], prob * p
        else:
            yield from every_sequence(prefix + (token,), prob * p)


def toy_decode(options, **kwargs):
    model = TableModel()
    return decode(model, [[START]], DecodingOptions(max_new_tokens=8, **options, **kwargs), [TokenState(EOT)])[0]


def test_toy_greedy_picks_a_worse_sequence_and_beam_search_finds_the_best():
    best_tokens, best_prob = max(every_sequence(), key=lambda s: s[1])
    assert (best_tokens, best_prob) == ([B, EOT], pytest.approx(0.34))  # the most likely of all 5 sequences
    greedy = toy_decode(dict(temperature=0.0))
    assert greedy.tokens == [A, C, EOT] and greedy.finish_reason == "eot"  # probability 0.288 < 0.34
    beam = toy_decode(dict(temperature=0.0, beam_size=2, length_penalty=0.0))  # alpha 0: the raw log-prob
    assert beam.tokens == best_tokens and beam.finish_reason == "eot"
    assert beam.sum_logprob == pytest.approx(math.log(best_prob)) and beam.score == pytest.approx(math.log(0.34))


@pytest.mark.parametrize("length_penalty, winner", [(0.0, [B, EOT]), (1.0, [A, C, EOT]), (None, [A, C, EOT])])
def test_toy_length_penalty_decides_between_a_short_and_a_long_candidate(length_penalty, winner):
    # The two candidates beam_size=2 collects: B (0.34, length 1) and A C (0.288, length 2); the end-of-text
    # token counts in the log-prob, not in the length (as whisper). Expected scores, by the formulas:
    def score(logp, length):
        return logp / length if length_penalty is None else logp / ((5 + length) / 6) ** length_penalty

    short, long = score(math.log(0.34), 1), score(math.log(0.288), 2)
    assert (short > long) == (winner == [B, EOT])  # the parametrised winner is what the formula says
    result = toy_decode(dict(temperature=0.0, beam_size=2, length_penalty=length_penalty))
    assert result.tokens == winner
    assert result.score == pytest.approx(max(short, long))
    assert result.score == pytest.approx(length_normalized(result.sum_logprob, len(winner) - 1, length_penalty))


def test_patience_collects_more_finished_candidates_before_stopping():
    def run(patience):
        model = TableModel()
        options = DecodingOptions(max_new_tokens=8, temperature=0.0, beam_size=2, patience=patience,
                                  length_penalty=0.0)
        [candidates] = beam_search(model, [[START]], options, [TokenState(EOT)])
        return [(c.tokens, round(math.exp(c.sum_logprob), 6)) for c in candidates], model.steps

    # beam_size 2: stop at 2 finished candidates, B (step 2) and A C (step 3; A D is ranked below it)
    assert run(None) == ([([B, EOT], 0.34), ([A, C, EOT], 0.288)], 2)
    # patience 2 (Kasai et al., 2022): wait for 4, which takes one more step and finds every sequence
    candidates, steps = run(2.0)
    assert candidates == [([B, EOT], 0.34), ([A, C, EOT], 0.288), ([A, D, EOT], 0.24), ([A, C, D, EOT], 0.072)]
    assert steps == 3
    most_likely = sorted(((t, round(p, 6)) for t, p in every_sequence()), key=lambda s: -s[1])
    assert candidates == most_likely[:4] and len(most_likely) == 5  # the 4 best of the toy's 5 sequences


def test_suppress_tokens_never_generates_them():
    assert toy_decode(dict(temperature=0.0, suppress_tokens=(A,))).tokens == [B, EOT]
    assert toy_decode(dict(temperature=0.0, beam_size=2, suppress_tokens=[B])).tokens == [A, C, EOT]
    with pytest.raises(ValueError, match=r"suppress_tokens holds token id 6.*6 tokens \(allowed ids: 0..5\)"):
        toy_decode(dict(temperature=0.0, suppress_tokens=(6,)))


# ----------------------------------------------------------------------------------------------------------
# beam search on a trained GPT


PROMPTS = ["the qu", "a stitch in time", "o", "hello there, gen"]


def test_beam_size_1_is_greedy(gpt):
    greedy = generate(gpt, PROMPTS, GenerationOptions(max_new_tokens=30, temperature=0.0))
    beam = generate(gpt, PROMPTS, GenerationOptions(max_new_tokens=30, temperature=0.0, beam_size=1))
    assert [r.tokens for r in beam] == [r.tokens for r in greedy]
    assert [r.text for r in beam] == [r.text for r in greedy]

    tokenizer = gpt.tokenizer

    class WithEot(CharTokenizer):
        eot_id = tokenizer.encode(" ")[0]  # pretend the space ends the text: rows finish at different steps

    gpt.tokenizer = WithEot(tokenizer.chars)
    try:
        greedy = generate(gpt, PROMPTS, GenerationOptions(max_new_tokens=30, temperature=0.0))
        beam = generate(gpt, PROMPTS, GenerationOptions(max_new_tokens=30, temperature=0.0, beam_size=1))
    finally:
        gpt.tokenizer = tokenizer
    assert [(r.tokens, r.finish_reason) for r in beam] == [(r.tokens, r.finish_reason) for r in greedy]
    assert "eot" in {r.finish_reason for r in beam}


def test_beam_search_finds_at_least_greedys_log_prob(gpt):
    # Beam search does not promise this: greedy's prefix can fall out of the beam and the beams then end
    # worse (here "the qu" with beam_size 2 to 4 ends 0.4 nats below greedy). With 8 beams it holds here.
    options = GenerationOptions(max_new_tokens=20, temperature=0.0, beam_size=8)
    greedy = generate(gpt, PROMPTS, GenerationOptions(max_new_tokens=20, temperature=0.0))
    beam = generate(gpt, PROMPTS, options)
    gains = []
    for prompt, g, b in zip(PROMPTS, greedy, beam):
        ids = gpt.tokenizer.encode(prompt)
        beam_logprob = full_forward_logprob(gpt, ids, b.tokens)
        assert b.sum_logprob == pytest.approx(beam_logprob, abs=1e-3)  # the cached search scores correctly
        assert b.n_new_tokens == 20 and b.finish_reason == "length"  # no end-of-text: all run to the limit
        gains.append(beam_logprob - full_forward_logprob(gpt, ids, g.tokens))
    assert min(gains) >= -1e-4
    assert max(gains) > 0.01  # and it does find better sequences than greedy here


def test_beam_search_batch_equals_each_prompt_alone(gpt):
    options = GenerationOptions(max_new_tokens=15, repetition_penalty=1.3, **BEAM)
    batch = generate(gpt, PROMPTS, options)  # ragged: left padding, cache reordered across 4 x 4 rows
    for prompt, result in zip(PROMPTS, batch):
        alone = generate(gpt, prompt, options)
        assert result.tokens == alone.tokens
        assert result.sum_logprob == pytest.approx(alone.sum_logprob, abs=1e-4)


def test_beam_search_stops_at_a_stop_string(gpt):
    free = generate(gpt, "hello", GenerationOptions(max_new_tokens=20, **BEAM))
    stop = free.text[5:7]
    result = generate(gpt, "hello", GenerationOptions(max_new_tokens=20, stop=(stop,), **BEAM))
    assert result.finish_reason == "stop" and stop not in result.text
    assert gpt.tokenizer.decode(result.tokens).startswith(result.text + stop)


def test_stream_refuses_beam_search(gpt):
    with pytest.raises(ValueError, match="cannot stream beam search.*use generate"):
        stream(gpt, "hello", GenerationOptions(max_new_tokens=5, **BEAM))


# ----------------------------------------------------------------------------------------------------------
# Cache.reorder and an encoder-decoder on the same loop


def cross_attention_backbone():
    torch.manual_seed(0)
    config = TransformerConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, cross_attention=True, max_seq_len=32)
    return Transformer(config).eval()


@torch.no_grad()
def test_cache_reorder_equals_decoding_the_selected_rows_alone():
    net = cross_attention_backbone()
    lengths = [5, 3, 4]  # ragged prompts, left-padded: valid and next_position differ per row
    x = torch.randn(3, 5, 32)
    mask = torch.arange(5)[None, :] >= 5 - torch.tensor(lengths)[:, None]
    context = torch.randn(3, 7, 32)
    before = torch.randn(3, 2, 1, 32)  # two decode steps before the reorder, three after
    after = torch.randn(3, 3, 1, 32)

    for indices in ([2, 0, 2], [1, 1, 0, 2, 1]):  # the same batch size (in place), and a larger one
        cache = net.make_cache(3, 10)
        net(x, mask=mask, cache=cache, context=context)
        for s in range(2):
            net(before[:, s], cache=cache)
        cache.reorder(torch.tensor(indices))
        outputs = torch.cat([net(after[[i % 3 for i in range(len(indices))], s], cache=cache) for s in range(3)], 1)
        for r, j in enumerate(indices):  # row r now continues row j's history with row (r % 3)'s new inputs
            alone = net.make_cache(1, 10)
            net(x[j:j + 1, 5 - lengths[j]:], cache=alone, context=context[j:j + 1])
            for s in range(2):
                net(before[j:j + 1, s], cache=alone)
            expected = torch.cat([net(after[r % 3:r % 3 + 1, s], cache=alone) for s in range(3)], 1)
            torch.testing.assert_close(outputs[r:r + 1], expected, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_cache_reorder_within_same_context_rows_keeps_the_context_keys_values_in_place():
    """Beam search's per-step reorder (same_context=True: each row's source shares its context) leaves the
    cross-attention keys/values and context mask untouched (no copy) and decodes as the full reorder does."""
    net = cross_attention_backbone()
    context = torch.randn(2, 7, 32).repeat_interleave(2, dim=0)  # two prompts, two beams each
    x = torch.randn(4, 3, 32)
    caches = [net.make_cache(4, 8), net.make_cache(4, 8)]
    for cache in caches:
        net(x, cache=cache, context=context, context_mask=torch.ones(4, 7, dtype=torch.bool))
    kept = [t.data_ptr() for layer in caches[0].layers for t in layer.cross_kv]
    indices = torch.tensor([1, 1, 2, 2])  # each beam continues one of its own prompt's beams
    caches[0].reorder(indices, same_context=True)
    caches[1].reorder(indices)
    assert [t.data_ptr() for layer in caches[0].layers for t in layer.cross_kv] == kept
    step = torch.randn(4, 1, 32)
    torch.testing.assert_close(net(step, cache=caches[0]), net(step, cache=caches[1]))
    with pytest.raises(InputError, match="one index per row"):
        caches[0].reorder(torch.tensor([0, 1]), same_context=True)


class TinySpeechDecoder(nn.Module):
    """A decoder with cross-attention to an encoder output, as Whisper's: the interface with context."""

    vocab_size = 11

    def __init__(self):
        super().__init__()
        self.backbone = cross_attention_backbone()
        self.embed = nn.Embedding(self.vocab_size, 32)
        self.head = nn.Linear(32, self.vocab_size, bias=False)
        nn.init.normal_(self.head.weight, std=0.5)  # peaked distributions (zoo's 0.02 init is near uniform)
        self.max_seq_len = self.backbone.config.max_seq_len

    def make_cache(self, batch, max_len):
        return self.backbone.make_cache(batch, max_len)

    def prefill(self, tokens, mask, cache, audio):
        return self.head(self.backbone(self.embed(tokens), mask=mask, cache=cache, context=audio))[:, -1]

    def step(self, tokens, cache):
        return self.head(self.backbone(self.embed(tokens), cache=cache))[:, -1]

    def logprob(self, prompt, new, audio) -> float:
        """Summed log-prob of `new` after `prompt` for one clip, without a cache."""
        with torch.no_grad():
            out = self.head(self.backbone(self.embed(torch.tensor([prompt + new])), context=audio[None]))
        logprobs = out[0].log_softmax(-1)
        return sum(logprobs[len(prompt) - 1 + i, t].item() for i, t in enumerate(new))


def test_encoder_decoder_beam_search_with_cached_cross_attention():
    model = TinySpeechDecoder()
    audio = torch.randn(3, 9, 32)  # three clips' encoder outputs
    prompts = [[1, 2], [3], [4, 5, 6]]
    options = DecodingOptions(max_new_tokens=8, temperature=0.0, beam_size=3)
    states = [TokenState(eot_id=0) for _ in prompts]
    batch = decode(model, prompts, options, states, audio=audio)
    greedy = decode(model, prompts, DecodingOptions(max_new_tokens=8, temperature=0.0), audio=audio)
    for i, (prompt, best) in enumerate(zip(prompts, batch)):
        alone = decode(model, [prompt], options, [TokenState(eot_id=0)], audio=audio[i:i + 1])[0]
        assert best.tokens == alone.tokens
        assert best.sum_logprob == pytest.approx(model.logprob(prompt, best.tokens, audio[i]), abs=1e-4)
        assert best.sum_logprob >= model.logprob(prompt, greedy[i].tokens, audio[i]) - 1e-4
    one = DecodingOptions(max_new_tokens=8, temperature=0.0, beam_size=1)
    assert [s.tokens for s in decode(model, prompts, one, audio=audio)] == [s.tokens for s in greedy]


# ----------------------------------------------------------------------------------------------------------
# options


@pytest.mark.parametrize("fields, message", [
    (dict(beam_size=0, temperature=0), r"beam_size must be None \(no beam search\) or an integer >= 1, got 0"),
    (dict(beam_size=2.0, temperature=0), "beam_size must be None"),
    (dict(beam_size=4), r"beam_size=4 needs temperature=0.*got temperature=1.0"),
    (dict(beam_size=4, temperature=0.7), "beam_size=4 needs temperature=0"),
    (dict(patience=2.0), r"patience=2.0 needs beam_size"),
    (dict(length_penalty=0.5), r"length_penalty=0.5 needs beam_size"),
    (dict(beam_size=2, temperature=0, patience=0.0), r"patience must be None \(= 1.0\) or a finite number > 0"),
    (dict(beam_size=2, temperature=0, patience=0.2),
     r"patience=0.2 with beam_size=2 waits for round\(beam_size \* patience\) = 0.*above 0.25"),
    (dict(beam_size=2, temperature=0, length_penalty=1.5), r"length_penalty must be None.*\[0, 1\].*got 1.5"),
    (dict(beam_size=2, temperature=0, length_penalty=math.nan), "length_penalty must be None"),
    (dict(suppress_tokens=5), r"suppress_tokens must be a tuple of token ids \(integers >= 0\), got 5"),
    (dict(suppress_tokens=(1, -2)), "suppress_tokens must be a tuple of token ids"),
])
def test_options_are_validated(fields, message):
    with pytest.raises(ValueError, match=f"DecodingOptions.{message}"):
        DecodingOptions(**fields)
    with pytest.raises(ValueError, match="GenerationOptions"):  # the text layer's name in its errors
        GenerationOptions(**fields)


def test_valid_beam_options():
    options = GenerationOptions(temperature=0, beam_size=3, patience=1.5, length_penalty=0.6, suppress_tokens=[3])
    assert options.suppress_tokens == (3,) and isinstance(options, DecodingOptions)
    with pytest.raises(AttributeError):
        options.beam_size = 2


def test_cache_keeps_the_context_mask_for_later_steps_and_reorders_it():
    """Cross-attention over a padded context: steps that pass neither context nor mask (the cache holds both)
    equal steps that pass the mask every time; a reorder moves the mask with its rows."""
    from zoo.nn import Transformer, TransformerConfig

    torch.manual_seed(0)
    decoder = Transformer(TransformerConfig(dim=32, n_layers=2, n_heads=4, cross_attention=True,
                                            max_seq_len=8)).eval()
    context = torch.randn(2, 5, 32)
    context_mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    x0, x1 = torch.randn(2, 1, 32), torch.randn(2, 1, 32)
    with torch.no_grad():
        kept, explicit = decoder.make_cache(2, 8), decoder.make_cache(2, 8)
        decoder(x0, cache=kept, context=context, context_mask=context_mask)
        decoder(x0, cache=explicit, context=context, context_mask=context_mask)
        torch.testing.assert_close(decoder(x1, cache=kept), decoder(x1, cache=explicit, context_mask=context_mask))
        kept.reorder(torch.tensor([1, 1]))
        assert kept.context_mask.tolist() == [context_mask[1].tolist()] * 2
        alone = decoder.make_cache(1, 8)
        decoder(x0[1:], cache=alone, context=context[1:], context_mask=context_mask[1:])
        decoder(x1[1:], cache=alone)
        x2 = torch.randn(1, 1, 32)
        torch.testing.assert_close(decoder(x2.expand(2, 1, 32), cache=kept)[0], decoder(x2, cache=alone)[0])
