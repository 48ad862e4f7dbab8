"""zoo.speech.metrics: error rates after Whisper's basic normalisation, and sacrebleu's translation scores."""

import pytest

from zoo.errors import InputError
from zoo.speech.metrics import error_rate, normalize, translation_scores


def test_normalisation_ignores_case_punctuation_brackets_and_spacing():
    assert normalize("  Wo sind  die Stifte, [laughs] (leise) um drei Uhr?") == "wo sind die stifte um drei uhr"


def test_word_and_character_error_rates():
    references = ["the man does not forget the shoe"]  # 7 words, 32 characters with spaces
    hypotheses = ["The man does not ferget the shoe."]  # one word wrong, one letter wrong
    assert error_rate(references, hypotheses, "en") == pytest.approx(1 / 7)
    assert error_rate(references, hypotheses, "en", characters=True) == pytest.approx(1 / 32)
    # Mandarin is scored by characters, spaces removed, whatever `characters` says
    assert error_rate(["一个 王后"], ["一个王"], "zh") == pytest.approx(1 / 4)
    # empty references are left out; none at all is an error
    assert error_rate(["", "a b"], ["noise", "a c"], "en") == pytest.approx(1 / 2)
    with pytest.raises(InputError, match="non-empty reference"):
        error_rate([""], ["x"], "en")


def test_translation_scores_are_sacrebleus():
    scores = translation_scores(["the boy eats the red apple"], ["the boy eats the red apple"])
    assert scores["bleu"] == pytest.approx(100.0) and scores["chrf"] == pytest.approx(100.0)
    assert translation_scores(["the boy eats the red apple"], ["a dog"])["bleu"] < 10
