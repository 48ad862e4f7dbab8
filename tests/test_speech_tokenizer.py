"""Whisper's multitask tokenizer: BPE round trips, the special-token layout, timestamps, save/load, errors."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zoo.speech.tokenizer import LANGUAGES, META_FILE, N_TIMESTAMPS, WhisperTokenizer

CORPUS = [
    "The quick brown fox jumps over the lazy dog. It's a \"test\" (of sorts) -- with [brackets] and {braces}.",
    "El rápido zorro marrón salta sobre el perro perezoso. ¿Dónde está la biblioteca? ¡Vamos!",
    "Le renard brun rapide saute par-dessus le chien paresseux. C'est l'été, n'est-ce pas ?",
    "Der schnelle braune Fuchs springt über den faulen Hund. Straße, Größe, Übung.",
    "敏捷的棕色狐狸跳过了懒狗。今天天气很好，我们去公园散步吧。你好，世界！",
    "♪ la la la ♪♪ music plays ♪ <laughs> @user #tag 1 + 2 = 3; a/b: c_d ^e ~f |g| `h`",
] * 30
LANGS = ["en", "es", "fr", "de", "zh"]
N_SPECIAL = 2 + len(LANGS) + 6 + N_TIMESTAMPS  # eot, sot, languages, task tokens, timestamps
N_BPE = 256 + 200


@pytest.fixture(scope="module")
def tok() -> WhisperTokenizer:
    return WhisperTokenizer.train(CORPUS, vocab_size=N_BPE + N_SPECIAL, languages=LANGS)


# ----------------------------------------------------------------------------------------------------------
# text


@settings(max_examples=300, deadline=None)
@given(st.text() | st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)))
def test_round_trips_any_text(tok, text):
    ids = tok.encode(text)
    assert all(0 <= i < tok.eot for i in ids)
    assert tok.decode(ids) == text


def test_round_trips_the_corpus_languages(tok):
    for line in CORPUS[:6]:
        assert tok.decode(tok.encode(line)) == line
    assert len(tok.encode(CORPUS[4])) < len(CORPUS[4].encode())  # merges learned Chinese byte pairs


@pytest.mark.parametrize("text", ["<|en|>", "<|endoftext|>", "<|startoftranscript|>", "<|0.00|>",
                                  "<|notimestamps|> hi <|transcribe|>", "<|zz|>"])
def test_user_text_spelling_a_special_token_stays_text(tok, text):
    ids = tok.encode(text)
    assert all(i < tok.eot for i in ids)  # only BPE pieces, never a special or timestamp id
    assert tok.encode("<|en|>") != [tok.language_token("en")]
    assert tok.decode(ids) == text and tok.decode_with_timestamps(ids) == text


def test_decode_drops_special_and_timestamp_tokens(tok):
    text = tok.encode(" Hello world.")
    ids = [tok.sot_prev, *tok.encode(" before"), *tok.sot_sequence("en", "transcribe", timestamps=True),
           tok.timestamp_token(0.0), *text, tok.timestamp_token(1.08), tok.no_speech, tok.sot_lm, tok.eot]
    assert tok.decode(ids) == " before Hello world."
    assert tok.decode_with_timestamps(ids) == " before<|0.00|> Hello world.<|1.08|>"
    assert tok.decode([tok.eot, tok.sot, *tok.all_language_tokens, tok.translate]) == ""


def test_decode_rejects_ids_out_of_range(tok):
    for bad in (-1, tok.vocab_size):
        with pytest.raises(ValueError, match=f"token id {bad} is out of range.*allowed: 0..{tok.vocab_size - 1}"):
            tok.decode([bad])


# ----------------------------------------------------------------------------------------------------------
# special tokens


def test_special_token_layout(tok):
    n_bpe = tok.bpe.hf.get_vocab_size()
    assert n_bpe == N_BPE  # the corpus is big enough for every requested merge
    assert tok.vocab_size == N_BPE + N_SPECIAL == 456 + 1514
    assert (tok.eot, tok.sot) == (456, 457)
    assert tok.languages == ("en", "es", "fr", "de", "zh")
    assert tok.all_language_tokens == (458, 459, 460, 461, 462)
    assert [tok.language_token(code) for code in LANGS] == [458, 459, 460, 461, 462]
    assert (tok.translate, tok.transcribe, tok.sot_lm, tok.sot_prev, tok.no_speech, tok.no_timestamps) == (
        463, 464, 465, 466, 467, 468)
    assert tok.timestamp_begin == 469 and tok.vocab_size - tok.timestamp_begin == 1501
    assert list(tok.special_tokens) == ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|es|>", "<|fr|>",
                                        "<|de|>", "<|zh|>", "<|translate|>", "<|transcribe|>", "<|startoflm|>",
                                        "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]
    assert list(tok.special_tokens.values()) == list(range(456, 469))


def test_sot_sequence(tok):
    assert tok.sot_sequence("en", "transcribe") == [tok.sot, 458, tok.transcribe, tok.no_timestamps]
    assert tok.sot_sequence("zh", "translate", timestamps=True) == [tok.sot, 462, tok.translate]
    assert tok.sot_sequence(None, "transcribe", timestamps=True) == [tok.sot, tok.transcribe]  # detection
    with pytest.raises(ValueError, match="unknown task 'summarize'; allowed tasks: transcribe, translate"):
        tok.sot_sequence("en", "summarize")


def test_timestamp_arithmetic(tok):
    begin = tok.timestamp_begin
    assert tok.timestamp_token(0) == begin
    assert tok.timestamp_token(0.02) == begin + 1
    assert tok.timestamp_token(1.08) == begin + 54
    assert tok.timestamp_token(30.0) == begin + 1500 == tok.vocab_size - 1
    assert tok.timestamp_token(1.009) == begin + 50 and tok.timestamp_token(1.011) == begin + 51  # nearest 20 ms
    for i in range(N_TIMESTAMPS):
        seconds = tok.timestamp_seconds(begin + i)
        assert seconds == pytest.approx(i * 0.02, abs=1e-9)
        assert tok.timestamp_token(seconds) == begin + i
    assert tok.decode_with_timestamps([begin + 54]) == "<|1.08|>"
    assert tok.decode_with_timestamps([begin, tok.vocab_size - 1]) == "<|0.00|><|30.00|>"
    for bad in (-0.02, 30.02, float("nan"), float("inf"), "1.0"):
        with pytest.raises(ValueError, match=r"number of seconds in \[0, 30\]"):
            tok.timestamp_token(bad)
    with pytest.raises(ValueError, match=f"not a timestamp token.*allowed: {begin}..{tok.vocab_size - 1}"):
        tok.timestamp_seconds(tok.no_timestamps)


def test_non_speech_and_blank_tokens(tok):
    suppressed = set(tok.non_speech_tokens)
    assert list(tok.non_speech_tokens) == sorted(suppressed)
    for symbol in '"#()*+/:;<=>@[\\]^_`{|}~':  # every byte is a token, so each lone ASCII symbol is one
        assert tok.encode(symbol)[0] in suppressed
    assert tok.encode("♪")[0] in suppressed  # the corpus has "♪": a single token (or its E2 99 prefix)
    for token in suppressed:
        assert token < tok.eot
        piece = tok.bpe.token_bytes(token)
        if piece == "♪".encode()[:2]:  # the shared prefix of the musical symbols U+2640..U+267F
            continue
        text = piece.decode("utf-8")
        assert text.strip() and not any(char.isalnum() for char in text), text
    for allowed in (" ", "a", " the", ".", ",", "?", "!", "'", "-", "1"):  # speech punctuation is not suppressed
        assert tok.encode(allowed)[0] not in suppressed, allowed
    assert tok.blank_tokens == (*tok.encode(" "), tok.eot)


# ----------------------------------------------------------------------------------------------------------
# save / load


def test_save_load_identical(tok, tmp_path):
    tok.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokenizer.json", META_FILE]
    meta = json.loads((tmp_path / META_FILE).read_text())  # plain JSON, no pickle
    assert meta["languages"] == LANGS and meta["vocab_size"] == tok.vocab_size
    loaded = WhisperTokenizer.load(tmp_path)
    for text in CORPUS[:6] + ["<|en|> unseen wörds 漢字 🙂", ""]:
        assert loaded.encode(text) == tok.encode(text)
    for name in ("eot", "sot", "translate", "transcribe", "sot_lm", "sot_prev", "no_speech", "no_timestamps",
                 "timestamp_begin", "vocab_size", "languages", "all_language_tokens", "non_speech_tokens",
                 "blank_tokens", "special_tokens"):
        assert getattr(loaded, name) == getattr(tok, name), name


def test_load_errors(tok, tmp_path):
    with pytest.raises(FileNotFoundError, match="no Whisper tokenizer"):
        WhisperTokenizer.load(tmp_path)
    tok.save(tmp_path)
    meta = json.loads((tmp_path / META_FILE).read_text())
    (tmp_path / META_FILE).write_text(json.dumps({**meta, "special_tokens": meta["special_tokens"][::-1]}))
    with pytest.raises(ValueError, match="different special-token layout"):
        WhisperTokenizer.load(tmp_path)
    (tmp_path / META_FILE).write_text(json.dumps({**meta, "languages": ["en", "xx"]}))
    with pytest.raises(ValueError, match="not a valid Whisper tokenizer file.*unknown language code 'xx'"):
        WhisperTokenizer.load(tmp_path)


# ----------------------------------------------------------------------------------------------------------
# languages and training errors


def test_unknown_language_lists_the_allowed_codes(tok):
    with pytest.raises(ValueError, match="language 'ja' \\(japanese\\) is known but.*allowed: en, es, fr, de, zh"):
        tok.language_token("ja")
    with pytest.raises(ValueError, match="language 'xx' is not.*allowed: en, es, fr, de, zh"):
        tok.language_token("xx")
    with pytest.raises(ValueError, match="unknown language code 'english'; allowed codes: en, zh, de, es, .*yue"):
        WhisperTokenizer.train(CORPUS, vocab_size=4000, languages=["en", "english"])


def test_language_table_is_whispers():
    assert len(LANGUAGES) == 100 and list(LANGUAGES)[:5] == ["en", "zh", "de", "es", "ru"]
    assert LANGUAGES["yue"] == "cantonese" and LANGUAGES["haw"] == "hawaiian"


def test_training_errors():
    with pytest.raises(ValueError, match="vocab_size 1000 is too small.*must be >= 1770"):
        WhisperTokenizer.train(CORPUS, vocab_size=1000, languages=LANGS)
    with pytest.raises(ValueError, match="at least one language"):
        WhisperTokenizer.train(CORPUS, vocab_size=4000, languages=[])
    with pytest.raises(ValueError, match="must be distinct, en repeated"):
        WhisperTokenizer.train(CORPUS, vocab_size=4000, languages=["en", "fr", "en"])
    with pytest.raises(ValueError, match="sequence of codes"):
        WhisperTokenizer.train(CORPUS, vocab_size=4000, languages="en")


def test_small_vocab_with_one_language():
    tok = WhisperTokenizer.train(CORPUS, vocab_size=256 + 2 + 1 + 6 + 1501, languages=["en"])
    assert (tok.eot, tok.sot, tok.all_language_tokens, tok.timestamp_begin) == (256, 257, (258,), 265)
    assert tok.vocab_size == 1766 and tok.decode(tok.encode("Straße 漢字")) == "Straße 漢字"


# ----------------------------------------------------------------------------------------------------------
# whole Han characters


def test_whole_han_makes_every_han_character_one_token(tok, tmp_path):
    han = sorted({char for text in CORPUS for char in text if "\u4e00" <= char <= "\u9fff"})
    split = [char for char in han if len(tok.encode(char)) > 1]
    assert len(split) > 10  # the plain byte-level BPE spells most of them in two or three pieces
    whole = WhisperTokenizer.train(CORPUS, vocab_size=N_BPE + N_SPECIAL, languages=LANGS, whole_han=True)
    assert all(len(whole.encode(char)) == 1 for char in han)
    assert whole.vocab_size > tok.vocab_size  # the merges come on top of the requested size
    chinese = CORPUS[4]
    assert whole.encode(chinese) == [i for char in chinese for i in whole.encode(char)]  # none spans two
    for text in CORPUS[:6] + ["漢字 unseen 🙂 字漢", "漢字abc字x", ""]:  # unseen ones spell as bytes; Han then Latin
        assert whole.decode(whole.encode(text)) == text
    whole.save(tmp_path)
    loaded = WhisperTokenizer.load(tmp_path)
    assert loaded.encode(chinese) == whole.encode(chinese) and loaded.vocab_size == whole.vocab_size
