"""Corpus and token data for the GPT text family (nanoGPT style).

    text = read_corpus(path)                  # a UTF-8 file, a folder of them, or None: stdlib .py source
    train_text, val_text = split_corpus(text) # first 90% / last 10% of the characters
    tokens = encode_to_memmap(tok, train_text, "train.bin")   # uint16/uint32 .bin + .json sidecar
    windows = TokenWindows(tokens, seq_len)   # item i: tokens[i:i+T] -> tokens[i+1:i+T+1]
    lines = TokenWindows(tokens, seq_len, starts=line_starts(tokens, tok, seq_len))  # windows from column 0

`prepare_text_data` does all of it and caches the tokenizer and token files under a key of the corpus
content and tokenizer settings, so a rerun (or another rank) reuses them instead of retraining.
"""

import hashlib
import json
import os
import re
import shutil
import sysconfig
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from zoo.checkpoint import read_json_object
from zoo.errors import CorruptFileError, InputError, MissingFileError
from zoo.text.tokenizer import CharTokenizer, Tokenizer, build_tokenizer, load_tokenizer, safe_chunks
from zoo.utils import written_atomically

DEFAULT_MAX_CHARS = 8_000_000  # ~8M chars of stdlib source: data prep stays fast on a 2-core machine
# stdlib folders that are not representative library code (tests, vendored/legacy tools) or not stdlib at all
STDLIB_SKIP_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3",
                              "__pycache__", "turtledemo", "ensurepip"})
# A file that says in its first lines that a tool wrote it (codec tables from gencodec.py, the Sphinx help
# topics, token and keyword lists) is data, not code: Codex dropped such files from its training set (Chen et
# al., 2021, sec. 3.1), as did StarCoder (Li et al., 2023, sec. 3). In the stdlib they are 19% of the source.
GENERATED_MARKER = re.compile(r"auto-?generated|automatically generated|generated (by|from|with|on)|do not edit",
                              re.IGNORECASE)
GENERATED_MARKER_LINES = 5
FILE_SEPARATOR = "\n"
ENCODE_BATCH_CHUNKS = 256  # 4 KiB pieces per encode_batch call (~1 MB): work for every core, little memory
PROGRESS_MIN_CHARS = 4_000_000
WINDOW_STARTS = ("any", "line")  # where training windows may begin (`line_starts`)


# ----------------------------------------------------------------------------------------------------------
# reading a corpus


def read_corpus(path: str | Path | None, max_chars: int | None = None) -> str:
    """Read a UTF-8 text file, or every file of a folder, or (None) the default stdlib corpus.

    A folder is read recursively: every regular file, sorted by relative path and joined with "\\n".
    Hidden entries (names starting with ".") and `__pycache__` folders are skipped; any other file that is
    not UTF-8 text (a binary file, a latin-1 file) is an error naming it, so no data is silently dropped.
    `max_chars` truncates the result (default: no cap for a path, DEFAULT_MAX_CHARS for the stdlib).
    """
    if path is None:
        return read_stdlib_corpus(DEFAULT_MAX_CHARS if max_chars is None else max_chars)
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"corpus path {path} does not exist (expected a UTF-8 text file or a folder)")
    files = _folder_files(path) if path.is_dir() else [path]
    if not files:
        raise InputError(f"corpus folder {path} contains no files")
    text = FILE_SEPARATOR.join(_read_utf8(file) for file in files)
    text = text if max_chars is None else text[:max_chars]
    if not text:
        raise InputError(f"corpus {path} is empty")
    return text


def read_stdlib_corpus(max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """The Python standard library's own .py source, sorted by path, capped at `max_chars` characters.

    Deterministic for a given Python installation. The few stdlib files that are not UTF-8 are skipped, and so
    are generated files (`is_generated`).
    """
    if max_chars < 1:
        raise InputError(f"max_chars must be a positive number of characters, got {max_chars}")
    root = Path(sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise MissingFileError(f"the Python standard library folder {root} does not exist")
    pieces, total = [], 0
    for file in _folder_files(root, skip_dirs=STDLIB_SKIP_DIRS, suffix=".py"):
        try:
            piece = file.read_bytes().decode("utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if is_generated(piece):
            continue
        pieces.append(piece)
        total += len(piece) + len(FILE_SEPARATOR)
        if total >= max_chars:
            break
    text = FILE_SEPARATOR.join(pieces)[:max_chars]
    if not text:
        raise InputError(f"found no UTF-8 .py files in the standard library folder {root}")
    return text


def is_generated(source: str) -> bool:
    """Whether a source file's first lines say that a tool generated it (GENERATED_MARKER)."""
    head = "\n".join(source.split("\n", GENERATED_MARKER_LINES)[:GENERATED_MARKER_LINES])
    return GENERATED_MARKER.search(head) is not None


def _folder_files(root: Path, skip_dirs: frozenset[str] = frozenset({"__pycache__"}),
                  suffix: str = "") -> list[Path]:
    files = []
    for folder, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in skip_dirs and not d.startswith(".")]
        files += [Path(folder, f) for f in filenames if f.endswith(suffix) and not f.startswith(".")]
    # sort by relative path parts so the order is the same on every machine and filesystem
    return sorted((f for f in files if f.is_file()), key=lambda f: f.relative_to(root).parts)


def _read_utf8(file: Path) -> str:
    data = file.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"corpus file {file} is not UTF-8 text: byte 0x{data[error.start]:02x} at offset "
                         f"{error.start} ({error.reason}); convert it to UTF-8 or remove it") from None


def split_corpus(text: str, val_fraction: float = 0.1) -> tuple[str, str]:
    """First (1 - val_fraction) of the characters for training, the rest for validation (nanoGPT)."""
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    n_train = int(len(text) * (1.0 - val_fraction))
    return text[:n_train], text[n_train:]


# ----------------------------------------------------------------------------------------------------------
# token files: a flat .bin of uint16/uint32 ids plus a tiny JSON sidecar


def encode_to_memmap(tokenizer: Tokenizer, text: str, path: str | Path) -> np.memmap:
    """Encode `text` chunk by chunk into `path` and return it memory-mapped read-only."""
    if not text:
        raise InputError(f"nothing to encode into {path}: the text is empty")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = np.dtype(np.uint16 if tokenizer.vocab_size < 2**16 else np.uint32)
    chunks = list(safe_chunks(text))
    length = 0
    bar = tqdm(total=len(text), unit="char", unit_scale=True, desc=f"encoding {path.name}",
               disable=len(text) < PROGRESS_MIN_CHARS)
    with open(path, "wb") as f, bar:
        for start in range(0, len(chunks), ENCODE_BATCH_CHUNKS):
            batch = chunks[start:start + ENCODE_BATCH_CHUNKS]
            for ids in _encode_batch(tokenizer, batch):
                f.write(ids.astype(dtype).tobytes())
                length += len(ids)
            bar.update(sum(len(chunk) for chunk in batch))
    _sidecar(path).write_text(json.dumps({"dtype": dtype.name, "length": length}) + "\n")
    return load_memmap(path)


def load_memmap(path: str | Path) -> np.memmap:
    """Open a token file written by `encode_to_memmap`, read-only."""
    path = Path(path)
    sidecar = _sidecar(path)
    if not path.is_file() or not sidecar.is_file():
        raise MissingFileError(f"token file {path} or its sidecar {sidecar} is missing")
    meta = read_json_object(sidecar, "token file sidecar")
    dtype, length = meta.get("dtype"), meta.get("length")
    if dtype not in ("uint16", "uint32") or not isinstance(length, int) or length < 1:
        raise CorruptFileError(f"{sidecar}: expected {{\"dtype\": \"uint16\" or \"uint32\", \"length\": a positive "
                               f"integer}}, got {meta}")
    if path.stat().st_size != length * np.dtype(dtype).itemsize:
        raise CorruptFileError(f"token file {path} holds {path.stat().st_size} bytes, its sidecar says {length} "
                               f"{dtype} tokens ({length * np.dtype(dtype).itemsize} bytes)")
    return np.memmap(path, dtype=np.dtype(dtype), mode="r", shape=(length,))


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _encode_batch(tokenizer: Tokenizer, texts: list[str]) -> list[np.ndarray]:
    if isinstance(tokenizer, CharTokenizer):  # vectorized lookup, no Python lists
        return [tokenizer.encode_array(text) for text in texts]
    return [np.asarray(ids, dtype=np.int64) for ids in tokenizer.encode_batch(texts)]


# ----------------------------------------------------------------------------------------------------------
# training windows


class TokenWindows(Dataset):
    """Windows of `seq_len` tokens: item i is tokens[s:s+T] as inputs and tokens[s+1:s+T+1] as labels, where s is
    i (every window) or `starts[i]` (only the windows that begin at the given positions; see `line_starts`).

    Map-style and a pure function of i, so a trainer can pick indices itself (exact resume, rank shards).
    """

    def __init__(self, tokens: np.ndarray, seq_len: int, name: str = "token data", starts: np.ndarray | None = None):
        if tokens.ndim != 1:
            raise InputError(f"{name} must be a 1-D token array, got shape {tokens.shape}")
        if seq_len < 1:
            raise InputError(f"seq_len must be a positive number of tokens, got {seq_len}")
        if len(tokens) < seq_len + 1:
            raise InputError(f"{name} has {len(tokens)} tokens, too few for seq_len {seq_len}: a window "
                             f"needs seq_len + 1 = {seq_len + 1} tokens (use more text or a smaller seq_len)")
        if starts is not None and (len(starts) == 0 or starts.min() < 0 or starts.max() > len(tokens) - seq_len - 1):
            raise InputError(f"{name}: window starts must be non-empty and within [0, {len(tokens) - seq_len - 1}]")
        self.tokens, self.seq_len, self.name, self.starts = tokens, seq_len, name, starts

    def __len__(self) -> int:
        return len(self.tokens) - self.seq_len if self.starts is None else len(self.starts)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(f"window {i} out of range for {self.name} with {len(self)} windows")
        start = i if self.starts is None else int(self.starts[i])
        window = torch.from_numpy(self.tokens[start:start + self.seq_len + 1].astype(np.int64))
        return {"input_ids": window[:-1], "labels": window[1:]}

    def __getstate__(self) -> dict:
        # send a memmap to DataLoader workers (spawn) as its file name, not as a copy of the whole corpus
        state = dict(self.__dict__)
        if isinstance(self.tokens, np.memmap) and self.tokens.filename is not None:
            state["tokens"] = str(self.tokens.filename)
        return state

    def __setstate__(self, state: dict) -> None:
        if isinstance(state["tokens"], str):
            state["tokens"] = load_memmap(state["tokens"])
        self.__dict__.update(state)


def line_starts(tokens: np.ndarray, tokenizer: Tokenizer, seq_len: int) -> np.ndarray:
    """The positions where a line begins in column 0 (0, and every token after one whose text ends in "\\n") that
    leave room for a whole window.

    Why: a window that starts anywhere puts mid-line text at position 0, so a model sampled from a short prompt
    with no context (`def `) cannot tell a top-level line from an indented one; in Python source most `def`s are
    methods, and it writes a method's body. Starting training windows at line starts makes position 0 mean
    column 0: position 0 then carries what the end-of-text token before each file carries in
    document-packed training, where the text begins. With a byte-level BPE (GPT-2's pre-tokenizer) the newline
    before an indented line is merged with the indentation, so only unindented lines and blank lines qualify.
    """
    ends_line = np.array([tokenizer.decode([i]).endswith("\n") for i in range(tokenizer.vocab_size)], dtype=bool)
    last = len(tokens) - seq_len - 1  # the last start with seq_len + 1 tokens after it
    after_newline = np.flatnonzero(ends_line[np.asarray(tokens[:last])]) + 1
    return np.concatenate([[0], after_newline]).astype(np.int64)


# ----------------------------------------------------------------------------------------------------------
# everything at once, cached


@dataclass
class TextData:
    tokenizer: Tokenizer
    train: TokenWindows
    val: TokenWindows
    train_text_chars: int
    val_text_chars: int
    directory: Path  # where the tokenizer and token files live


def prepare_text_data(path: str | Path | None, tokenizer_kind: str, vocab_size: int, seq_len: int,
                      cache_dir: str | Path, max_chars: int | None = None,
                      tokenizer: Tokenizer | None = None, window_starts: str = "any") -> TextData:
    """Read and split the corpus, train the tokenizer, encode both splits into memmaps under `cache_dir`.

    BPE is trained on the training split only; the char vocabulary is built from the whole text (as nanoGPT
    does) so that no validation character is unknown. Results are cached under a hash of the corpus text and
    the tokenizer settings; the cache entry is published with an atomic rename, so concurrent ranks are safe.
    A given `tokenizer` (a trained model's, for evaluation on new text) is used as is instead of training one.
    `window_starts`: "any" trains on every window, "line" on the windows that begin a line (`line_starts`);
    validation always scores every position.
    """
    if window_starts not in WINDOW_STARTS:
        raise InputError(f"window_starts={window_starts!r}; allowed: {', '.join(WINDOW_STARTS)}")
    text = read_corpus(path, max_chars)
    train_text, val_text = split_corpus(text)
    if not val_text or not train_text:
        raise InputError(f"corpus has {len(text)} characters, too few to split into train and validation")
    settings = f"{tokenizer_kind}:{vocab_size}:"
    if tokenizer is not None:
        tokenizer_kind = tokenizer.kind
        with tempfile.TemporaryDirectory() as tmp:  # identify the given tokenizer by its saved files
            tokenizer.save(tmp)
            settings = "given:" + "".join(p.read_text() for p in sorted(Path(tmp).iterdir()))
    key = hashlib.sha256(settings.encode() + text.encode("utf-8")).hexdigest()[:16]
    directory = Path(cache_dir) / f"{tokenizer_kind}-{key}"
    if not (directory / "val.json").is_file():
        _build_cache(directory, tokenizer_kind, vocab_size, text, train_text, val_text, tokenizer)
    try:
        tokenizer, train, val = _open_cache(directory)
    except (CorruptFileError, MissingFileError) as error:  # derived from the corpus: build it again
        warnings.warn(f"damaged cache: {error}; deleting {directory} and building it again", stacklevel=2)
        shutil.rmtree(directory, ignore_errors=True)
        _build_cache(directory, tokenizer_kind, vocab_size, text, train_text, val_text, tokenizer)
        tokenizer, train, val = _open_cache(directory)
    return TextData(
        tokenizer=tokenizer,
        train=TokenWindows(train, seq_len, name="training split",
                           starts=line_starts(train, tokenizer, seq_len) if window_starts == "line" else None),
        val=TokenWindows(val, seq_len, name="validation split (last 10%)"),
        train_text_chars=len(train_text), val_text_chars=len(val_text), directory=directory,
    )


def _open_cache(directory: Path) -> tuple[Tokenizer, np.memmap, np.memmap]:
    """A cache entry's tokenizer and its train and validation token files."""
    return load_tokenizer(directory), load_memmap(directory / "train.bin"), load_memmap(directory / "val.bin")


def _build_cache(directory: Path, kind: str, vocab_size: int, text: str, train_text: str,
                 val_text: str, tokenizer: Tokenizer | None = None) -> None:
    # published whole; if another rank finished the same entry first, its copy is kept
    with written_atomically(directory, directory=True, replace_existing=False) as tmp:
        if tokenizer is None:
            tokenizer = build_tokenizer(kind, text if kind == "char" else train_text, vocab_size)
        tokenizer.save(tmp)
        encode_to_memmap(tokenizer, train_text, tmp / "train.bin")
        encode_to_memmap(tokenizer, val_text, tmp / "val.bin")
