"""The text-decoding speed levers (README "Benchmarks"), each against plain decoding: the compiled step on
prepacked weights and speculative decoding give the plain greedy tokens exactly; compiled sampling and
speculative sampling draw from the model's own (processed) distribution; int8 weights cost less than 1% of
validation loss.

The model is tests/gpt_helpers' tiny half-trained GPT (2 layers, width 64, char tokenizer), whose continuations
are varied text, so a wrong cache position, mask or acceptance rule changes the tokens.
"""

import copy
import dataclasses

import pytest
import torch

import zoo.decoding as zoo_decoding
from tests.gpt_helpers import half_trained_gpt, tiny_gpt
from zoo.decoding import Sampler, Temperature, TokenState, TopK
from zoo.errors import InputError
from zoo.nn.packed import int8_dynamic
from zoo.text.generate import GenerationOptions, generate
from zoo.text.speculative import _verify, early_exit_draft, speculative_decode

GREEDY = dict(temperature=0.0)
PROMPTS = ["the qu", "a stitch in time", "o"]


@pytest.fixture(scope="module")
def model():
    return half_trained_gpt()


def tokens_of(results) -> list[list[int]]:
    return [r.tokens for r in results]


# ----------------------------------------------------------------------------------------------------------
# the compiled step on prepacked weights


def test_compiled_step_on_packed_weights_matches_eager_and_compiles_once(model, monkeypatch):
    """GenerationOptions(compile=True), whose graph multiplies by the prepacked weights (zoo.nn.packed's opaque
    operator), applies the sampling processors and chooses the tokens: the same seeded sampling tokens on a
    ragged batch as the same step run eagerly (compile=True samples by the exponential race, not multinomial:
    its own stream of tokens for a seed), and a next call with other settings, for which the weights are packed
    again, reuses the compiled graph (greedy compiled against plain eager: tests/test_generate.py). Compiles
    once (~10 s)."""
    from torch._dynamo.utils import counters

    model = copy.deepcopy(model)  # its own dynamo guards, whatever ran before in this process
    first = GenerationOptions(max_new_tokens=20, temperature=0.8, top_k=10, top_p=0.95, seed=3, compile=True)
    second = GenerationOptions(max_new_tokens=20, temperature=1.2, top_k=5, top_p=0.9, seed=4, compile=True)
    compiled = {first: tokens_of(generate(model, PROMPTS, first))}
    graphs = counters["stats"]["unique_graphs"]
    with torch.profiler.profile() as profile:
        compiled[second] = tokens_of(generate(model, PROMPTS, second))
    assert counters["stats"]["unique_graphs"] == graphs, "the second compiled call compiled again"
    assert "zoo::packed_linear" in {event.key for event in profile.key_averages()}
    # the one compiled step holds a graph per model, batch size and processors: room for more than dynamo's 8
    assert torch._dynamo.config.recompile_limit >= zoo_decoding.COMPILED_STEP_GRAPHS > 8
    monkeypatch.setattr(zoo_decoding, "_compiled_step", lambda: zoo_decoding._step)  # the same step, eager
    for options, tokens in compiled.items():
        assert tokens_of(generate(model, PROMPTS, options)) == tokens
    assert not model.training


def test_compiled_sampling_is_reproducible_and_follows_the_processed_distribution(model):
    """The compiled path's exponential race (zoo.decoding.choose_tokens) draws from the processed softmax:
    on a 5-token toy, 40000 draws against the softmax of the temperature-scaled, top-k-filtered logits (a
    chi-square test; a masked token is never drawn), and a seed reproduces a compiled generation while another
    seed gives another one."""
    logits = torch.tensor([[2.0, 0.5, -1.0, 1.0, 0.0]]).expand(40000, 5)
    processed = TopK(4)(Temperature(0.7)(logits, None), None)
    sampler = Sampler(0.7, seed=0, device="cpu", race=True)
    counts = torch.bincount(sampler(processed), minlength=5).double()
    expected = processed[0].softmax(-1).double() * len(logits)
    assert counts[2] == 0 and expected[2] == 0  # the token top-k removed
    kept = expected > 0
    chi2 = float(((counts[kept] - expected[kept]) ** 2 / expected[kept]).sum())
    assert chi2 < 16.3, f"chi-square {chi2:.1f} with 3 degrees of freedom (p = 0.001 at 16.3)"
    noise = sampler.noise(*processed.shape)
    compiled = torch.compile(zoo_decoding.choose_tokens, dynamic=True, fullgraph=True)  # no graph break
    assert torch.equal(compiled(processed, noise), zoo_decoding.choose_tokens(processed, noise))

    options = GenerationOptions(max_new_tokens=20, temperature=0.9, top_p=0.95, seed=7, compile=True)
    first, again = (tokens_of(generate(model, PROMPTS, options)) for _ in range(2))
    other = tokens_of(generate(model, PROMPTS, dataclasses.replace(options, seed=8)))
    assert first == again and first != other


# ----------------------------------------------------------------------------------------------------------
# speculative decoding (Leviathan et al., 2023; Chen et al., 2023)


def test_speculative_greedy_equals_plain_greedy(model):
    """Whatever the draft proposes and however many proposals a round checks, the tokens are the model's own
    greedy tokens: with its own first layer as the draft (some proposals rejected), an unrelated random model
    (most rejected) and the model itself (all accepted)."""
    torch.manual_seed(1)
    stranger = tiny_gpt(model.tokenizer)
    drafts = {"early exit": early_exit_draft(model, 1), "stranger": stranger, "itself": model}
    options = GenerationOptions(max_new_tokens=30, **GREEDY)
    plain = tokens_of(generate(model, PROMPTS, options))
    acceptance = {}
    for name, draft in drafts.items():
        for lookahead in (1, 5):
            assert tokens_of(generate(model, PROMPTS, options, draft=draft, lookahead=lookahead)) == plain, \
                f"draft {name}, lookahead {lookahead}"
        ids = model.tokenizer.encode(PROMPTS[0])
        acceptance[name] = speculative_decode(model, draft, ids, options, TokenState(), 4).acceptance
    assert acceptance["itself"] == 1.0 and acceptance["stranger"] < acceptance["early exit"] < 1.0


def test_speculative_decoding_stops_where_plain_decoding_stops(model):
    options = GenerationOptions(max_new_tokens=60, stop=("e",), **GREEDY)
    plain = generate(model, PROMPTS, options)
    fast = generate(model, PROMPTS, options, draft=early_exit_draft(model, 1), lookahead=5)
    assert [(r.text, r.tokens, r.finish_reason) for r in fast] == [(r.text, r.tokens, r.finish_reason) for r in plain]
    assert {r.finish_reason for r in plain} == {"stop"}


def test_speculative_sampling_draws_from_the_model_distribution():
    """Leviathan et al.'s acceptance rule on a fixed toy: the draft q proposes two tokens, the model's p is
    known; the first token kept must follow p[0], and the next one, after an accepted proposal, p[1], however
    far q is from p. Accepting every proposal would give q instead."""
    torch.manual_seed(0)
    p = torch.tensor([[3.0, 1.0, 0.0, -1.0, 2.0], [0.0, 2.5, 1.0, 0.0, -2.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    q = torch.tensor([[0.0, 2.0, 2.0, 0.0, -1.0], [2.0, 0.0, 0.0, 1.0, 0.0]])
    sampler = Sampler(1.0, seed=0, device="cpu")
    trials = 4000
    proposals = torch.multinomial(q.softmax(-1), trials, replacement=True, generator=sampler.generator).T.tolist()
    first, second = torch.zeros(5), torch.zeros(5)
    for proposed in proposals:
        n, token = _verify(sampler, proposed, p, q)
        kept = [*proposed[:n], token]
        first[kept[0]] += 1
        if n >= 1:
            second[kept[1]] += 1
    p = p.softmax(-1)
    assert 0.5 * (first / first.sum() - p[0]).abs().sum() < 0.04  # total variation; sampling noise ~0.01
    assert 0.5 * (second / second.sum() - p[1]).abs().sum() < 0.05
    assert 0.5 * (q.softmax(-1)[0] - p[0]).abs().sum() > 0.3  # the draft alone would be far off


def test_speculative_sampling_is_reproducible_and_fills_the_length(model):
    options = GenerationOptions(max_new_tokens=30, temperature=0.8, top_k=10, seed=5)
    draft = early_exit_draft(model, 1)
    first, again = (generate(model, PROMPTS, options, draft=draft) for _ in range(2))
    assert tokens_of(first) == tokens_of(again)
    assert all(r.n_new_tokens == 30 for r in first)


def test_speculative_decoding_refuses_what_it_cannot_do(model):
    draft = early_exit_draft(model, 1)
    with pytest.raises(InputError, match="vocabulary"):
        generate(model, "the", GenerationOptions(**GREEDY), draft=tiny_gpt(type(model.tokenizer).train("xyz")))
    with pytest.raises(InputError, match="beam_size"):
        generate(model, "the", GenerationOptions(beam_size=2, **GREEDY), draft=draft)
    with pytest.raises(InputError, match="repetition_penalty"):
        generate(model, "the", GenerationOptions(repetition_penalty=1.5, **GREEDY), draft=draft)
    with pytest.raises(InputError, match="compile=False"):
        generate(model, "the", GenerationOptions(compile=True, **GREEDY), draft=draft)
    with pytest.raises(InputError, match="lookahead"):
        generate(model, "the", GenerationOptions(**GREEDY), draft=draft, lookahead=0)
    with pytest.raises(InputError, match=r"n_layers must be an integer in \[1, 1\]"):
        early_exit_draft(model, 2)


def test_early_exit_draft_shares_the_model_weights(model):
    draft = early_exit_draft(model, 1)
    owned = {id(p) for p in model.parameters()}
    assert all(id(p) in owned for p in draft.parameters())
    assert draft.backbone.config.n_layers == 1 and len(draft.backbone.blocks) == 1


# ----------------------------------------------------------------------------------------------------------
# int8 weights


def test_int8_costs_under_1_percent_of_gpt_nano_validation_loss_with_the_mlp_down_projections_in_fp32():
    """int8 weights and activations (zoo.nn.packed.int8_dynamic) on the shipped gpt-nano, scored on its own
    validation split (the recipe's evaluation windows, as during training). Every linear in int8 cost the model
    shipped without dropout 1.1% and costs the one shipped now 0.59% (README); keeping the MLP down projections in
    fp32 (their input carries the outliers) costs less (measured: +0.18% and +0.11%), under 1%. The weights really
    are int8 elsewhere; the original is untouched."""
    from zoo.evaluation import load_for_eval
    from zoo.models import trained_dir

    model, family, data, data_config = load_for_eval(trained_dir("gpt-nano"))
    before = {name: p.clone() for name, p in model.state_dict().items()}
    fp32 = family.evaluate(model, data, data_config, quick=True)["val_loss"]
    every = family.evaluate(int8_dynamic(model), data, data_config, quick=True)["val_loss"]
    mixed_model = int8_dynamic(model, keep_float=("mlp.down",))
    mixed = family.evaluate(mixed_model, data, data_config, quick=True)["val_loss"]
    assert fp32 < mixed < 1.01 * fp32 and mixed < every, f"fp32 {fp32:.4f}, int8 {every:.4f}, mixed {mixed:.4f}"
    assert mixed_model.backbone.blocks[0].mlp.gate_up.weight().dtype == torch.qint8
    assert isinstance(mixed_model.backbone.blocks[0].mlp.down, torch.nn.Linear)
    assert all(torch.equal(before[name], p) for name, p in model.state_dict().items())


def test_int8_keep_float_names_must_match_a_linear(model):
    with pytest.raises(InputError, match=r"keep_float=\['mlp.up'\] names no nn.Linear.*mlp.gate_up"):
        int8_dynamic(model, keep_float=("mlp.down", "mlp.up"))


def test_int8_decoding_compiled_matches_int8_eager(model):
    """The compiled step reaches the int8 weights through zoo.nn.packed's opaque operator: the same tokens as
    the int8 model eager (~15 s: its own compile)."""
    quantized = int8_dynamic(model)
    options = GenerationOptions(max_new_tokens=20, **GREEDY)
    compiled = dataclasses.replace(options, compile=True)
    assert tokens_of(generate(quantized, PROMPTS, compiled)) == tokens_of(generate(quantized, PROMPTS, options))
