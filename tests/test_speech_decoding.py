"""zoo.speech.decoding and zoo.speech.transcribe: Whisper's decoding rules, each on a case that needs it.

The model is a fake with scripted distributions (like tests/test_decoding.py's TableModel): each clip's mel
picks a script (the mel bin with the most energy, or "silence" when every bin is equal), and the script gives
the language and no-speech probabilities at <|startoftranscript|> and the next-token distribution for every
sequence of generated tokens. The tokenizer is zoo's WhisperTokenizer over a word-level vocabulary (one token
per word), so every special and timestamp id is the real layout. Audio for transcribe() is pure tones: a
window's loudest mel bin says which tone (and so which script) it holds, whatever the mel front end's details.
"""

import math
import re
from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

from tests.test_decoding import EOT, START, TableModel
from zoo.decoding import DecodingOptions as CoreOptions
from zoo.decoding import LogitProcessor, TokenHistory, TokenState, beam_search
from zoo.decoding import decode as core_decode
from zoo.speech.audio import SAMPLE_RATE, log_mel_spectrogram
from zoo.speech.decoding import (
    ApplyTimestampRules,
    DecodingOptions,
    compression_ratio,
    decode,
    detect_language,
)
from zoo.speech.tokenizer import WhisperTokenizer
from zoo.speech.transcribe import transcribe

WORDS = [" ", " the", " cat", " sat", " on", " mat", " dog", " ran", " hello", " world", " thank", " you", " ♪",
         *(f" w{i}" for i in range(10))]
FLOOR = -30.0  # the logit of every token a script does not mention (never -inf: a rule may ban all the others)


class WordPieces:
    """The BPE interface WhisperTokenizer builds on, one token per word of WORDS (ids 0..n-1, then <|endoftext|>)."""

    eot_id = len(WORDS)

    def encode(self, text):
        ids = []
        for piece in re.findall(r" ?[^ ]+| ", text):
            ids += [WORDS.index(piece)] if piece in WORDS else [0, 0]  # unknown: two tokens (never "one symbol")
        return ids

    def encode_batch(self, texts):
        return [self.encode(t) for t in texts]

    def decode(self, ids):
        return "".join(WORDS[i] for i in ids)

    def token_bytes(self, token_id):
        return WORDS[token_id].encode() if token_id < self.eot_id else b""


TOK = WhisperTokenizer(WordPieces(), ["en", "de", "fr"])
W = {word.strip() or " ": i for i, word in enumerate(WORDS)}  # "the" -> id
W["♪"] = WORDS.index(" ♪")


def ts(seconds: float) -> int:
    return TOK.timestamp_token(seconds)


# ----------------------------------------------------------------------------------------------------------
# the scripted model


@dataclass
class Script:
    """next(generated) -> {token: probability} for the tokens generated so far; languages and no_speech: the
    distribution at <|startoftranscript|> (the rest of its mass goes to `sot_rest`, a text token)."""

    next: callable
    languages: dict = field(default_factory=lambda: {"en": 1.0})
    no_speech: float = 0.0
    sot_rest: float = 0.0


def fixed(*tokens, p=1.0):
    """Says `tokens` then <|endoftext|>, each text token with probability p (the rest on " w9")."""
    def next(generated):
        token = tokens[len(generated)] if len(generated) < len(tokens) else TOK.eot
        if p == 1 or token >= TOK.timestamp_begin:
            return {token: 1.0}
        return {token: p, W["w9"]: 1 - p}
    return next


class FakeCache:
    def __init__(self):
        self.rows, self.scripts = [], []

    def reorder(self, indices, same_context: bool = False):  # the scripts play the context: they always move
        self.rows = [list(self.rows[i]) for i in indices.tolist()]
        self.scripts = [self.scripts[i] for i in indices.tolist()]


class ScriptedWhisper(nn.Module):
    """zoo.speech.decoding.SpeechModel with scripted distributions; records what it was asked."""

    def __init__(self, scripts: dict, max_seq_len: int = 64):
        super().__init__()
        self.tokenizer = TOK
        self.vocab_size = TOK.vocab_size
        self.max_seq_len = max_seq_len
        self.scripts = scripts  # key (a mel bin, or "silence") -> Script
        self.keys = list(scripts)
        self.windows = []  # (key, frames) of every clip the encoder saw
        self.prompts = []  # every prompt prefilled

    def embed_audio(self, mel, mel_mask=None):
        mask = mel_mask if mel_mask is not None else torch.ones(mel.shape[0], mel.shape[2], dtype=torch.bool)
        profile = (mel * mask[:, None]).sum(-1) / mask.sum(-1, keepdim=True)  # (B, 80) mean over real frames
        keys = ["silence" if float(p.max() - p.min()) < 0.1 else int(p.argmax()) for p in profile]
        self.windows += [(k, int(m.sum())) for k, m in zip(keys, mask)]
        # one feature per encoder frame (20 ms, the stride-2 stem's), each holding the script's index
        frames = (mel.shape[2] + 1) // 2
        features = torch.tensor([float(self.keys.index(k)) for k in keys])[:, None, None].expand(-1, frames, 1)
        return features, (mask[:, ::2] if mel_mask is not None else None)

    def _logits(self, key: int, row: list[int]) -> torch.Tensor:
        script = self.scripts[self.keys[key]]
        logits = torch.full((self.vocab_size,), FLOOR)
        if TOK.sot not in row:  # inside the previous-text prompt (teacher forcing): nothing is read there
            return logits
        sot = len(row) - 1 - row[::-1].index(TOK.sot)
        if sot == len(row) - 1:  # the distribution at <|startoftranscript|>
            probs = {TOK.language_token(c): p * (1 - script.no_speech - script.sot_rest)
                     for c, p in script.languages.items()}
            probs |= {TOK.no_speech: script.no_speech, W["the"]: script.sot_rest}
        else:
            start = sot + 1
            while start < len(row) and row[start] in (*TOK.all_language_tokens, TOK.transcribe, TOK.translate,
                                                       TOK.no_timestamps):
                start += 1
            probs = script.next(tuple(row[start:]))
        for token, p in probs.items():
            if p > 0:
                logits[token] = math.log(p)
        return logits

    def make_cache(self, batch, max_len):
        return FakeCache()

    def prefill(self, tokens, mask, cache, audio_features, audio_mask=None):
        real = mask if mask is not None else torch.ones_like(tokens, dtype=torch.bool)
        cache.rows = [row[keep].tolist() for row, keep in zip(tokens, real)]
        cache.scripts = [int(f[0, 0]) for f in audio_features]
        self.prompts += [list(r) for r in cache.rows]
        return torch.stack([self._logits(k, r) for k, r in zip(cache.scripts, cache.rows)])

    def step(self, tokens, cache):
        for row, token in zip(cache.rows, tokens[:, 0].tolist()):
            row.append(token)
        return torch.stack([self._logits(k, r) for k, r in zip(cache.scripts, cache.rows)])

    def logits(self, tokens, audio_features, audio_mask=None):
        return torch.stack([torch.stack([self._logits(int(f[0, 0]), row[:p + 1]) for p in range(len(row))])
                            for f, row in zip(audio_features, tokens.tolist())])


def mel_of(key, frames: int = 300) -> torch.Tensor:
    """A synthetic mel whose loudest bin is `key` ("silence": flat)."""
    mel = torch.full((80, frames), -1.5)
    if key != "silence":
        mel[key] = 1.0
    return mel


def text_of(result) -> str:
    return TOK.decode(result.tokens)


NO_TS = dict(without_timestamps=True)


# ----------------------------------------------------------------------------------------------------------
# the zoo.decoding extension: processors that see each row's history


class NoRepeat(LogitProcessor):
    """Bans the row's previous token; records the histories it was shown."""

    needs_history = True

    def __init__(self):
        self.seen = []

    def __call__(self, logits, seen, history):
        self.seen.append((history.step, history.tokens.tolist()))
        if history.step > 0:
            logits = logits.clone()
            logits[torch.arange(len(logits)), history.tokens[:, -1]] = -math.inf
        return logits


def test_history_processors_see_each_rows_tokens_in_sampling_and_beam_search():
    # the toy's greedy path is A C <end>; banning a repeat changes nothing there but the histories are checked
    options = CoreOptions(max_new_tokens=8, temperature=0.0)
    rule = NoRepeat()
    [greedy] = core_decode(TableModel(), [[START]], options, [TokenState(EOT)], processors=[rule], logprobs=True)
    assert greedy.tokens == [1, 3, EOT]
    assert rule.seen == [(0, [[]]), (1, [[1]]), (2, [[1, 3]])]
    assert greedy.sum_logprob == pytest.approx(math.log(0.6 * 0.6 * 0.8))  # the log-prob of every token, end included

    rule = NoRepeat()
    beam = CoreOptions(max_new_tokens=8, temperature=0.0, beam_size=2, length_penalty=0.0)
    [candidates] = beam_search(TableModel(), [[START]], beam, [TokenState(EOT)], processors=[rule])
    assert [c.tokens for c in candidates] == [[2, EOT], [1, 3, EOT]]
    # step 1: the beams are A and B (one row each); step 2: A's continuations C and D (B finished)
    assert rule.seen[1] == (1, [[1], [2]]) and rule.seen[2] == (2, [[1, 3], [1, 4]])


def test_logprobs_are_taken_before_temperature():
    # sampling at temperature 5 with one possible token per step: the log-prob is that of temperature 1
    options = CoreOptions(max_new_tokens=8, temperature=5.0, top_k=1, seed=0)
    [state] = core_decode(TableModel(), [[START]], options, [TokenState(EOT)], logprobs=True)
    assert state.tokens == [1, 3, EOT] and state.sum_logprob == pytest.approx(math.log(0.288))


# ----------------------------------------------------------------------------------------------------------
# options


@pytest.mark.parametrize("fields, message", [
    (dict(beam_size=5, best_of=5), "beam_size=5 and best_of=5 cannot be given together"),
    (dict(best_of=5), r"best_of=5 needs temperature > 0"),
    (dict(patience=2.0), r"patience=2.0 needs beam_size"),
    (dict(beam_size=5, temperature=0.4), r"beam_size=5 needs temperature=0"),
    (dict(language="xx"), r"language='xx' is not allowed; language must be None \(detect the language\) or a "
                          r"language code, one of en, zh, de"),
    (dict(task="summarize"), r"task='summarize' is not allowed; task must be 'transcribe' or 'translate'"),
    (dict(temperature=-1.0), r"temperature=-1.0 is not allowed"),
    (dict(length_penalty=2.0, beam_size=2), r"length_penalty=2.0 is not allowed; .* alpha in \[0, 1\]"),
    (dict(suppress_tokens="-1,x"), r"suppress_tokens='-1,x' is not allowed"),
    (dict(prompt=[1, -2]), r"prompt=\[1, -2\] is not allowed"),
    (dict(sample_len=0), r"sample_len=0 is not allowed; sample_len must be None or an integer >= 1"),
])
def test_refused_options(fields, message):
    with pytest.raises(ValueError, match=f"DecodingOptions.{message}"):
        DecodingOptions(**fields)


def test_options_are_normalised_and_checked_against_the_model():
    assert DecodingOptions(suppress_tokens="-1,5").suppress_tokens == (-1, 5)
    assert DecodingOptions(prompt=[3, 4]).prompt == (3, 4)
    model = ScriptedWhisper({3: Script(fixed(W["the"]))})
    with pytest.raises(ValueError, match=r"language='es' is not one of this model's languages; allowed: en, de, fr"):
        decode(model, mel_of(3), DecodingOptions(language="es"))
    last = TOK.vocab_size - 1
    with pytest.raises(ValueError, match=rf"suppress_tokens holds token id 99999.*allowed ids: 0..{last}"):
        decode(model, mel_of(3), DecodingOptions(suppress_tokens=[99999]))
    with pytest.raises(ValueError, match=r"transcribe\(\) sets prompt itself; pass task=, language=, temperature="):
        transcribe(model, torch.zeros(SAMPLE_RATE), prompt="the")
    with pytest.raises(ValueError, match=r"temperature must be a number >= 0 or a non-empty sequence"):
        transcribe(model, torch.zeros(SAMPLE_RATE), temperature=())
    with pytest.raises(ValueError, match=r"DecodingOptions.patience=0.0 is not allowed"):  # before any decoding
        transcribe(model, torch.zeros(SAMPLE_RATE), patience=0.0)


# ----------------------------------------------------------------------------------------------------------
# language detection and no-speech


def test_language_detection_only_language_tokens_compete():
    german = Script(fixed(W["hello"]), languages={"en": 0.125, "de": 0.625, "fr": 0.25}, sot_rest=0.6)
    english = Script(fixed(W["the"]), languages={"en": 0.7, "de": 0.2, "fr": 0.1})
    model = ScriptedWhisper({5: german, 9: english})
    codes, probs = detect_language(model, [mel_of(5, 200), mel_of(9, 450)])
    # " the" (0.6) beats every language token at <|startoftranscript|> of the first clip, but only languages count
    assert codes == ["de", "en"]
    assert probs[0] == pytest.approx({"en": 0.125, "de": 0.625, "fr": 0.25}, abs=1e-6)
    assert probs[1] == pytest.approx({"en": 0.7, "de": 0.2, "fr": 0.1}, abs=1e-6)
    assert detect_language(model, mel_of(9))[0] == "en"

    # decode() detects per clip and writes the language into each clip's prompt
    results = decode(model, [mel_of(5), mel_of(9)], DecodingOptions(**NO_TS))
    assert [r.language for r in results] == ["de", "en"] and [r.text for r in results] == ["hello", "the"]
    assert results[0].language_probs["de"] == pytest.approx(0.625, abs=1e-6)
    assert TOK.sot_sequence("de", "transcribe") == model.prompts[0] and TOK.language_token("en") in model.prompts[1]
    given = decode(model, mel_of(5), DecodingOptions(language="fr", **NO_TS))
    assert given.language == "fr" and given.language_probs is None


def test_no_speech_prob_is_read_at_the_start_of_transcript():
    model = ScriptedWhisper({4: Script(fixed(W["thank"], W["you"]), no_speech=0.8, languages={"en": 1.0})})
    result = decode(model, mel_of(4), DecodingOptions(**NO_TS))
    assert result.no_speech_prob == pytest.approx(0.8, abs=1e-6)
    assert result.text == "thank you" and result.avg_logprob == pytest.approx(0.0, abs=1e-6)


# ----------------------------------------------------------------------------------------------------------
# logit filters


def test_blank_and_end_of_text_are_suppressed_at_the_first_step_only():
    def next(generated):
        if not generated:
            return {W[" "]: 0.5, TOK.eot: 0.3, W["cat"]: 0.2}
        return {TOK.eot: 0.6, W[" "]: 0.4}

    model = ScriptedWhisper({2: Script(next)})
    result = decode(model, mel_of(2), DecodingOptions(**NO_TS))
    assert result.tokens == [W["cat"]] and result.text == "cat"
    # P(cat) = 0.2 among what the model said, the end then 0.6 (the log-probs are after the filter: cat is 1)
    assert result.sum_logprob == pytest.approx(math.log(0.6), abs=1e-6)
    assert decode(model, mel_of(2), DecodingOptions(suppress_blank=False, **NO_TS)).tokens == [W[" "]]


def test_suppressed_tokens_are_never_emitted():
    def next(generated):
        return {W["♪"]: 0.5, W["dog"]: 0.3, W["cat"]: 0.2} if len(generated) < 3 else {TOK.eot: 1.0}

    model = ScriptedWhisper({7: Script(next)})
    assert W["♪"] in TOK.non_speech_tokens
    assert decode(model, mel_of(7), DecodingOptions(**NO_TS)).tokens == [W["dog"]] * 3  # "-1": non-speech
    assert decode(model, mel_of(7), DecodingOptions(suppress_tokens="", **NO_TS)).tokens == [W["♪"]] * 3
    explicit = decode(model, mel_of(7), DecodingOptions(suppress_tokens=[-1, W["dog"]], beam_size=2, **NO_TS))
    assert explicit.tokens == [W["cat"]] * 3


def rule_mask(history_tokens: list[int], logits=None, max_initial: float | None = 1.0) -> torch.Tensor:
    """Which tokens ApplyTimestampRules leaves allowed after `history_tokens`."""
    rules = ApplyTimestampRules(TOK, TOK.vocab_size, max_initial)
    history = TokenHistory(1, 16, "cpu")
    for token in history_tokens:
        history.append(torch.tensor([token]))
    if logits is None:  # every text token equally likely, the timestamps far less (not forced)
        logits = torch.zeros(1, TOK.vocab_size)
        logits[0, TOK.timestamp_begin:] = -10.0
    return rules(logits, None, history)[0] > -math.inf


def allowed_times(mask) -> list[float]:
    return [TOK.timestamp_seconds(t) for t in range(TOK.timestamp_begin, TOK.vocab_size) if mask[t]]


def test_timestamp_rules():
    text = slice(0, TOK.eot)
    # the first token is a timestamp of at most max_initial_timestamp (1.0 s: 51 of them)
    first = rule_mask([])
    assert not first[:TOK.timestamp_begin].any() and allowed_times(first) == pytest.approx(
        [i * 0.02 for i in range(51)])
    assert allowed_times(rule_mask([], max_initial=None))[-1] == 30.0
    # after an opening timestamp: text (or the end), no timestamp
    after_open = rule_mask([ts(0.5)])
    assert after_open[text].all() and after_open[TOK.eot] and not allowed_times(after_open)
    # after text then a closing timestamp: another timestamp (not earlier; the same one starts the next segment)
    # or the end, never text
    after_close = rule_mask([ts(0.5), W["the"], ts(1.2)])
    assert not after_close[text].any() and after_close[TOK.eot]
    assert allowed_times(after_close)[0] == pytest.approx(1.2) and len(allowed_times(after_close)) == 1501 - 60
    # inside a segment: a closing timestamp must come after its opening one (no empty segment)
    inside = rule_mask([ts(0.5), W["the"], ts(1.2), ts(1.2), W["cat"]])
    assert inside[text].all() and allowed_times(inside)[0] == pytest.approx(1.22)
    assert not rule_mask([ts(0.5), W["the"]])[ts(0.5)] and rule_mask([ts(0.5), W["the"]])[ts(0.52)]
    # <|notimestamps|> is never sampled with timestamps on
    assert not rule_mask([ts(0.5), W["the"]])[TOK.no_timestamps]


def test_timestamp_is_forced_when_the_timestamps_together_beat_every_text_token():
    def logits_with(time_mass):
        probs = torch.full((1, TOK.vocab_size), 1e-12)
        probs[0, W["cat"]] = 0.3
        probs[0, W["dog"]] = 0.7 - time_mass
        for i in range(10):  # spread over 10 timestamps: each alone is far below " cat"
            probs[0, ts(2.0 + 0.02 * i)] = time_mass / 10
        return probs.log()

    after_text = [ts(0.0), W["the"]]
    assert not rule_mask(after_text, logits_with(0.5))[:TOK.timestamp_begin].any()  # 0.5 > 0.3, 0.2: forced
    assert rule_mask(after_text, logits_with(0.25))[W["cat"]]  # 0.25 < 0.45 (" dog"): text may still win


def test_timestamp_rules_end_to_end():
    """A script that wants to break every rule: the decoded sequence is the best legal one."""
    late, spread = ts(5.0), [ts(2.0 + 0.02 * i) for i in range(10)]

    def next(generated):
        n = len(generated)
        if n == 0:
            return {late: 0.9, ts(0.5): 0.05, W["dog"]: 0.05}  # the first timestamp may be 1.0 s at most
        if n == 1:
            return {ts(3.0): 0.9, W["the"]: 0.1}  # a timestamp right after the opening one: text instead
        if n == 2:
            return {W["cat"]: 0.3, **{t: 0.07 for t in spread}}  # timestamps win together: forced
        if n == 3:
            return {ts(0.2): 0.6, W["sat"]: 0.3, TOK.eot: 0.1}  # earlier than 2.0 s: banned; text after a closing one
        return {TOK.eot: 1.0}                                   # timestamp is banned too, so: the end

    model = ScriptedWhisper({8: Script(next)})
    result = decode(model, mel_of(8), DecodingOptions())
    assert result.tokens == [ts(0.5), W["the"], ts(2.0)]
    assert TOK.decode_with_timestamps(result.tokens) == "<|0.50|> the<|2.00|>"


def test_no_timestamp_past_the_end_of_each_clips_audio():
    """A 3 s clip cannot close a segment at 5 s (whisper's 30 s padding would allow it); a 6 s clip in the same
    batch can."""
    def next(generated):
        if len(generated) == 0:
            return {ts(0.5): 1.0}
        if len(generated) == 1:
            return {W["the"]: 1.0}
        if len(generated) == 2:
            return {ts(5.0): 0.8, ts(2.5): 0.15, TOK.eot: 0.05}
        return {TOK.eot: 1.0}

    model = ScriptedWhisper({8: Script(next)})
    for options in (DecodingOptions(), DecodingOptions(beam_size=3), DecodingOptions(temperature=0.5, best_of=2)):
        short, long = decode(model, [mel_of(8, frames=300), mel_of(8, frames=600)], options)
        assert short.tokens == [ts(0.5), W["the"], ts(2.5)]
        assert long.tokens == [ts(0.5), W["the"], ts(5.0)]


# ----------------------------------------------------------------------------------------------------------
# search, ranking, results


def test_greedy_beam_and_best_of_and_the_result_numbers():
    # greedy takes " the" (0.4), then two of four equally likely words; " dog" (0.35) ends at once
    def next(generated):
        if not generated:
            return {W["the"]: 0.4, W["dog"]: 0.35, W["cat"]: 0.25}
        if generated[0] == W["dog"] or len(generated) >= 3:
            return {TOK.eot: 1.0}
        return {W["cat"]: 0.25, W["sat"]: 0.25, W["on"]: 0.25, W["mat"]: 0.25}

    model = ScriptedWhisper({6: Script(next)})
    greedy = decode(model, mel_of(6), DecodingOptions(**NO_TS))
    assert greedy.tokens == [W["the"], W["cat"], W["cat"]]
    assert greedy.avg_logprob == pytest.approx(math.log(0.4 * 0.25 * 0.25) / 4, abs=1e-6)  # / (len + 1)
    assert greedy.temperature == 0.0 and greedy.compression_ratio == pytest.approx(compression_ratio("the cat cat"))
    beam = decode(model, mel_of(6), DecodingOptions(beam_size=3, **NO_TS))
    assert beam.tokens == [W["dog"]] and beam.avg_logprob == pytest.approx(math.log(0.35) / 2, abs=1e-6)
    best = decode(model, mel_of(6), DecodingOptions(temperature=1.0, best_of=20, seed=0, **NO_TS))
    assert best.tokens == [W["dog"]] and best.temperature == 1.0  # log(0.35) / 1 beats log(0.025) / 3


def test_compression_ratio_is_whispers():
    assert compression_ratio("the " * 40) > 5 and compression_ratio("the cat sat on the mat") < 1.2
    assert compression_ratio("") == 0.0


def test_batched_decoding_of_clips_of_different_lengths_equals_each_alone():
    scripts = {3: Script(fixed(ts(0.0), W["the"], W["cat"], ts(1.0))),
               11: Script(fixed(ts(0.0), W["dog"], W["ran"], p=0.7), languages={"de": 1.0}),
               20: Script(fixed(ts(0.0), W["hello"], W["world"], W["hello"], p=0.9), no_speech=0.3)}
    model = ScriptedWhisper(scripts)
    mels = [mel_of(3, 3000), mel_of(11, 120), mel_of(20, 1717)]
    for options in (DecodingOptions(), DecodingOptions(beam_size=3), DecodingOptions(prompt="the cat sat")):
        batch = decode(model, mels, options)
        for mel, result in zip(mels, batch):
            alone = decode(model, mel, options)
            assert (result.tokens, result.language) == (alone.tokens, alone.language)
            assert result.avg_logprob == pytest.approx(alone.avg_logprob, abs=1e-6)
            assert result.no_speech_prob == pytest.approx(alone.no_speech_prob, abs=1e-6)
    assert [r.text for r in batch] == ["the cat", "dog ran", "hello world hello"]
    assert model.windows[-3:] == [(3, 3000), (11, 120), (20, 1717)]  # each clip keeps its own length


# ----------------------------------------------------------------------------------------------------------
# transcribe: windows, fallback, silence, segments, prompts


def tone(frequency: float, seconds: float) -> torch.Tensor:
    t = torch.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return 0.5 * torch.sin(2 * math.pi * frequency * t)


FREQUENCIES = (300.0, 1000.0, 3000.0)


@pytest.fixture(scope="module")
def bins() -> list[int]:
    """The loudest mel bin of each tone: the fake model's script key for a window of that tone."""
    return [int(log_mel_spectrogram(tone(f, 1.0)).mean(-1).argmax()) for f in FREQUENCIES]


def test_long_audio_is_decoded_in_windows_with_times_offset_and_previous_text_prompts(bins):
    a, b, c = bins
    scripts = {a: Script(fixed(ts(0.0), W["the"], W["cat"], ts(2.0), ts(2.0), W["sat"], W["on"], W["the"],
                               W["mat"], ts(5.0))),
               b: Script(fixed(ts(0.0), W["dog"], W["ran"], ts(4.0))),
               c: Script(fixed(ts(1.0), W["hello"], W["world"], ts(3.0)))}
    audio = torch.cat([tone(300, 30), tone(1000, 30), tone(3000, 15)])  # 75 s: windows of 30, 30 and 15 s

    for condition in (True, False):
        model = ScriptedWhisper(scripts)
        result = transcribe(model, audio, condition_on_previous_text=condition)
        # the language detection's encoding of the first window is the first window's: three encoder passes
        assert [(w, frames) for w, frames in model.windows] == [(a, 3000), (b, 3000), (c, 1500)]
        assert [(s["start"], s["end"], s["text"]) for s in result["segments"]] == [
            (0.0, 2.0, " the cat"), (2.0, 5.0, " sat on the mat"), (30.0, 34.0, " dog ran"),
            (61.0, 63.0, " hello world")]
        assert [s["seek"] for s in result["segments"]] == [0, 0, 3000, 6000]
        assert result["text"] == " the cat sat on the mat dog ran hello world" and result["language"] == "en"
        first, second, third = model.prompts  # beam search prefills each window's prompt once
        assert first[0] == TOK.sot
        if condition:  # the previous windows' tokens, timestamps included, after <|startofprev|>
            assert second[:11] == [TOK.sot_prev, *result["segments"][0]["tokens"], *result["segments"][1]["tokens"]]
            assert third[0] == TOK.sot_prev and third.index(TOK.sot) == 1 + 10 + 4
        else:
            assert TOK.sot_prev not in second and TOK.sot_prev not in third and second[0] == TOK.sot


def test_the_window_moves_to_the_last_complete_segment(bins):
    a, b, _ = bins
    scripts = {a: Script(fixed(ts(0.0), W["the"], W["cat"], ts(10.0), ts(10.0), W["sat"])),  # unfinished segment
               b: Script(fixed(ts(0.0), W["dog"], W["ran"], ts(20.0)))}
    model = ScriptedWhisper(scripts)
    result = transcribe(model, torch.cat([tone(300, 20), tone(1000, 20)]), beam_size=None)
    # window 1 (0-30 s, mostly the first tone) closes one segment at 10 s; window 2 starts there (10-40 s,
    # mostly the second tone)
    assert model.windows == [(a, 3000), (b, 3000)]
    assert [(s["start"], s["end"], s["text"], s["seek"]) for s in result["segments"]] == [
        (0.0, 10.0, " the cat", 0), (10.0, 30.0, " dog ran", 1000)]


def test_silence_gives_no_text_and_is_not_retried(bins):
    a = bins[0]
    def hallucination(generated):  # " thank you" on silence, but the model does not believe it
        if len(generated) < 2:
            return {W["thank"]: 0.25, W["you"]: 0.25, W["w1"]: 0.25, W["w2"]: 0.25}
        return {TOK.eot: 0.4, W["w3"]: 0.3, W["w4"]: 0.3}

    scripts = {"silence": Script(hallucination, no_speech=0.9), a: Script(fixed(W["hello"], W["world"]))}
    model = ScriptedWhisper(scripts)
    result = transcribe(model, torch.zeros(10 * SAMPLE_RATE), without_timestamps=True, beam_size=None)
    assert result["text"] == "" and result["segments"] == []
    assert len(model.prompts) == 1  # decoded once: silence is not a reason for temperature fallback

    # speech then silence: the silent window is skipped, the speech kept
    model = ScriptedWhisper(scripts)
    result = transcribe(model, torch.cat([tone(300, 30), torch.zeros(20 * SAMPLE_RATE)]), without_timestamps=True)
    assert [(s["start"], s["end"], s["text"]) for s in result["segments"]] == [(0.0, 30.0, " hello world")]

    # a high no-speech probability alone is not silence: a confident transcript is kept
    confident = {"silence": Script(fixed(W["hello"]), no_speech=0.9)}
    result = transcribe(ScriptedWhisper(confident), torch.zeros(5 * SAMPLE_RATE), without_timestamps=True)
    assert result["text"] == " hello" and result["segments"][0]["no_speech_prob"] == pytest.approx(0.9, abs=1e-6)


def test_a_looping_decoder_falls_back_to_a_higher_temperature(bins):
    def next(generated):  # greedy loops on " the"; sampling soon says " cat sat"
        if not generated:
            return {W["the"]: 1.0}
        return {W["the"]: 0.5, W["cat"]: 0.45, TOK.eot: 0.05} if generated[-1] == W["the"] else \
            {W["sat"]: 1.0} if generated[-1] == W["cat"] else {TOK.eot: 1.0}

    model = ScriptedWhisper({bins[0]: Script(next)})
    greedy = decode(model, mel_of(bins[0]), DecodingOptions(**NO_TS))
    assert greedy.tokens == [W["the"]] * 32 and greedy.compression_ratio > 2.4  # sample_len: 64 // 2
    assert greedy.avg_logprob == pytest.approx(31 * math.log(0.5) / 33, abs=1e-6)  # above -1: only the ratio fails

    result = transcribe(model, tone(300, 8), without_timestamps=True, beam_size=None, seed=0)
    [segment] = result["segments"]
    assert segment["temperature"] == 0.2 and segment["compression_ratio"] < 2.4
    n_the = segment["tokens"].count(W["the"])
    assert segment["tokens"] == [W["the"]] * n_the + [W["cat"], W["sat"]]
    assert segment["avg_logprob"] == pytest.approx(((n_the - 1) * math.log(0.5) + math.log(0.45)) / (n_the + 3),
                                                   abs=1e-6)


def test_a_low_average_log_prob_falls_back_to_a_higher_temperature(bins):
    words = [W[f"w{i}"] for i in range(10)]

    def next(generated):
        if not generated:  # greedy takes w0 (0.35), the unsure path; w1 (0.3) ends at once
            return {words[0]: 0.35, words[1]: 0.3, **{w: 0.05 for w in words[2:9]}}
        if generated[0] == words[1]:
            return {TOK.eot: 1.0}
        n = len(generated)
        if n == 6:
            return {TOK.eot: 0.3, **{w: 0.07 for w in words[:10]}}
        return {words[n]: 0.19, **{w: 0.09 for w in words if w != words[n]}}

    model = ScriptedWhisper({bins[0]: Script(next)})
    greedy = decode(model, mel_of(bins[0]), DecodingOptions(**NO_TS))
    assert greedy.tokens == words[:6] and greedy.compression_ratio < 2.4
    assert greedy.avg_logprob == pytest.approx((math.log(0.35) + 5 * math.log(0.19) + math.log(0.3)) / 7, abs=1e-6)
    assert greedy.avg_logprob < -1

    result = transcribe(model, tone(300, 8), without_timestamps=True, beam_size=None, seed=0)
    [segment] = result["segments"]
    assert segment["tokens"] == [words[1]] and segment["temperature"] == 0.2
    assert segment["avg_logprob"] == pytest.approx(math.log(0.3) / 2, abs=1e-6)


def test_previous_text_is_dropped_after_a_high_temperature(bins):
    a, b, _ = bins
    scripts = {a: Script(fixed(W["the"], W["cat"])), b: Script(fixed(W["dog"]))}
    model = ScriptedWhisper(scripts)
    audio = torch.cat([tone(300, 30), tone(1000, 10)])
    result = transcribe(model, audio, temperature=1.0, without_timestamps=True, best_of=2, seed=0)
    assert result["text"] == " the cat dog"
    assert all(TOK.sot_prev not in p for p in model.prompts)  # decoded at 1.0 > 0.5: no previous text
    model = ScriptedWhisper(scripts)
    transcribe(model, audio, temperature=0.4, without_timestamps=True, best_of=2, seed=0, initial_prompt="hello")
    assert model.prompts[0][:2] == [TOK.sot_prev, W["hello"]]  # 0.4: conditioned, on the initial prompt too
    assert model.prompts[-1][:4] == [TOK.sot_prev, W["hello"], W["the"], W["cat"]]


def test_several_files_are_transcribed_together_and_each_equals_alone(bins):
    a, b, c = bins
    scripts = {a: Script(fixed(ts(0.0), W["the"], W["cat"], ts(2.0)), languages={"de": 0.9, "en": 0.1}),
               b: Script(fixed(ts(0.0), W["dog"], W["ran"], ts(1.5))),
               c: Script(fixed(ts(0.5), W["hello"], ts(1.0)), languages={"fr": 1.0})}
    files = [torch.cat([tone(300, 30), tone(1000, 12)]), tone(3000, 4), tone(1000, 65)]
    together = transcribe(ScriptedWhisper(scripts), files)
    alone = [transcribe(ScriptedWhisper(scripts), f) for f in files]
    assert together == alone
    assert [r["language"] for r in together] == ["de", "fr", "en"]
    assert [len(r["segments"]) for r in together] == [2, 1, 3]
    assert [s["start"] for s in together[2]["segments"]] == [0.0, 30.0, 60.0]


class ConsecutiveWhisper(ScriptedWhisper):
    """A scripted model trained to translate from the transcript: a row with <|translate|> follows `translations`
    (keyed as the scripts), every other row its script."""

    config = type("Config", (), {"translate_from_transcript": True})()

    def __init__(self, scripts: dict, translations: dict):
        super().__init__(scripts)
        self.translations = translations

    def _logits(self, key: int, row: list[int]) -> torch.Tensor:
        if TOK.translate not in row:
            return super()._logits(key, row)
        start = row.index(TOK.translate) + 1 + (row[row.index(TOK.translate) + 1:][:1] == [TOK.no_timestamps])
        logits = torch.full((self.vocab_size,), FLOOR)
        for token, p in self.translations[self.keys[key]](tuple(row[start:])).items():
            logits[token] = math.log(p)
        return logits


def test_a_model_that_translates_from_the_transcript_is_prompted_with_each_windows_transcript(bins):
    a, b, _ = bins
    scripts = {a: Script(fixed(ts(0.0), W["the"], W["cat"], ts(2.0))), b: Script(fixed(ts(0.0), W["dog"], ts(1.0)))}
    translations = {a: fixed(ts(0.0), W["hello"], W["world"], ts(2.0)), b: fixed(ts(0.0), W["thank"], ts(1.0))}
    model = ConsecutiveWhisper(scripts, translations)
    audio = torch.cat([tone(300, 30), tone(1000, 10)])
    result = transcribe(model, audio, task="translate", language="de")
    assert result["text"] == " hello world thank"
    translating = [p for p in model.prompts if TOK.translate in p]
    # each window's translation reads that window's transcript, text tokens only, never the translation so far
    assert [p[:p.index(TOK.sot)] for p in translating] == [[TOK.sot_prev, W["the"], W["cat"]],
                                                            [TOK.sot_prev, W["dog"]]]
    assert transcribe(model, audio, language="de")["text"] == " the cat dog"  # transcription is as before
    # English speech translated into English is its transcript: the model never learnt English -> English
    assert transcribe(model, audio, task="translate", language="en")["text"] == " the cat dog"
    model.prompts.clear()  # a prefix is the translation's: the transcript is heard without it
    transcribe(model, audio, task="translate", language="de", prefix="hello")
    assert [p[:3] for p in model.prompts if TOK.translate in p][0] == [TOK.sot_prev, W["the"], W["cat"]]
    plain = ScriptedWhisper(scripts)  # a model without the setting translates as whisper: no transcript
    transcribe(plain, audio, task="translate", language="de", condition_on_previous_text=False)
    assert all(TOK.sot_prev not in p for p in plain.prompts)
    with pytest.raises(ValueError, match=r"translate_from_transcript\), so initial_prompt has no place"):
        transcribe(model, audio, task="translate", initial_prompt="the")
    # decode()'s per-window prompts, which the recipe's evaluation gives it: one per window of a batch
    mels = [mel_of(a), mel_of(b)]
    results = decode(model, mels, DecodingOptions(task="translate", language="en"), prompts=[[W["the"]], [W["dog"]]])
    assert [text_of(r) for r in results] == [" hello world", " thank"]
    assert [p[:2] for p in model.prompts[-2:]] == [[TOK.sot_prev, W["the"]], [TOK.sot_prev, W["dog"]]]
    with pytest.raises(ValueError, match=r"decode\(\) prompts: one per window of a batch; got 1 for 2 windows"):
        decode(model, mels, prompts=["the"])
    with pytest.raises(ValueError, match=r"got 1 for one window \(a single window takes options.prompt\)"):
        decode(model, mels[0], prompts=["the"])
