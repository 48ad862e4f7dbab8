"""zoo.text.generate: KV-cached decoding against full forward passes, the sampling suite, stop strings, errors.

The model is a tiny GPT (2 layers, width 64) with a char tokenizer, trained for a few dozen steps on a small
string so that its greedy continuations are varied text rather than one repeated character.
"""

import math

import pytest
import torch

from tests.gpt_helpers import half_trained_gpt, tiny_gpt
from zoo.decoding import (
    MinP,
    RepetitionPenalty,
    Sampler,
    StopStrings,
    Temperature,
    TextState,
    TopK,
    TopP,
    make_processors,
)
from zoo.text.generate import GenerationOptions, format_table, generate, next_token_table, stream
from zoo.text.tokenizer import CharTokenizer

GREEDY = dict(temperature=0.0)


@pytest.fixture(scope="module")
def model():
    return half_trained_gpt()


def reference_greedy(model, prompt: str, n: int, penalty: float = 1.0) -> list[int]:
    """Greedy decoding the slow way: a full forward pass without cache over prompt + prefix at every step."""
    ids = model.tokenizer.encode(prompt)
    out = []
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([ids + out]))[0, -1]
            if penalty != 1.0:  # CTRL, written out independently of RepetitionPenalty
                for token in set(ids + out):
                    value = logits[token]
                    logits[token] = value / penalty if value > 0 else value * penalty
            out.append(int(logits.argmax()))
    return out


# ----------------------------------------------------------------------------------------------------------
# greedy decoding with the cache == argmax of full forward passes


def test_greedy_equals_full_forward_argmax(model):
    result = generate(model, "the qu", GenerationOptions(max_new_tokens=40, **GREEDY))
    assert result.tokens == reference_greedy(model, "the qu", 40)
    assert len(set(result.tokens)) > 5  # a real test: the model is not stuck on one character
    assert result.text == model.tokenizer.decode(result.tokens)
    assert result.n_new_tokens == 40 and result.finish_reason == "length" and result.tokens_per_s > 0


def test_greedy_batch_of_ragged_prompts_equals_each_alone(model):
    prompts = ["h", "the quick", "a stitch in time", "lazy", "general kenobi. hel"]
    options = GenerationOptions(max_new_tokens=30, **GREEDY)
    results = generate(model, prompts, options)
    assert [r.prompt for r in results] == prompts
    for prompt, result in zip(prompts, results):
        assert result.tokens == generate(model, prompt, options).tokens
        assert result.tokens == reference_greedy(model, prompt, 30)


def test_repetition_penalty_greedy_matches_reference_in_a_ragged_batch(model):
    # The batch has left padding made of PAD_ID = 0: padding must not count as a "seen" token.
    prompts = ["the lazy dog", "o", "hello"]
    options = GenerationOptions(max_new_tokens=25, repetition_penalty=4.0, **GREEDY)
    for prompt, result in zip(prompts, generate(model, prompts, options)):
        assert result.tokens == reference_greedy(model, prompt, 25, penalty=4.0)
    plain = generate(model, "o", GenerationOptions(max_new_tokens=25, **GREEDY))
    assert plain.tokens != generate(model, "o", options).tokens  # the penalty does change the output


def test_prepacked_decoding_gives_the_same_tokens_and_leaves_the_model_as_it_was(model):
    """Generation multiplies by oneDNN-packed weight copies on CPU (zoo.nn.packed); greedy tokens must not
    change, and every Linear must be a plain nn.Linear again afterwards, also when a stream is abandoned."""
    prompts = ["h", "the quick", "a stitch in time"]
    packed = generate(model, prompts, GenerationOptions(max_new_tokens=30, **GREEDY))
    plain = generate(model, prompts, GenerationOptions(max_new_tokens=30, prepack=False, **GREEDY))
    assert [r.tokens for r in packed] == [r.tokens for r in plain]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    pieces = stream(model, "hello", GenerationOptions(max_new_tokens=5, **GREEDY))
    next(pieces)
    if torch.backends.mkldnn.is_available():
        assert all("forward" in m.__dict__ for m in linears)  # packed while the stream is open
    pieces.close()
    assert not any("forward" in m.__dict__ for m in linears)


def test_training_mode_is_restored_and_inference_mode_does_not_leak(model):
    model.train()
    try:
        generate(model, "hello", GenerationOptions(max_new_tokens=3))
        assert model.training
        pieces = stream(model, "hello", GenerationOptions(max_new_tokens=5, **GREEDY))
        next(pieces)
        assert not torch.is_inference_mode_enabled()
        pieces.close()
        assert model.training
    finally:
        model.eval()


# ----------------------------------------------------------------------------------------------------------
# sampling


def test_same_seed_same_text_different_seed_different_text(model):
    def sample(seed):
        return generate(model, "hello", GenerationOptions(max_new_tokens=40, temperature=1.5, seed=seed)).text

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)
    # the sampler has its own generator: seeded or not, generation neither reads nor advances the global RNG
    global_state = torch.get_rng_state()
    sample(1), sample(None)
    assert torch.equal(torch.get_rng_state(), global_state)
    torch.manual_seed(0)
    unseeded = {sample(None) for _ in range(3)}
    assert len(unseeded) == 3  # seed=None draws a fresh seed each call (not the global RNG's state, reset above)
    batch = generate(model, ["hello", "the"], GenerationOptions(max_new_tokens=20, temperature=1.0, seed=3))
    again = generate(model, ["hello", "the"], GenerationOptions(max_new_tokens=20, temperature=1.0, seed=3))
    assert [r.text for r in batch] == [r.text for r in again]


def test_sampling_frequencies_follow_the_softmax():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log().expand(20000, 4)
    for temperature in (1.0, 2.0):
        processed = Temperature(temperature)(logits, None)
        samples = Sampler(temperature, seed=0, device="cpu")(processed)
        freq = torch.bincount(samples, minlength=4).float() / len(samples)
        expected = (probs.log() / temperature).softmax(-1)
        torch.testing.assert_close(freq, expected, atol=0.015, rtol=0)
    assert Sampler(0.0, seed=None, device="cpu")(logits[:3]).tolist() == [0, 0, 0]  # greedy


def test_top_k_keeps_exactly_k():
    logits = torch.tensor([[3.0, 1.0, 1.0, 1.0, -2.0], [0.0, 5.0, 4.0, -1.0, 2.0]])
    out = TopK(2)(logits, None)
    assert torch.isfinite(out).sum(-1).tolist() == [2, 2]  # exactly k, even with a tie at the boundary
    assert torch.isfinite(out[1]).tolist() == [False, True, True, False, False]
    assert torch.equal(out[torch.isfinite(out)], logits[torch.isfinite(out)])  # kept logits unchanged
    assert torch.isfinite(TopK(10)(logits, None)).all()


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.tensor([[0.1, 0.5, 0.15, 0.25]]).log()  # sorted: 0.5, 0.25, 0.15, 0.1
    kept = lambda p: torch.isfinite(TopP(p)(logits, None))[0].tolist()
    assert kept(0.3) == [False, True, False, False]  # 0.5 alone reaches 0.3
    assert kept(0.7) == [False, True, False, True]  # 0.5 + 0.25 = 0.75 >= 0.7
    assert kept(0.8) == [False, True, True, True]  # 0.9 >= 0.8
    assert kept(0.95) == [True, True, True, True]
    assert kept(1e-6) == [False, True, False, False]  # the top token always survives


def test_min_p_keeps_tokens_within_a_fraction_of_the_top():
    logits = torch.tensor([[0.1, 0.5, 0.15, 0.25]]).log()
    kept = lambda m: torch.isfinite(MinP(m)(logits, None))[0].tolist()
    assert kept(0.4) == [False, True, False, True]  # p >= 0.4 * 0.5 = 0.2
    assert kept(0.25) == [False, True, True, True]  # p >= 0.125
    assert kept(1.0) == [False, True, False, False]
    assert kept(0.0) == [True, True, True, True]


def test_repetition_penalty_math():
    logits = torch.tensor([[2.0, -1.0, 0.5, -3.0, 0.0]])
    seen = torch.tensor([[True, True, False, False, True]])
    out = RepetitionPenalty(2.0)(logits, seen)
    # CTRL: divide a seen positive logit, multiply a seen negative one; unseen tokens untouched
    assert out.tolist() == [[1.0, -2.0, 0.5, -3.0, 0.0]]


def test_processor_chain_follows_the_options():
    names = lambda options: [type(p).__name__ for p in make_processors(options)]
    assert names(GenerationOptions(temperature=0.7, top_k=5, top_p=0.9, min_p=0.1, repetition_penalty=1.2)) == [
        "RepetitionPenalty", "Temperature", "TopK", "TopP", "MinP"]
    assert names(GenerationOptions(temperature=0.0, top_k=5, top_p=0.9, repetition_penalty=1.2)) == [
        "RepetitionPenalty"]  # greedy: the filters cannot change the argmax
    assert names(GenerationOptions()) == []


def test_top_k_1_sampling_is_greedy(model):
    options = GenerationOptions(max_new_tokens=20, temperature=1.3, top_k=1, seed=0)
    assert generate(model, "the", options).tokens == reference_greedy(model, "the", 20)


# ----------------------------------------------------------------------------------------------------------
# stop strings and streaming


class PieceTokenizer:
    """Tokens that are whole strings (so a stop string can span tokens or end inside one)."""

    eot_id = None

    def __init__(self, pieces):
        self.pieces = pieces

    def decode(self, ids):
        return "".join(self.pieces[i] for i in ids)


def feed(state: TextState, ids) -> list[str]:
    taken = []
    for i in ids:
        state.append(i)
        taken.append(state.take())
        if state.finished:
            break
    else:
        state.finish("length")
        taken.append(state.take())
    return taken


def test_stream_holds_back_a_possible_stop_string_start():
    tokenizer = PieceTokenizer(list("abcENDx"))
    a, b, c, E, N, D, x = range(7)
    state = TextState(tokenizer, StopStrings(["END"]), track_text=True)
    taken = feed(state, [a, E, N, x, E, N, D, a])
    assert taken == ["a", "", "", "ENx", "", "", ""]  # "E", "EN" held; "ENx" released; "END" never emitted
    assert state.text == "aENx" and state.finish_reason == "stop" and "".join(taken) == state.text
    state = TextState(tokenizer, StopStrings(["END"]), track_text=True)
    taken = feed(state, [a, b, E, N])  # ends by length: held-back text is final and released
    assert taken == ["a", "b", "", "", "EN"] and state.finish_reason == "length"


def test_stop_string_spanning_tokens_and_ending_inside_one():
    tokenizer = PieceTokenizer(["hello ", "wor", "ld!", "xx", "ld"])
    state = TextState(tokenizer, StopStrings(["world", "zzz"]), track_text=True)
    taken = feed(state, [0, 1, 2, 3])
    assert state.text == "hello " and state.finish_reason == "stop" and state.tokens == [0, 1, 2]
    assert "".join(taken) == "hello "
    stops = StopStrings(["lo w", "o"])
    assert stops.find("hello world") == 3  # the earliest match wins, whichever stop string it is
    assert stops.held_back("he") == 0 and stops.held_back("hel") == 1 and stops.held_back("hello") == 2
    # ("hel" and "hello" end with "l" and "lo", which may grow into "lo w")
    assert StopStrings(["lo w"]).held_back("hello ") == 3


def test_stream_holds_back_partial_utf8_characters():
    tokenizer = PieceTokenizer(["a", "\ufffd", "é"])  # how byte-level BPE decodes half of a character

    class Growing(PieceTokenizer):
        def decode(self, ids):  # token 1 then token 2 decodes as one character, like two bytes of "é"
            return "".join(self.pieces[i] for i in ids).replace("\ufffdé", "é")

    state = TextState(Growing(tokenizer.pieces), StopStrings([]), track_text=True)
    assert feed(state, [0, 1, 2]) == ["a", "", "é", ""]


def test_multi_token_stop_string_in_generation_and_streaming(model):
    options = GenerationOptions(max_new_tokens=40, **GREEDY)
    free = generate(model, "hello", options).text
    # three characters (three tokens of a char-level model) whose first occurrence is not at the start
    start = next(i for i in range(3, len(free) - 3) if free[i:i + 3] not in free[:i + 2])
    stop = free[start:start + 3]
    stopped = generate(model, "hello", GenerationOptions(max_new_tokens=40, stop=(stop,), **GREEDY))
    cut = free.index(stop)
    assert stopped.text == free[:cut] and stopped.finish_reason == "stop"
    assert stopped.n_new_tokens == cut + len(stop)  # the stop string's tokens were generated, not returned
    pieces = list(stream(model, "hello", GenerationOptions(max_new_tokens=40, stop=(stop,), **GREEDY)))
    assert "".join(pieces) == stopped.text
    assert len(pieces) > 1  # streamed in pieces, not in one go at the end


def test_stream_pieces_join_to_the_text_and_return_the_result(model):
    options = GenerationOptions(max_new_tokens=30, temperature=0.9, seed=5, stop=("e t",))
    pieces, iterator = [], stream(model, "the lazy", options)
    while True:
        try:
            pieces.append(next(iterator))
        except StopIteration as done:
            result = done.value
            break
    assert "".join(pieces) == result.text == generate(model, "the lazy", options).text
    assert result.finish_reason in ("stop", "length")


def test_finished_rows_are_frozen_while_others_continue(model):
    options = GenerationOptions(max_new_tokens=30, stop=("o",), **GREEDY)
    prompts = ["hello w", "the quick br", "a stitch"]
    for prompt, result in zip(prompts, generate(model, prompts, options)):
        alone = generate(model, prompt, options)
        assert (result.text, result.tokens, result.finish_reason) == (alone.text, alone.tokens, alone.finish_reason)
    assert {r.finish_reason for r in generate(model, prompts, options)} != {"length"}


def test_end_of_text_token_finishes_a_row(model):
    tokenizer = model.tokenizer

    class WithEot(CharTokenizer):
        eot_id = tokenizer.encode(" ")[0]  # pretend the space is the end-of-text token

    model.tokenizer = WithEot(tokenizer.chars)
    try:
        result = generate(model, "hello", GenerationOptions(max_new_tokens=40, **GREEDY))
    finally:
        model.tokenizer = tokenizer
    free = generate(model, "hello", GenerationOptions(max_new_tokens=40, **GREEDY)).tokens
    assert result.finish_reason == "eot" and result.tokens == free[:free.index(WithEot.eot_id) + 1]


def test_compiled_decode_matches_eager(model):
    """The compiled one-token step (with RoPE's compile-time formula) gives the eager tokens, ragged batch
    included; on CPU it compiles a dynamic-shape graph for this batch once (~15 s on 2 cores)."""
    import copy

    device = "cuda" if torch.cuda.is_available() else "cpu"
    copied = copy.deepcopy(model).to(device)
    copied.tokenizer = model.tokenizer
    prompts = ["the qu", "a stitch in time", "o"]
    eager = generate(copied, prompts, GenerationOptions(max_new_tokens=12, **GREEDY))
    compiled = generate(copied, prompts, GenerationOptions(max_new_tokens=12, compile=True, **GREEDY))
    assert [r.tokens for r in compiled] == [r.tokens for r in eager]


# ----------------------------------------------------------------------------------------------------------
# next-token table (`zoo generate --show-probs`)


def test_next_token_table_is_the_softmax_of_the_last_position(model):
    table = next_token_table(model, "hello wor", k=5)
    assert len(table) == 5
    probs = [p for _, p in table]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
    with torch.no_grad():
        full = model(torch.tensor([model.tokenizer.encode("hello wor")]))[0, -1].softmax(-1)
    top = full.topk(5)
    assert [text for text, _ in table] == [model.tokenizer.decode([i]) for i in top.indices.tolist()]
    assert probs == pytest.approx(top.values.tolist(), abs=1e-6)
    assert len(next_token_table(model, "hello", k=1000)) == model.tokenizer.vocab_size


def test_format_table_like_the_slide():
    table = [("for", 0.418), ("t", 0.174), ("def", 0.093), ("import", 0.047)]
    assert format_table(table) == "for 41.8%, t 17.4%, def 9.3%, import 4.7%"
    assert format_table([(" for", 0.5), ("\n", 0.25), (",", 0.125)]) == "' for' 50.0%, '\\n' 25.0%, ',' 12.5%"


# ----------------------------------------------------------------------------------------------------------
# errors


def test_bad_prompts_raise_clear_errors(model):
    options = GenerationOptions(max_new_tokens=10)
    with pytest.raises(ValueError, match="prompt 0 is empty.*no BOS"):
        generate(model, "", options)
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        generate(model, ["hello", ""], options)
    with pytest.raises(ValueError, match="non-empty list of str"):
        generate(model, [], options)
    with pytest.raises(ValueError, match="200 tokens long, more than the model's context of max_seq_len=128"):
        generate(model, "a" * 200, options)
    with pytest.raises(ValueError, match=r"longest prompt \(100 tokens\) \+ max_new_tokens \(50\) = 150 exceeds "
                                         r"the model's context of max_seq_len=128.*at most 28"):
        generate(model, "a" * 100, GenerationOptions(max_new_tokens=50))
    with pytest.raises(ValueError, match="longest prompt"):
        stream(model, "a" * 100, GenerationOptions(max_new_tokens=50))  # at the call, not at the first next()
    with pytest.raises(ValueError, match="character 'Z' at position 3 is not in this char-level"):
        generate(model, "helZo", options)  # the tokenizer's own error, not swallowed
    with pytest.raises(ValueError, match="one prompt"):
        stream(model, ["hello"], options)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        next_token_table(model, "hello", k=0)


def test_model_without_tokenizer_is_a_clear_error():
    bare = tiny_gpt(CharTokenizer("abc"))
    with pytest.raises(ValueError, match="no tokenizer.*model.tokenizer"):
        generate(bare, "abc", GenerationOptions(max_new_tokens=2))
    with pytest.raises(ValueError, match="no tokenizer"):
        next_token_table(bare, "abc")


@pytest.mark.parametrize("field, value, message", [
    ("max_new_tokens", 0, "max_new_tokens must be an integer >= 1"),
    ("max_new_tokens", 2.5, "max_new_tokens must be an integer >= 1"),
    ("temperature", -0.1, r"temperature must be a finite number >= 0 \(0 = greedy\)"),
    ("temperature", math.nan, "temperature must be a finite number"),
    ("top_k", 0, r"top_k must be None \(off\) or an integer >= 1"),
    ("top_p", 0.0, r"top_p must be in \(0, 1\]"),
    ("top_p", 1.5, r"top_p must be in \(0, 1\]"),
    ("min_p", -0.5, r"min_p must be in \[0, 1\]"),
    ("repetition_penalty", 0.0, "repetition_penalty must be a finite number > 0"),
    ("stop", "\n", "stop must be a tuple of strings"),
    ("stop", ("",), "stop must hold non-empty strings"),
    ("seed", 1.5, "seed must be None or an integer"),
    ("compile", "yes", "compile must be True or False"),
    ("prepack", 1, "prepack must be True or False"),
])
def test_options_are_validated(field, value, message):
    with pytest.raises(ValueError, match=f"GenerationOptions.{message}"):
        GenerationOptions(**{field: value})


def test_options_are_frozen_and_accept_a_list_of_stops():
    options = GenerationOptions(stop=["\n\n", "###"])
    assert options.stop == ("\n\n", "###")
    with pytest.raises(AttributeError):
        options.temperature = 0.5
