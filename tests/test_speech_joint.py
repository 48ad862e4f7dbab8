"""zoo.speech.joint: CTC prefix scores against a brute-force sum over every CTC path, and joint CTC/attention
decoding choosing what the audio (the CTC head) says where the decoder alone prefers something else."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.test_speech_decoding import NO_TS, TOK, Script, ScriptedWhisper, W, mel_of, tone
from zoo.decoding import BeamSearch, TokenState
from zoo.errors import InputError
from zoo.speech.audio import log_mel_spectrogram
from zoo.speech.decoding import DecodingOptions, decode
from zoo.speech.joint import CTCPrefixScorer
from zoo.speech.tokenizer import WhisperTokenizer
from zoo.speech.transcribe import transcribe


def collapse(path, blank):
    """A CTC path -> its labels: repeats merged, blanks dropped (Graves et al., 2006)."""
    return tuple(label for label, _ in itertools.groupby(path) if label != blank)


def brute_force(logprobs: torch.Tensor, prefix: tuple, exact: bool) -> float:
    """log of the summed probability of every path over the (S, C) frames whose labels start with (or, exact,
    equal) prefix; blank = C - 1."""
    S, C = logprobs.shape
    table = logprobs.tolist()
    total = 0.0
    for path in itertools.product(range(C), repeat=S):
        labels = collapse(path, C - 1)
        if labels == prefix if exact else labels[:len(prefix)] == prefix:
            total += math.exp(sum(table[t][c] for t, c in enumerate(path)))
    return math.log(total)


def scorer_for(logprobs: torch.Tensor, mask=None, weight=0.5, group=1) -> CTCPrefixScorer:
    # token i spells the bytes of TOKEN_BYTES[i]; labels are bytes, so a 4-class CTC reads bytes 0-2 + blank
    return CTCPrefixScorer(logprobs, mask, TOKEN_BYTES, eot=len(TOKEN_BYTES), weight=weight, group=group)


TOKEN_BYTES = [b"\x00", b"\x01", b"\x02", b"\x00\x01", b"\x01\x01", b""]  # the last carries no text


def test_prefix_scores_and_full_probabilities_equal_the_sum_over_every_path():
    torch.manual_seed(0)
    logprobs = torch.randn(1, 6, 4).log_softmax(-1)  # 6 frames, bytes 0..2 and the blank
    scorer = scorer_for(logprobs)
    for tokens in [(0,), (1,), (3,), (4,), (0, 1), (3, 2), (4, 0), (1, 5, 1)]:
        labels = tuple(b"".join(TOKEN_BYTES[t] for t in tokens))
        state = scorer._states([(0, tokens)])[0]
        assert state.psi == pytest.approx(brute_force(logprobs[0], labels, exact=False), abs=1e-4), tokens
        assert scorer.full_logprob(state) == pytest.approx(brute_force(logprobs[0], labels, exact=True), abs=1e-4)
        # and the full probability is the CTC loss's
        loss = F.ctc_loss(logprobs.transpose(0, 1), torch.tensor([labels]), torch.tensor([6]),
                          torch.tensor([len(labels)]), blank=3, reduction="sum")
        assert scorer.full_logprob(state) == pytest.approx(-float(loss), abs=1e-4)


def test_a_padded_clip_scores_as_it_does_alone():
    torch.manual_seed(1)
    short, long = torch.randn(1, 4, 4).log_softmax(-1), torch.randn(1, 7, 4).log_softmax(-1)
    batch = torch.cat([torch.cat([short, torch.randn(1, 3, 4).log_softmax(-1)], dim=1), long])
    mask = torch.tensor([[True] * 4 + [False] * 3, [True] * 7])
    together = scorer_for(batch, mask)
    for clip, alone in ((0, scorer_for(short)), (1, scorer_for(long))):
        for tokens in [(0,), (3,), (4, 2), (2, 2, 1)]:
            a, b = together._states([(clip, tokens)])[0], alone._states([(0, tokens)])[0]
            assert a.psi == pytest.approx(b.psi, abs=1e-4)
            assert together.full_logprob(a) == pytest.approx(alone.full_logprob(b), abs=1e-4)


def test_beam_search_adds_final_log_scores_as_they_are():
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.05], [0.3, 0.3, 0.3]]))  # rows that do not sum to 1
    for normalize, expected in ((False, math.log(0.2)), (True, math.log(0.2 / 0.35))):
        search = BeamSearch([TokenState(2)], 2, None, None, "cpu", normalize=normalize)
        search.update(logits)
        assert float(search.sum_logprobs[0]) == pytest.approx(expected, abs=1e-6)


# ----------------------------------------------------------------------------------------------------------
# joint decoding end to end, on the scripted decoder of tests/test_speech_decoding.py


class SpellingHead(nn.Module):
    """A CTC head that hears `text`: one frame per byte, a blank between, blanks after (confidence p)."""

    def __init__(self, text: str, p: float = 0.9):
        super().__init__()
        self.labels = []
        for byte in text.encode():
            self.labels += [byte, 256]
        self.p = p

    def forward(self, features):
        B, S, _ = features.shape
        probs = torch.full((B, S, 257), (1 - self.p) / 256)
        for t in range(S):
            probs[:, t, self.labels[t] if t < len(self.labels) else 256] = self.p
        return probs.log()


def two_sentences(generated):
    """The decoder prefers "the cat sat" (0.6) to "the dog sat" (0.4)."""
    if not generated:
        return {W["the"]: 1.0}
    if len(generated) == 1:
        return {W["cat"]: 0.6, W["dog"]: 0.4}
    return {W["sat"]: 1.0} if len(generated) == 2 else {TOK.eot: 1.0}


@pytest.mark.parametrize("search", [dict(beam_size=3), dict()])
def test_joint_decoding_writes_what_the_ctc_head_hears(search):
    model = ScriptedWhisper({6: Script(two_sentences)})
    model.ctc_head = SpellingHead("the dog sat")
    alone = decode(model, mel_of(6), DecodingOptions(**search, **NO_TS))
    joint = decode(model, mel_of(6), DecodingOptions(ctc_weight=0.5, **search, **NO_TS))
    assert alone.text == "the cat sat" and joint.text == "the dog sat"
    # the joint score is the weighted sum of both models' log-probs, and the scorer changed nothing else
    assert joint.language == "en" and joint.no_speech_prob == alone.no_speech_prob


def test_joint_decoding_options_are_checked():
    with pytest.raises(InputError, match="ctc_weight"):
        DecodingOptions(ctc_weight=1.5)
    with pytest.raises(InputError, match="task='transcribe'"):
        DecodingOptions(task="translate", ctc_weight=0.3)
    with pytest.raises(InputError, match="CTC head"):
        decode(ScriptedWhisper({6: Script(two_sentences)}), mel_of(6), DecodingOptions(ctc_weight=0.3, **NO_TS))


def test_a_search_that_ctc_finds_impossible_still_ends():
    # two CTC frames hold two bytes at most: after them every candidate, the end included, is impossible for CTC
    model = ScriptedWhisper({6: Script(two_sentences)})
    model.ctc_head = SpellingHead("x")
    for search in (dict(beam_size=3), dict()):
        result = decode(model, mel_of(6, frames=4), DecodingOptions(ctc_weight=0.3, **search, **NO_TS))
        assert result.tokens and math.isfinite(result.avg_logprob)
        assert result.text.endswith("cat sat")  # past the impossible point the decoder's scores lead


def test_transcribe_decodes_jointly_by_default_and_does_not_resample_a_low_joint_score():
    key = int(log_mel_spectrogram(tone(300, 1.0)).mean(-1).argmax())  # the scripted model's key for the tone
    model = ScriptedWhisper({key: Script(two_sentences)})
    model.ctc_head = SpellingHead("the dog sat", p=0.3)  # an unsure CTC head: the joint score is far below -1
    [segment] = transcribe(model, tone(300, 4), without_timestamps=True)["segments"]
    assert segment["text"].strip() == "the dog sat" and segment["avg_logprob"] < -1
    assert segment["temperature"] == 0.0  # not resampled for the low joint score
    alone = transcribe(model, tone(300, 4), without_timestamps=True, ctc_weight=0)
    assert alone["text"].strip() == "the cat sat"


def test_transcribe_decodes_the_token_bytes_once_per_tokenizer(monkeypatch):
    """transcribe() builds a DecodingTask per fallback temperature; the tokens' bytes for the CTC prefix scores
    are decoded once per tokenizer, not once per task."""
    key = int(log_mel_spectrogram(tone(300, 1.0)).mean(-1).argmax())
    model = ScriptedWhisper({key: Script(two_sentences)})
    model.ctc_head = SpellingHead("the dog sat")
    model.tokenizer = WhisperTokenizer(TOK.bpe, TOK.languages)  # a fresh one: nothing decoded yet
    calls = []
    decode_bytes = model.tokenizer.bpe.token_bytes
    monkeypatch.setattr(model.tokenizer.bpe, "token_bytes", lambda i: calls.append(i) or decode_bytes(i))
    for _ in range(2):
        assert transcribe(model, tone(300, 4), without_timestamps=True)["text"].strip() == "the dog sat"
    assert sorted(calls) == list(range(model.tokenizer.eot))  # each text token once, over both calls
    assert model.tokenizer.text_token_bytes == tuple(decode_bytes(i) for i in range(model.tokenizer.eot))
