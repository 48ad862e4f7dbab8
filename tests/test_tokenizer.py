"""Tokenizers: exact round trips, end-of-text safety, save/load, clear errors."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zoo.text.tokenizer import (
    BPETokenizer,
    CharTokenizer,
    build_tokenizer,
    load_tokenizer,
    safe_chunks,
)

CORPUS = (
    "def add(a, b):\n    return a + b\n\n\nclass Point:\n    x: int = 0\n"
    "Héllo wörld — naïve café, señor! Ünïcode: 日本語のテキスト, Ελληνικά, русский текст, emoji 🙂🚀.\n"
    "\tTabs\tand  double  spaces\r\nWindows line\r\n<|endoftext|> is just text here.\n"
) * 40
EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    return BPETokenizer.train([CORPUS], vocab_size=300)


@pytest.fixture(scope="module")
def char() -> CharTokenizer:
    return CharTokenizer.train(CORPUS)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_bpe_round_trips_every_string(bpe, text):
    assert bpe.decode(bpe.encode(text)) == text


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=sorted(set(CORPUS))))
def test_char_round_trips_strings_of_its_vocab(char, text):
    assert char.decode(char.encode(text)) == text


def test_bpe_vocab_and_eot(bpe):
    assert bpe.kind == "bpe" and bpe.vocab_size == 300 and bpe.eot_id == 299
    assert bpe.decode([bpe.eot_id]) == ""
    assert bpe.decode(bpe.encode("ab") + [bpe.eot_id] + bpe.encode("cd")) == "abcd"


@pytest.mark.parametrize("text", [EOT, f"x{EOT}y", f"{EOT}{EOT}", f" {EOT}\n", "<|endoftext|"])
def test_user_text_never_becomes_the_eot_token(bpe, text):
    ids = bpe.encode(text)
    assert bpe.eot_id not in ids
    assert bpe.decode(ids) == text
    assert bpe.eot_id not in bpe.encode_batch([text, text])[1]


def test_empty_string_encodes_to_nothing(bpe, char):
    assert bpe.encode("") == [] and char.encode("") == []
    assert bpe.decode([]) == "" and char.decode([]) == ""


def test_bpe_rejects_lone_surrogates_clearly(bpe):
    with pytest.raises(ValueError, match=r"lone surrogate '\\ud800' at position 1"):
        bpe.encode("a\ud800b")


@settings(max_examples=50, deadline=None)
@given(st.text(alphabet=st.characters(), min_size=1))
def test_bpe_round_trips_or_rejects_any_python_string(bpe, text):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        with pytest.raises(ValueError, match="lone surrogate"):
            bpe.encode(text)
    else:
        assert bpe.decode(bpe.encode(text)) == text


def test_char_vocab_is_sorted_set_without_special_tokens(char):
    assert char.kind == "char" and char.eot_id is None
    assert char.chars == "".join(sorted(set(CORPUS))) and char.vocab_size == len(set(CORPUS))
    assert char.encode("de") == [char.chars.index("d"), char.chars.index("e")]


def test_char_unknown_character_error_names_it(char):
    with pytest.raises(ValueError, match=r"character 'Z' at position 3 .*vocabulary \(\d+ characters\)"):
        char.encode("defZ")


def test_out_of_range_ids_are_rejected(bpe, char):
    with pytest.raises(ValueError, match="out of range"):
        bpe.decode([bpe.vocab_size])
    with pytest.raises(ValueError, match="out of range"):
        char.decode([-1])


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_save_load_round_trip(tmp_path, bpe, char, kind):
    tok = {"char": char, "bpe": bpe}[kind]
    tok.save(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert type(loaded) is type(tok)
    assert (loaded.kind, loaded.vocab_size, loaded.eot_id) == (tok.kind, tok.vocab_size, tok.eot_id)
    sample = CORPUS[:500] + EOT
    assert loaded.encode(sample) == tok.encode(sample)
    meta = json.loads((tmp_path / "zoo_tokenizer.json").read_text())
    assert meta["kind"] == kind
    assert not list(tmp_path.glob("*.pkl"))


def test_load_missing_tokenizer_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="zoo_tokenizer.json"):
        load_tokenizer(tmp_path / "nowhere")


def test_build_tokenizer_kinds():
    assert isinstance(build_tokenizer("char", "abc", 0), CharTokenizer)
    assert build_tokenizer("bpe", CORPUS, 280).vocab_size == 280
    with pytest.raises(ValueError, match="allowed kinds: char, bpe"):
        build_tokenizer("word", CORPUS, 300)
    with pytest.raises(ValueError, match="at least 257"):
        build_tokenizer("bpe", CORPUS, 100)


def test_safe_chunks_encode_like_the_whole_text(bpe, char):
    text = CORPUS[:3000] + "x\n\n\n   d\n" + CORPUS[3000:]
    chunks = list(safe_chunks(text, 50))
    assert "".join(chunks) == text and len(chunks) > 10
    for tok in (bpe, char):
        assert [i for ids in tok.encode_batch(chunks) for i in ids] == tok.encode(text)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab1 ,'\n\t\r\u3000é"), max_size=80), st.integers(1, 20))
def test_bpe_chunked_encoding_equals_whole_encoding(bpe, text, chunk_chars):
    chunks = list(safe_chunks(text, chunk_chars))
    assert "".join(chunks) == text
    assert [i for ids in bpe.encode_batch(chunks) for i in ids] == bpe.encode(text)


def test_bpe_token_bytes_are_the_raw_utf8_pieces(bpe):
    from tokenizers import pre_tokenizers

    from zoo.text.tokenizer import BYTE_DECODER

    assert set(BYTE_DECODER) == set(pre_tokenizers.ByteLevel.alphabet())
    assert sorted(BYTE_DECODER.values()) == list(range(256))
    text = "Héllo 日本語 🙂 <|endoftext|>\n"
    assert b"".join(bpe.token_bytes(i) for i in bpe.encode(text)) == text.encode()
    assert bpe.token_bytes(bpe.eot_id) == b""
    with pytest.raises(ValueError, match="out of range"):
        bpe.token_bytes(bpe.vocab_size)
