"""Tokenizers for the GPT text family: character-level and byte-level BPE.

Both kinds share one small interface (`Tokenizer`): `encode`, `encode_batch`, `decode`, `vocab_size`,
`eot_id`, `kind` and `save`. A tokenizer is saved as JSON only (never pickle) into a directory:

    zoo_tokenizer.json   {"kind": "char", "chars": "..."}  or  {"kind": "bpe", "eot_id": N}
    tokenizer.json       (bpe only) the HuggingFace `tokenizers` JSON of the trained byte-level BPE

End of text (BPE only): `eot_id` is reserved one past the trained BPE vocabulary and is NOT registered
with the `tokenizers` model. Added/special tokens of that library are matched inside raw text, so a user
typing "<|endoftext|>" would otherwise inject a control token; here such text is always encoded as the
ordinary byte-level tokens it consists of, and only code that appends `eot_id` itself can produce it.
`decode` renders `eot_id` as "" (it marks a document boundary, it is not text).
"""

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from zoo.errors import InputError, MissingFileError

META_FILE = "zoo_tokenizer.json"
BPE_FILE = "tokenizer.json"
KINDS = ("char", "bpe")
EOT_TEXT = "<|endoftext|>"  # the name of the BPE control token; never matched in user text
BYTE_ALPHABET_SIZE = 256
# `tokenizers` encodes many short pieces several times faster than a few long ones (measured: 8M chars of
# stdlib source in ~2 s as 4 KiB pieces vs ~6 s as 1 MiB pieces on 2 cores)
CHUNK_CHARS = 1 << 12


class Tokenizer(Protocol):
    kind: str
    vocab_size: int
    eot_id: int | None

    def encode(self, text: str) -> list[int]: ...
    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]: ...
    def decode(self, ids: Iterable[int]) -> str: ...
    def save(self, directory: str | Path) -> Path: ...


# ----------------------------------------------------------------------------------------------------------
# character level (nanoGPT's shakespeare_char): the vocabulary is the sorted set of characters of the corpus


class CharTokenizer:
    kind = "char"
    eot_id: int | None = None  # char-level models have no special tokens

    def __init__(self, chars: str):
        if not chars:
            raise InputError("a char tokenizer needs at least one character in its vocabulary")
        if list(chars) != sorted(set(chars)):
            raise InputError("char tokenizer vocabulary must be sorted, distinct characters")
        self.chars = chars
        self.vocab_size = len(chars)
        # code points are sorted (Python sorts str by code point), so encoding is one vectorized searchsorted
        self._codepoints = _codepoints(chars)

    @classmethod
    def train(cls, text: str) -> "CharTokenizer":
        if not text:
            raise InputError("cannot train a char tokenizer on empty text")
        return cls("".join(sorted(set(text))))

    def encode(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(text) for text in texts]

    def encode_array(self, text: str) -> np.ndarray:
        """Encode to an int64 array without building a Python list (fast path for big corpora)."""
        points = _codepoints(text)
        ids = np.searchsorted(self._codepoints, points)
        known = (ids < self.vocab_size) & (self._codepoints[np.minimum(ids, self.vocab_size - 1)] == points)
        if not known.all():
            position = int(np.argmin(known))
            raise InputError(f"character {text[position]!r} at position {position} is not in this char-level "
                             f"tokenizer's vocabulary ({self.vocab_size} characters); a char-level model can "
                             f"only encode characters seen in the corpus it was trained on")
        return ids.astype(np.int64)

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids]  # also accepts numpy/torch integers
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise InputError(f"token id {bad[0]} is out of range for a char tokenizer with vocab_size "
                             f"{self.vocab_size} (allowed: 0..{self.vocab_size - 1})")
        return "".join(self.chars[i] for i in ids)

    def save(self, directory: str | Path) -> Path:
        return _write_meta(directory, {"kind": "char", "chars": self.chars})


def _codepoints(text: str) -> np.ndarray:
    # utf-32 is one fixed-width unit per character; surrogatepass keeps lone surrogates countable
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


# ----------------------------------------------------------------------------------------------------------
# byte-level BPE (GPT-2 style) trained with HuggingFace `tokenizers`; every string round-trips exactly


class BPETokenizer:
    kind = "bpe"

    def __init__(self, hf: HFTokenizer, eot_id: int):
        if eot_id != hf.get_vocab_size():
            raise InputError(f"BPE eot_id must be reserved one past the trained vocabulary "
                             f"({hf.get_vocab_size()}), got {eot_id}")
        self.hf = hf
        self.eot_id: int | None = eot_id
        self.vocab_size = eot_id + 1

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> "BPETokenizer":
        """Train on `texts`; `vocab_size` counts the end-of-text id. A small corpus may yield fewer merges,
        so check `.vocab_size` afterwards rather than assuming it equals the request."""
        if vocab_size < BYTE_ALPHABET_SIZE + 1:
            raise InputError(f"BPE vocab_size must be at least {BYTE_ALPHABET_SIZE + 1} (256 byte tokens + "
                             f"end-of-text), got {vocab_size}")
        hf = HFTokenizer(models.BPE())
        # no normalizer (it would change the text) and no added/special tokens (they match in user text)
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size - 1, show_progress=False, special_tokens=[],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        hf.train_from_iterator(_check_texts(texts), trainer)
        return cls(hf, eot_id=hf.get_vocab_size())

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Encode many texts at once; `tokenizers` spreads the batch over all cores."""
        texts = list(_check_texts(texts))
        # encode_batch_fast (tokenizers >= 0.20) skips computing offsets, which we never use
        encode = getattr(self.hf, "encode_batch_fast", self.hf.encode_batch)
        return [encoding.ids for encoding in encode(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids]  # also accepts numpy/torch integers
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:  # `tokenizers` would silently drop them
            raise InputError(f"token id {bad[0]} is out of range for a BPE tokenizer with vocab_size "
                             f"{self.vocab_size} (allowed: 0..{self.vocab_size - 1})")
        # a partial multi-byte character (e.g. a truncated sample) decodes as U+FFFD
        return self.hf.decode([i for i in ids if i != self.eot_id], skip_special_tokens=False)

    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes one BPE token stands for (b"" for `eot_id`); a token may hold part of a character."""
        if token_id == self.eot_id:
            return b""
        piece = self.hf.id_to_token(int(token_id))
        if piece is None:
            raise InputError(f"token id {token_id} is out of range for a BPE tokenizer with vocab_size "
                             f"{self.vocab_size} (allowed: 0..{self.vocab_size - 1})")
        return bytes(BYTE_DECODER[char] for char in piece)

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.hf.save(str(directory / BPE_FILE))
        return _write_meta(directory, {"kind": "bpe", "eot_id": self.eot_id})


def _byte_decoder() -> dict[str, int]:
    # GPT-2's printable stand-ins for bytes, as ByteLevel writes them in the vocabulary: printable Latin-1
    # bytes stand for themselves, the other 68 bytes map in order to U+0100 and up
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = [byte for byte in range(BYTE_ALPHABET_SIZE) if byte not in printable]
    return {chr(byte): byte for byte in printable} | {chr(256 + i): byte for i, byte in enumerate(shifted)}


BYTE_DECODER = _byte_decoder()


def _check_texts(texts: Iterable[str]) -> Iterator[str]:
    # lone surrogates (e.g. from errors="surrogateescape") have no UTF-8 form: byte-level BPE can't take them
    for text in texts:
        if not isinstance(text, str):
            raise InputError(f"BPE tokenizer expects str, got {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            bad = text[error.start]
            raise InputError(f"text contains a lone surrogate {bad!r} at position {error.start}; it is not "
                             f"valid Unicode text and cannot be encoded as UTF-8 bytes") from None
        yield text


# ----------------------------------------------------------------------------------------------------------
# building, saving and loading


def build_tokenizer(kind: str, text: str, vocab_size: int) -> Tokenizer:
    """Train a tokenizer of `kind` on `text` (char ignores `vocab_size`: its vocabulary is text's chars)."""
    if kind == "char":
        return CharTokenizer.train(text)
    if kind == "bpe":
        if not text:
            raise InputError("cannot train a BPE tokenizer on empty text")
        return BPETokenizer.train(safe_chunks(text), vocab_size)
    raise InputError(f"unknown tokenizer kind {kind!r}; allowed kinds: {', '.join(KINDS)}")


def load_tokenizer(directory: str | Path) -> Tokenizer:
    directory = Path(directory)
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        raise MissingFileError(f"no tokenizer in {directory}: {meta_path} is missing")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        kind = meta["kind"]
        if kind == "char":
            return CharTokenizer(meta["chars"])
        if kind == "bpe":
            bpe_path = directory / BPE_FILE
            if not bpe_path.is_file():
                raise MissingFileError(f"BPE tokenizer in {directory} is incomplete: {bpe_path} is missing")
            return BPETokenizer(HFTokenizer.from_file(str(bpe_path)), eot_id=meta["eot_id"])
    except (ValueError, KeyError, TypeError) as error:
        raise InputError(f"{meta_path} is not a valid zoo tokenizer file ({error!r})") from None
    raise InputError(f"{meta_path} has unknown tokenizer kind {kind!r}; allowed kinds: {', '.join(KINDS)}")


def _write_meta(directory: str | Path, meta: dict) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # ensure_ascii keeps any character (even a lone surrogate) representable in the file
    (directory / META_FILE).write_text(json.dumps(meta, ensure_ascii=True) + "\n", encoding="utf-8")
    return directory


# A "\n" right after a non-whitespace character always starts a new GPT-2 pre-token (no pattern crosses from
# non-space into "\n", and a whitespace run starting there is matched the same with or without what precedes
# it). Cutting only there makes chunked encoding identical to encoding the whole text, for char and BPE.
_CUT = re.compile(r"(?<=\S)(?=\n)")


def safe_chunks(text: str, chunk_chars: int = CHUNK_CHARS) -> Iterator[str]:
    """Split `text` into pieces of about `chunk_chars` whose encodings concatenate to the whole's encoding."""
    if chunk_chars < 1:
        raise InputError(f"chunk_chars must be a positive number of characters, got {chunk_chars}")
    start = 0
    while len(text) - start > chunk_chars:
        cut = _CUT.search(text, start + chunk_chars)
        if cut is None:
            break
        yield text[start:cut.start()]
        start = cut.start()
    if start < len(text) or not text:
        yield text[start:]
