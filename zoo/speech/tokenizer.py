"""Whisper's multitask tokenizer: a byte-level BPE over the corpus text plus Whisper's special tokens.

The vocabulary layout is whisper's (Radford et al., 2022, section 2.3 and figure 1; openai/whisper
tokenizer.py), with the BPE trained here on our corpus instead of GPT-2's:

    0 .. n_bpe-1                 byte-level BPE pieces (zoo.text.tokenizer.BPETokenizer)
    n_bpe = eot                  <|endoftext|>
    eot + 1 = sot                <|startoftranscript|>
    sot + 1 ..                   one <|xx|> per language, in the order given at training
    then                         <|translate|> <|transcribe|> <|startoflm|> <|startofprev|> <|nospeech|>
                                 <|notimestamps|>
    timestamp_begin ..           <|0.00|> <|0.02|> ... <|30.00|>: 1501 timestamps at 20 ms, last of all, so
                                 `token >= timestamp_begin` marks a timestamp

A decoder prompt is `<|startofprev|> previous text` (optional), then `sot_sequence`:
`<|startoftranscript|> <|language|> <|transcribe|> or <|translate|>`, plus `<|notimestamps|>` when no
timestamps are predicted; the language is left out to let the model predict it (language detection).

Special tokens are never registered with the `tokenizers` library, so user text that spells one
("<|en|>") is encoded as the ordinary text it is; only code that appends their ids can produce them.

Saved as JSON beside the model weights: `tokenizer.json` (the BPE, `tokenizers` format) and
`whisper_tokenizer.json` (the languages and the special-token names, checked again on load).
"""

import functools
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from zoo.checkpoint import read_json_object
from zoo.errors import CorruptFileError, InputError, MissingFileError
from zoo.speech.audio import CHUNK_LENGTH, SECONDS_PER_TOKEN, TOKENS_PER_SECOND
from zoo.text.tokenizer import BPE_FILE, BYTE_ALPHABET_SIZE, HAN, BPETokenizer, read_hf_tokenizer

META_FILE = "whisper_tokenizer.json"
TASKS = ("transcribe", "translate")
N_TIMESTAMPS = CHUNK_LENGTH * TOKENS_PER_SECOND + 1  # <|0.00|> .. <|30.00|> inclusive: 1501

# whisper's language table (openai/whisper tokenizer.py LANGUAGES), code -> English name, in whisper's order
LANGUAGES = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian", "ko": "korean",
    "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish", "pl": "polish", "ca": "catalan",
    "nl": "dutch", "ar": "arabic", "sv": "swedish", "it": "italian", "id": "indonesian", "hi": "hindi",
    "fi": "finnish", "vi": "vietnamese", "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay",
    "cs": "czech", "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
    "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian", "la": "latin",
    "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak", "te": "telugu", "fa": "persian",
    "lv": "latvian", "bn": "bengali", "sr": "serbian", "az": "azerbaijani", "sl": "slovenian", "kn": "kannada",
    "et": "estonian", "mk": "macedonian", "br": "breton", "eu": "basque", "is": "icelandic", "hy": "armenian",
    "ne": "nepali", "mn": "mongolian", "bs": "bosnian", "kk": "kazakh", "sq": "albanian", "sw": "swahili",
    "gl": "galician", "mr": "marathi", "pa": "punjabi", "si": "sinhala", "km": "khmer", "sn": "shona",
    "yo": "yoruba", "so": "somali", "af": "afrikaans", "oc": "occitan", "ka": "georgian", "be": "belarusian",
    "tg": "tajik", "sd": "sindhi", "gu": "gujarati", "am": "amharic", "yi": "yiddish", "lo": "lao",
    "uz": "uzbek", "fo": "faroese", "ht": "haitian creole", "ps": "pashto", "tk": "turkmen", "nn": "nynorsk",
    "mt": "maltese", "sa": "sanskrit", "lb": "luxembourgish", "my": "myanmar", "bo": "tibetan", "tl": "tagalog",
    "mg": "malagasy", "as": "assamese", "tt": "tatar", "haw": "hawaiian", "ln": "lingala", "ha": "hausa",
    "ba": "bashkir", "jw": "javanese", "su": "sundanese", "yue": "cantonese",
}

# the specials between the language tokens and the timestamps, in whisper's order: attribute -> token text
TASK_SPECIALS = {
    "translate": "<|translate|>",
    "transcribe": "<|transcribe|>",
    "sot_lm": "<|startoflm|>",
    "sot_prev": "<|startofprev|>",
    "no_speech": "<|nospeech|>",
    "no_timestamps": "<|notimestamps|>",
}

# whisper's non_speech_tokens: symbols that are never speech, suppressed while sampling by default
NON_SPEECH_SYMBOLS = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』') + (
    "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split())
# musical symbols U+2640..U+267F: 3 UTF-8 bytes sharing the first two (E2 99), so that prefix may be suppressed
MISCELLANEOUS_SYMBOLS = "♩♪♫♬♭♮♯"
MISCELLANEOUS_PREFIX = "♩".encode()[:2]


def timestamp_text(seconds: float) -> str:
    return f"<|{seconds:.2f}|>"


def special_token_names(languages: Sequence[str]) -> list[str]:
    """Every special token's text in id order, starting at the end-of-text id."""
    return ["<|endoftext|>", "<|startoftranscript|>", *(f"<|{code}|>" for code in languages),
            *TASK_SPECIALS.values(), *(timestamp_text(i * SECONDS_PER_TOKEN) for i in range(N_TIMESTAMPS))]


class WhisperTokenizer:
    def __init__(self, bpe: BPETokenizer, languages: Sequence[str]):
        self.bpe = bpe
        self.languages: tuple[str, ...] = _check_languages(languages)
        self.eot = bpe.eot_id  # the BPE reserves its end-of-text id one past its pieces: whisper's layout too
        self.sot = self.eot + 1
        self.all_language_tokens: tuple[int, ...] = tuple(range(self.sot + 1, self.sot + 1 + len(self.languages)))
        self._language_ids = dict(zip(self.languages, self.all_language_tokens))
        first_task = self.sot + 1 + len(self.languages)
        for offset, name in enumerate(TASK_SPECIALS):
            setattr(self, name, first_task + offset)
        self.timestamp_begin = first_task + len(TASK_SPECIALS)
        self.vocab_size = self.timestamp_begin + N_TIMESTAMPS
        self.special_tokens: dict[str, int] = {
            name: self.eot + i for i, name in enumerate(special_token_names(self.languages)[:-N_TIMESTAMPS])}
        self.non_speech_tokens: tuple[int, ...] = self._non_speech_tokens()
        self.blank_tokens: tuple[int, ...] = (*self.encode(" "), self.eot)

    @functools.cached_property
    def text_token_bytes(self) -> tuple[bytes, ...]:
        """The UTF-8 bytes of every text token (ids below `eot`; specials and timestamps have none), decoded once
        per tokenizer: each DecodingTask with CTC prefix scores needs them, and transcribe() makes one per
        temperature."""
        return tuple(self.bpe.token_bytes(i) for i in range(self.eot))

    # ------------------------------------------------------------------------------------------------------
    # building, saving, loading

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, languages: Sequence[str],
              whole_han: bool = False) -> "WhisperTokenizer":
        """Train the BPE on `texts`. `vocab_size` is the total: BPE pieces + end-of-text + start-of-transcript
        + one token per language + 6 task tokens + 1501 timestamps. A small corpus may yield fewer merges;
        read `.vocab_size` afterwards. whole_han: every Han character of `texts` is one token, on top of
        `vocab_size` (BPETokenizer.train's whole_characters)."""
        languages = _check_languages(languages)
        n_special = len(special_token_names(languages))
        if vocab_size < BYTE_ALPHABET_SIZE + n_special:
            raise InputError(f"vocab_size {vocab_size} is too small: with {len(languages)} languages the special "
                             f"and timestamp tokens take {n_special} ids and the byte-level BPE needs at least "
                             f"{BYTE_ALPHABET_SIZE}, so vocab_size must be >= {BYTE_ALPHABET_SIZE + n_special}")
        # BPETokenizer's vocab_size counts its end-of-text id, which is our first special token
        return cls(BPETokenizer.train(texts, vocab_size - n_special + 1, whole_characters=HAN if whole_han else None),
                   languages)

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.bpe.hf.save(str(directory / BPE_FILE))
        meta = {"kind": "whisper", "languages": list(self.languages), "eot": self.eot,
                "special_tokens": special_token_names(self.languages)[:-N_TIMESTAMPS],
                "n_timestamps": N_TIMESTAMPS, "vocab_size": self.vocab_size}
        (directory / META_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "WhisperTokenizer":
        directory = Path(directory)
        meta_path, bpe_path = directory / META_FILE, directory / BPE_FILE
        for path in (meta_path, bpe_path):
            if not path.is_file():
                raise MissingFileError(f"no Whisper tokenizer in {directory}: {path} is missing")
        meta = read_json_object(meta_path, "Whisper tokenizer")
        hf = read_hf_tokenizer(bpe_path)
        try:
            if meta.get("kind") != "whisper":
                raise InputError(f"kind is {meta.get('kind')!r}, expected 'whisper'")
            if not isinstance(meta.get("eot"), int) or not isinstance(meta.get("languages"), list):
                raise InputError("'eot' must be an integer and 'languages' a list")
            tokenizer = cls(BPETokenizer(hf, eot_id=meta["eot"]), meta["languages"])
        except (InputError, TypeError) as error:  # the layout's own checks on the file's values
            raise CorruptFileError(f"{meta_path} is not a valid Whisper tokenizer file beside {bpe_path} "
                                   f"({error})") from None
        expected = special_token_names(tokenizer.languages)[:-N_TIMESTAMPS]
        if meta.get("special_tokens") != expected or meta.get("vocab_size") != tokenizer.vocab_size:
            raise CorruptFileError(f"{meta_path} describes a different special-token layout than this code builds "
                                   f"with {bpe_path} (expected {expected[:3]}... and vocab_size "
                                   f"{tokenizer.vocab_size})")
        return tokenizer

    # ------------------------------------------------------------------------------------------------------
    # text

    def encode(self, text: str) -> list[int]:
        """Plain text -> BPE ids; text that spells a special token stays text."""
        return self.bpe.encode(text)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self.bpe.encode_batch(texts)

    def decode(self, ids: Iterable[int]) -> str:
        """BPE ids -> text; special and timestamp tokens are dropped."""
        return self.bpe.decode([i for i in self._check_ids(ids) if i < self.eot])

    def decode_with_timestamps(self, ids: Iterable[int]) -> str:
        """Like `decode`, but timestamp tokens are shown as "<|1.08|>" where they occur."""
        pieces, run = [], []
        for token in self._check_ids(ids):
            if token >= self.timestamp_begin:
                pieces += [self.bpe.decode(run), timestamp_text(self.timestamp_seconds(token))]
                run = []
            elif token < self.eot:
                run.append(token)
        return "".join(pieces) + self.bpe.decode(run)

    def _check_ids(self, ids: Iterable[int]) -> list[int]:
        ids = [int(i) for i in ids]  # also accepts numpy/torch integers
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise InputError(f"token id {bad[0]} is out of range for a Whisper tokenizer with vocab_size "
                             f"{self.vocab_size} (allowed: 0..{self.vocab_size - 1})")
        return ids

    # ------------------------------------------------------------------------------------------------------
    # special tokens

    def language_token(self, code: str) -> int:
        if code not in self._language_ids:
            known = f" ({LANGUAGES[code]}) is known but" if code in LANGUAGES else ""
            raise InputError(f"language {code!r}{known} is not one of this tokenizer's languages; allowed: "
                             f"{', '.join(self.languages)}")
        return self._language_ids[code]

    def sot_sequence(self, language: str | None, task: str = "transcribe", timestamps: bool = False) -> list[int]:
        """<|startoftranscript|> <|language|> <|task|> [<|notimestamps|>]; language None leaves it out so
        that the model predicts it (language detection)."""
        if task not in TASKS:
            raise InputError(f"unknown task {task!r}; allowed tasks: {', '.join(TASKS)}")
        sequence = [self.sot]
        if language is not None:
            sequence.append(self.language_token(language))
        sequence.append(self.transcribe if task == "transcribe" else self.translate)
        if not timestamps:
            sequence.append(self.no_timestamps)
        return sequence

    def timestamp_token(self, seconds: float) -> int:
        """The timestamp token for `seconds` in [0, 30], rounded to the nearest 20 ms."""
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and 0 <= seconds <= CHUNK_LENGTH):
            raise InputError(f"a timestamp must be a number of seconds in [0, {CHUNK_LENGTH}], got {seconds!r}")
        return self.timestamp_begin + round(seconds * TOKENS_PER_SECOND)

    def timestamp_seconds(self, token: int) -> float:
        """The time a timestamp token stands for (inverse of `timestamp_token`)."""
        if not self.timestamp_begin <= token < self.vocab_size:
            raise InputError(f"token {token} is not a timestamp token (allowed: {self.timestamp_begin}.."
                             f"{self.vocab_size - 1})")
        return (token - self.timestamp_begin) * SECONDS_PER_TOKEN

    def _non_speech_tokens(self) -> tuple[int, ...]:
        """Whisper's `non_speech_tokens` computed on our BPE. Hyphens and single quotes stay allowed between
        words, so " -" and " '" are suppressed (only at a word start); a symbol is suppressed when it (or
        " " + symbol) is a single token. Whisper also suppresses the first token of a multi-token musical
        symbol, safe in GPT-2's vocabulary where that token is the shared E2 99 prefix; with a small BPE the
        first token may be a lone byte or a space shared with ordinary text, so it is suppressed only when
        it is exactly that prefix."""
        result = set()
        for text in (" -", " '"):
            tokens = self.encode(text)
            if len(tokens) == 1:
                result.add(tokens[0])
        for symbol in NON_SPEECH_SYMBOLS + list(MISCELLANEOUS_SYMBOLS):
            for tokens in (self.encode(symbol), self.encode(" " + symbol)):
                if len(tokens) == 1:
                    result.add(tokens[0])
                elif symbol in MISCELLANEOUS_SYMBOLS and self.bpe.token_bytes(tokens[0]) == MISCELLANEOUS_PREFIX:
                    result.add(tokens[0])
        return tuple(sorted(result))


def _check_languages(languages: Sequence[str]) -> tuple[str, ...]:
    if isinstance(languages, str):
        raise InputError(f"languages must be a sequence of codes such as ['en', 'es'], got the string "
                         f"{languages!r}")
    languages = tuple(languages)
    if not languages:
        raise InputError(f"a Whisper tokenizer needs at least one language; allowed codes: {', '.join(LANGUAGES)}")
    unknown = [code for code in languages if code not in LANGUAGES]
    if unknown:
        raise InputError(f"unknown language code {unknown[0]!r}; allowed codes: {', '.join(LANGUAGES)}")
    duplicates = sorted({code for code in languages if languages.count(code) > 1})
    if duplicates:
        raise InputError(f"language codes must be distinct, {', '.join(duplicates)} repeated")
    return languages
