"""The code model's parse rate (zoo.text.code): how samples are cut and counted."""

import types

import pytest

from zoo.text import code


def test_a_sample_is_cut_at_its_first_top_level_line():
    sample = "def area(r):\n    pi = 3.14\n\n    return pi * r * r\n\nclass Circle:\n    pass\n"
    assert code.first_function(sample) == "def area(r):\n    pi = 3.14\n\n    return pi * r * r\n"
    assert code.first_function("def f():\n    return 1") == "def f():\n    return 1\n"  # no top-level line
    assert code.first_function("def f():\n@decorator\ndef g():\n") == "def f():\n"


def test_parses_is_ast_parse():
    assert code.parses("def f(x):\n    return x + 1\n")
    assert not code.parses("def f(x):\n    return (x + \n")
    assert not code.parses("def f(x):\n    return x\0\n")  # ast.parse raises ValueError on a null byte


def test_parse_rate_samples_def_at_temperature_0_8_and_counts_the_functions_that_parse(monkeypatch):
    continuations = ["def f(x):\n    return x\n\nprint(f(1))\n",  # parses once cut before print
                     "def g(:\n    pass\n",  # a syntax error
                     "def h():\n    return [1,\n"]  # cut mid-statement by the token budget
    seen = {}

    def fake_sample(model, prompt, n, options):
        seen.update(prompt=prompt, n=n, options=options)
        return [continuations[i % 3] for i in range(n)]

    monkeypatch.setattr(code, "sample_healed", fake_sample)
    model = types.SimpleNamespace(max_seq_len=64, tokenizer=types.SimpleNamespace(encode=lambda text: [1, 2]))
    rate, functions = code.parse_rate(model, n=6, seed=3)
    assert rate == pytest.approx(2 / 6)
    assert functions[0] == "def f(x):\n    return x\n"
    assert seen["prompt"] == "def " and seen["n"] == 6
    assert seen["options"].temperature == 0.8 and seen["options"].seed == 3
    assert seen["options"].max_new_tokens == 62  # the context minus the prompt's two tokens
    with pytest.raises(ValueError, match="n >= 1"):
        code.parse_rate(model, n=0)


def test_token_healing_backs_off_the_last_token_and_makes_the_first_one_start_with_it():
    """With the char tokenizer "the q" heals to the prompt "the " plus a first token that must start with "q":
    every sample continues the whole prompt, and only the first step is constrained."""
    import torch

    from tests.gpt_helpers import half_trained_gpt
    from zoo.decoding import TokenHistory
    from zoo.text.generate import GenerationOptions

    model = half_trained_gpt()
    samples = code.sample_healed(model, "the q", 8, GenerationOptions(max_new_tokens=6, temperature=1.0, seed=0))
    assert all(sample.startswith("the q") and len(sample) == len("the q") + 5 for sample in samples)
    healing = code.FirstTokenStartsWith(model.tokenizer, model.config.vocab_size, "q")
    history = TokenHistory(1, 4, "cpu")
    logits = torch.zeros(1, model.config.vocab_size)
    assert torch.isfinite(healing(logits, None, history)).sum() == 1  # only "q"
    history.append(torch.tensor([0]))
    assert torch.isfinite(healing(logits, None, history)).all()  # the second step is free
    with pytest.raises(ValueError, match="no token"):
        code.FirstTokenStartsWith(model.tokenizer, model.config.vocab_size, "#")
