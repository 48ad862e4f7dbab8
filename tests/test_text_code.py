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
    continuations = ["f(x):\n    return x\n\nprint(f(1))\n",  # parses once cut before print
                     "g(:\n    pass\n",  # a syntax error
                     "h():\n    return [1,\n"]  # cut mid-statement by the token budget
    seen = {}

    def fake_generate(model, prompts, options):
        seen.update(prompts=prompts, options=options)
        return [types.SimpleNamespace(text=continuations[i % 3]) for i in range(len(prompts))]

    monkeypatch.setattr(code, "generate", fake_generate)
    model = types.SimpleNamespace(max_seq_len=64, tokenizer=types.SimpleNamespace(encode=lambda text: [1, 2]))
    rate, functions = code.parse_rate(model, n=6, seed=3)
    assert rate == pytest.approx(2 / 6)
    assert functions[0] == "def f(x):\n    return x\n"
    assert seen["prompts"] == ["def "] * 6
    assert seen["options"].temperature == 0.8 and seen["options"].seed == 3
    assert seen["options"].max_new_tokens == 62  # the context minus the prompt's two tokens
    with pytest.raises(ValueError, match="n >= 1"):
        code.parse_rate(model, n=0)
