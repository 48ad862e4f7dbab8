"""Corpus reading, the 90/10 split, token memmaps, training windows and the cached pipeline."""

import pickle

import numpy as np
import pytest
import torch

from zoo.text.data import (
    TokenWindows,
    encode_to_memmap,
    line_starts,
    load_memmap,
    prepare_text_data,
    read_corpus,
    read_stdlib_corpus,
    split_corpus,
)
from zoo.text.tokenizer import BPETokenizer, CharTokenizer

TEXT = "def f(x):\n    return x * 2\n\nprint(f(21))  # héllo 日本\n" * 30


def test_read_file_and_folder(tmp_path):
    (tmp_path / "one.txt").write_text("hello", encoding="utf-8")
    assert read_corpus(tmp_path / "one.txt") == "hello"
    folder = tmp_path / "corpus"
    (folder / "b").mkdir(parents=True)
    (folder / "b" / "z.py").write_text("second", encoding="utf-8")
    (folder / "a.md").write_text("first ü", encoding="utf-8")
    (folder / "c").write_text("third", encoding="utf-8")
    (folder / ".hidden").write_bytes(b"\xff skipped")
    assert read_corpus(folder) == "first ü\nsecond\nthird"
    assert read_corpus(folder, max_chars=5) == "first"


def test_non_utf8_file_error_names_file_and_offset(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("abcdé".encode() + b"xyz\xe9 more")  # é takes 2 bytes, so the bad byte is at 9
    with pytest.raises(ValueError, match=r"latin1\.txt is not UTF-8 text: byte 0xe9 at offset 9"):
        read_corpus(bad)
    with pytest.raises(ValueError, match=r"latin1\.txt"):
        read_corpus(tmp_path)  # inside a folder too: nothing is dropped silently


def test_missing_and_empty_corpus(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.txt"):
        read_corpus(tmp_path / "nowhere.txt")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="empty"):
        read_corpus(tmp_path / "empty.txt")
    (tmp_path / "void").mkdir()
    with pytest.raises(ValueError, match="no files"):
        read_corpus(tmp_path / "void")


def test_default_corpus_is_stdlib_source():
    text = read_corpus(None, max_chars=50_000)
    assert 0 < len(text) <= 50_000 and "def " in text
    assert read_stdlib_corpus(50_000) == text  # deterministic
    assert read_stdlib_corpus(1_000) == text[:1_000]


def test_split_is_exact_90_10():
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    train, val = split_corpus(text)
    assert (train, val) == (text[:900], text[900:])
    assert split_corpus("0123456789") == ("012345678", "9")
    with pytest.raises(ValueError, match="val_fraction"):
        split_corpus(text, 1.0)


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_memmap_matches_tokenizer(tmp_path, kind):
    tok = CharTokenizer.train(TEXT) if kind == "char" else BPETokenizer.train([TEXT], 300)
    tokens = encode_to_memmap(tok, TEXT, tmp_path / "train.bin")
    assert isinstance(tokens, np.memmap) and tokens.dtype == np.uint16 and not tokens.flags.writeable
    assert tokens.tolist() == tok.encode(TEXT)
    assert load_memmap(tmp_path / "train.bin").tolist() == tokens.tolist()


def test_token_windows_are_shifted_by_one(tmp_path):
    tok = CharTokenizer.train(TEXT)
    tokens = encode_to_memmap(tok, TEXT, tmp_path / "t.bin")
    windows = TokenWindows(tokens, seq_len=8)
    assert len(windows) == len(tokens) - 8
    expected = torch.tensor(tok.encode(TEXT))
    for i in (0, 5, len(windows) - 1):
        item = windows[i]
        assert item["input_ids"].dtype == torch.long and item["input_ids"].shape == (8,)
        assert torch.equal(item["input_ids"], expected[i:i + 8])
        assert torch.equal(item["labels"], expected[i + 1:i + 9])
    with pytest.raises(IndexError):
        windows[len(windows)]
    clone = pickle.loads(pickle.dumps(windows))  # workers get the file name, not a copy of the data
    assert isinstance(clone.tokens, np.memmap) and torch.equal(clone[3]["labels"], windows[3]["labels"])


def test_token_windows_too_short_names_counts():
    with pytest.raises(ValueError, match="has 5 tokens, too few for seq_len 5"):
        TokenWindows(np.arange(5, dtype=np.uint16), seq_len=5)


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_line_aligned_windows_begin_in_column_0(tmp_path, kind):
    """Every window begins at column 0, and every line that leaves room for a window is a start, except (with BPE,
    whose pre-tokenizer merges the newline into the indentation) the indented ones."""
    tok = CharTokenizer.train(TEXT) if kind == "char" else BPETokenizer.train([TEXT], 300)
    tokens = encode_to_memmap(tok, TEXT, tmp_path / "t.bin")
    starts = line_starts(tokens, tok, seq_len=8)
    texts = [tok.decode(tokens[:s].tolist()) for s in starts]
    assert all(t == "" or t.endswith("\n") for t in texts)
    lines = TEXT.split("\n")
    expected = {sum(len(line) + 1 for line in lines[:k]) for k, line in enumerate(lines)
                if kind == "char" or not line.startswith(" ")}
    last_char = len(tok.decode(tokens[:len(tokens) - 9].tolist()))
    assert {len(t) for t in texts} == {c for c in expected if c <= last_char}
    windows = TokenWindows(tokens, seq_len=8, starts=starts)
    assert len(windows) == len(starts) < len(tokens) - 8
    for i in (0, 1, len(windows) - 1):
        assert TEXT.startswith(tok.decode(windows[i]["input_ids"].tolist()), len(texts[i]))
        assert torch.equal(windows[i]["labels"][:-1], windows[i]["input_ids"][1:])
    with pytest.raises(ValueError, match="window starts must be"):
        TokenWindows(tokens, seq_len=8, starts=np.array([len(tokens) - 8]))


def test_prepare_text_data_window_starts(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    args = (corpus, "bpe", 300, 16, tmp_path / "cache")
    every, lines = prepare_text_data(*args), prepare_text_data(*args, window_starts="line")
    assert len(every.train) == len(every.train.tokens) - 16 and len(lines.train) < len(every.train) / 3
    assert len(lines.val) == len(every.val)  # validation scores every position either way
    with pytest.raises(ValueError, match="window_starts='word'; allowed: any, line"):
        prepare_text_data(*args, window_starts="word")


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_prepare_text_data(tmp_path, kind):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    data = prepare_text_data(corpus, kind, vocab_size=300, seq_len=16, cache_dir=tmp_path / "cache")
    train_text, val_text = split_corpus(TEXT)
    assert (data.train_text_chars, data.val_text_chars) == (len(train_text), len(val_text))
    assert data.train.tokens.tolist() == data.tokenizer.encode(train_text)
    assert data.val.tokens.tolist() == data.tokenizer.encode(val_text)
    assert data.tokenizer.decode(data.val.tokens.tolist()) == val_text
    again = prepare_text_data(corpus, kind, vocab_size=300, seq_len=16, cache_dir=tmp_path / "cache")
    assert again.directory == data.directory  # cached: no retraining
    assert len(list((tmp_path / "cache").iterdir())) == 1
