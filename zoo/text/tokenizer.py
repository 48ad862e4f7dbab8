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
from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from zoo.checkpoint import read_json_object
from zoo.errors import CorruptFileError, InputError, InputTypeError, MissingFileError

META_FILE = "zoo_tokenizer.json"
BPE_FILE = "tokenizer.json"
KINDS = ("char", "bpe")
EOT_TEXT = "<|endoftext|>"  # the name of the BPE control token; never matched in user text
BYTE_ALPHABET_SIZE = 256
MAX_NAMED = 10  # unknown characters an error message lists
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
        return [self.encode(text) for text in check_batch(texts)]

    def encode_array(self, text: str) -> np.ndarray:
        """Encode to an int64 array without building a Python list (fast path for big corpora).

        A character outside the vocabulary is an error naming it (and up to MAX_NAMED others), never a silent
        <unk>: a char-level vocabulary has no unknown token, and dropping characters would change the text."""
        if not isinstance(text, str):
            raise InputTypeError(f"a char tokenizer encodes a str, got {type(text).__name__}")
        points = _codepoints(text)
        ids = np.searchsorted(self._codepoints, points)
        known = (ids < self.vocab_size) & (self._codepoints[np.minimum(ids, self.vocab_size - 1)] == points)
        if not known.all():
            position = int(np.argmin(known))
            others = [chr(point) for point in dict.fromkeys(points[~known].tolist()) if point != points[position]]
            also = f", nor are {', '.join(map(repr, others[:MAX_NAMED]))}" if others else ""
            more = f" and {len(others) - MAX_NAMED} more" if len(others) > MAX_NAMED else ""
            raise InputError(f"character {text[position]!r} at position {position} is not in this char-level "
                             f"tokenizer's vocabulary ({self.vocab_size} characters){also}{more}; a char-level "
                             f"model can only encode characters seen in the corpus it was trained on")
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


# The Han characters (CJK Unified Ideographs, their extension A, the compatibility ideographs) as one regex class
# that Python's re and the tokenizers library's Oniguruma both read: BPETokenizer.train(whole_characters=HAN).
HAN = "[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"


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
    def train(cls, texts: Iterable[str], vocab_size: int, whole_characters: str | None = None) -> "BPETokenizer":
        """Train on `texts`; `vocab_size` counts the end-of-text id. A small corpus may yield fewer merges,
        so check `.vocab_size` afterwards rather than assuming it equals the request.

        whole_characters: a regex character class (e.g. HAN). Each such character is split from its
        neighbours before the BPE, and every one that occurs in `texts` becomes a single token, on top of the
        `vocab_size` the trainer chose: the vocabulary extension Cui et al. (2023, "Efficient and Effective
        Text Encoding for Chinese LLaMA and Alpaca") give a byte-level BPE that spells a Chinese character
        as two or three byte pieces. The vocabulary grows by the merges this takes."""
        if vocab_size < BYTE_ALPHABET_SIZE + 1:
            raise InputError(f"BPE vocab_size must be at least {BYTE_ALPHABET_SIZE + 1} (256 byte tokens + "
                             f"end-of-text), got {vocab_size}")
        hf = HFTokenizer(models.BPE())
        # no normalizer (it would change the text) and no added/special tokens (they match in user text)
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.pre_tokenizer = byte_level
        if whole_characters is not None:
            texts = list(texts)  # read twice: the training (which checks each text) and the characters
            hf.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(whole_characters), behavior="isolated"), byte_level])
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size - 1, show_progress=False, special_tokens=[],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        hf.train_from_iterator((check_text(text) for text in texts), trainer)
        if whole_characters is not None:
            hf = _merge_whole(hf, sorted({char for text in texts for char in re.findall(whole_characters, text)}))
        return cls(hf, eot_id=hf.get_vocab_size())

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Encode many texts at once; `tokenizers` spreads the batch over all cores."""
        texts = [check_text(text) for text in check_batch(texts)]
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


def _merge_whole(hf: HFTokenizer, chars: Sequence[str]) -> HFTokenizer:
    """`hf` with merges appended (after every trained one, so other text is split as before) that join each of
    `chars` into one token. Each is a word of its own under the isolating pre-tokenizer, so the merges that
    complete it are the ones joining, left to right, the pieces the trained BPE leaves it in."""
    state = json.loads(hf.to_str())
    vocab, merges = state["model"]["vocab"], state["model"]["merges"]
    known = {tuple(pair) for pair in merges}
    for char in chars:
        pieces = [hf.id_to_token(i) for i in hf.encode(char, add_special_tokens=False).ids]
        while len(pieces) > 1:
            pair = (pieces[0], pieces[1])
            if pair not in known:
                known.add(pair)
                merges.append(list(pair))
                vocab.setdefault(pair[0] + pair[1], len(vocab))
            pieces = [pair[0] + pair[1], *pieces[2:]]
    extended = HFTokenizer.from_str(json.dumps(state))
    split = [char for char in chars if len(extended.encode(char, add_special_tokens=False).ids) != 1]
    if split:  # the merges above complete every character by construction; a tokenizers change could break that
        raise RuntimeError(f"whole_characters: {len(split)} character(s) still take more than one token after the "
                           f"appended merges (first: {split[:5]}); the installed tokenizers version does not apply "
                           f"merges as this code expects")
    return extended


def _byte_decoder() -> dict[str, int]:
    # GPT-2's printable stand-ins for bytes, as ByteLevel writes them in the vocabulary: printable Latin-1
    # bytes stand for themselves, the other 68 bytes map in order to U+0100 and up
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = [byte for byte in range(BYTE_ALPHABET_SIZE) if byte not in printable]
    return {chr(byte): byte for byte in printable} | {chr(256 + i): byte for i, byte in enumerate(shifted)}


BYTE_DECODER = _byte_decoder()


def check_text(text: str, what: str = "text") -> str:
    """`text` itself if it is a str that UTF-8 can hold; an InputError otherwise. Lone surrogates (e.g. from
    errors="surrogateescape") have no UTF-8 form, so no byte-level or `tokenizers` model can take them."""
    if not isinstance(text, str):
        raise InputTypeError(f"{what} must be a str, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        bad = text[error.start]
        raise InputError(f"{what} contains a lone surrogate {bad!r} at position {error.start}; it is not "
                         f"valid Unicode text and cannot be encoded as UTF-8 bytes") from None
    return text


def check_batch(texts: Sequence[str]) -> Sequence[str]:
    """A batch of texts: a str is refused, since iterating it would encode each character as its own text."""
    if isinstance(texts, str):
        raise InputTypeError("encode_batch takes a list of str, got one str; use encode() for a single text")
    return texts


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


class PretrainedTokenizer:
    """A checkpoint's own tokenizer (a `tokenizers` pipeline) behind zoo's Tokenizer interface (encode,
    encode_batch, decode, vocab_size, eot_id, kind, save), so zoo.text.generate and the trainer use it as they
    use zoo's own.

    vocab_size: the model's (its embedding may have more rows than the pipeline has tokens, rounded up for
        speed: those ids are valid model outputs that decode to nothing).
    eot_id: the end-of-sequence id generation stops at (the first, where a checkpoint lists several).
    bos_id: the id the checkpoint's tokenizer puts before a text (Llama's <s>, Gemma's <bos>; None for GPT-2 and
        Qwen2): generation starts each prompt with it, as transformers' tokenizer(prompt) does. encode() adds no
        special tokens, so a training corpus is encoded as the text it is.
    Text that spells a special token ("<s>", "<|endoftext|>") is encoded as the ordinary text it is, never as
    the control token (zoo's BPETokenizer rule: only code can produce one); decode() drops special tokens.
    """

    kind = "pretrained"

    def __init__(self, hf: HFTokenizer, eot_id: int | None, bos_id: int | None, vocab_size: int | None = None):
        self.hf = hf
        hf.encode_special_tokens = True  # special tokens' text is split like any text (not saved with the pipeline)
        self.pipeline_size = hf.get_vocab_size(with_added_tokens=True)
        self.vocab_size = max(vocab_size or 0, self.pipeline_size)
        for name, value in (("eot_id", eot_id), ("bos_id", bos_id)):
            if value is not None and not 0 <= value < self.vocab_size:
                raise InputError(f"{name}={value} is outside the tokenizer's {self.vocab_size} tokens")
        self.eot_id, self.bos_id = eot_id, bos_id

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        texts = [check_text(text) for text in check_batch(texts)]
        return [encoding.ids for encoding in self.hf.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids) -> str:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:  # `tokenizers` would silently drop them
            raise InputError(f"token id {bad[0]} is out of range for this tokenizer with vocab_size "
                             f"{self.vocab_size} (allowed: 0..{self.vocab_size - 1})")
        return self.hf.decode([i for i in ids if i < self.pipeline_size], skip_special_tokens=True)

    def save(self, directory: str | Path) -> Path:
        """tokenizer.json (the pipeline) and zoo_tokenizer.json (its kind and special ids), as zoo's BPE saves."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.hf.save(str(directory / BPE_FILE))
        meta = {"kind": self.kind, "eot_id": self.eot_id, "bos_id": self.bos_id, "vocab_size": self.vocab_size}
        (directory / META_FILE).write_text(json.dumps(meta) + "\n", encoding="utf-8")
        return directory

    @classmethod
    def from_saved(cls, directory: Path, meta: dict) -> "PretrainedTokenizer":
        """The tokenizer `save` wrote (zoo_tokenizer.json's `meta` read by zoo.text.tokenizer.load_tokenizer)."""
        path = directory / BPE_FILE
        if not path.is_file():
            raise MissingFileError(f"the tokenizer in {directory} is incomplete: {path} is missing")
        ids = {name: meta.get(name) for name in ("eot_id", "bos_id", "vocab_size")}
        if any(value is not None and (not isinstance(value, int) or isinstance(value, bool))
               for value in ids.values()):
            raise CorruptFileError(f"{directory}: eot_id, bos_id and vocab_size must be integers or null, got {ids}")
        try:
            return cls(read_hf_tokenizer(path), **ids)
        except InputError as error:
            raise CorruptFileError(f"{directory}: {error}") from None


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """The tokenizer saved in `directory`; a missing file is a MissingFileError, a malformed one a
    CorruptFileError naming it."""
    directory = Path(directory)
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        raise MissingFileError(f"no tokenizer in {directory}: {meta_path} is missing")
    meta = read_json_object(meta_path, "zoo tokenizer")
    kind = meta.get("kind")
    if kind == "pretrained":  # a checkpoint's own tokenizer, imported with its model (zoo/text/hf.py)
        return PretrainedTokenizer.from_saved(directory, meta)
    if kind not in KINDS:
        raise CorruptFileError(f"{meta_path} has unknown tokenizer kind {kind!r}; allowed kinds: {', '.join(KINDS)}")
    field, expected = ("chars", str) if kind == "char" else ("eot_id", int)
    value = meta.get(field)
    if not isinstance(value, expected) or isinstance(value, bool):
        raise CorruptFileError(f"{meta_path} is not a valid zoo tokenizer file: a {kind} tokenizer needs "
                               f"{field!r} to be a {expected.__name__}, got {value!r}")
    try:
        if kind == "char":
            return CharTokenizer(value)
        bpe_path = directory / BPE_FILE
        if not bpe_path.is_file():
            raise MissingFileError(f"BPE tokenizer in {directory} is incomplete: {bpe_path} is missing")
        return BPETokenizer(read_hf_tokenizer(bpe_path), eot_id=value)
    except InputError as error:  # the tokenizer's own checks: sorted characters, eot_id one past the vocabulary
        files = meta_path if kind == "char" else f"{meta_path} (with {directory / BPE_FILE})"
        raise CorruptFileError(f"{files} is not a valid zoo tokenizer: {error}") from None


def read_hf_tokenizer(path: Path) -> HFTokenizer:
    """A `tokenizers` JSON file; one that does not parse is a CorruptFileError naming it."""
    try:
        return HFTokenizer.from_file(str(path))
    except Exception as error:  # noqa: BLE001 (tokenizers raises a bare Exception for any malformed file)
        raise CorruptFileError(f"{path} is not a valid `tokenizers` file ({error})") from None


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
