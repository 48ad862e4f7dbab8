"""How the trainer feeds and scores the Whisper-style model: data settings, the multitask training targets,
the loss (cross-entropy, optionally joint with CTC on bytes and on phonemes), and evaluation (WER, CER, BLEU,
language ID, no-speech).

These are the functions the `whisper` Family registers (zoo/speech/whisper.py); the trainer calls nothing else.

Training targets follow Whisper's multitask format (Radford et al., 2022, fig. 1): the decoder reads
    <|startoftranscript|> <|xx|> <|transcribe|> or <|translate|> <|notimestamps|> text ...
and predicts the language token (language identification), then the text and <|endoftext|>; the task and
<|notimestamps|> tokens are instructions, given and never predicted (their labels are ignored). A clip with
no speech must predict <|nospeech|> right after <|startoftranscript|>, so the distribution there is both the
language detector and the no-speech detector. Decoding never feeds <|nospeech|> back (whisper suppresses it and
reads P(<|nospeech|>) instead): on silence the decoder meets a full prompt in some language, and whisper's rule
drops the window only if the text it then writes is unconfident (average log-probability below -1). So a
no-speech clip also trains what follows such a prompt: no preference at all for the first token (the
cross-entropy against the uniform distribution, the maximum-entropy target; whisper's blank suppression bans
<|endoftext|> there) and <|endoftext|> after it. Trained with <|nospeech|> <|endoftext|> alone, the decoder is
sure there is no speech and still writes fluent, confident text after the prompt (README "Speech").
A model with WhisperConfig.translate_from_transcript reads a translation's prompt after the clip's transcript,
    <|startofprev|> transcript <|startoftranscript|> <|xx|> <|translate|> <|notimestamps|> translation ...
(consecutive decoding, Dong et al., 2021); the transcript is context, its labels ignored.
"""

import dataclasses
import hashlib
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from zoo.data.collate import pad_collate
from zoo.errors import InputError
from zoo.registry import TrainingData
from zoo.speech.audio import MEL_PAD, load_audio, log_mel_spectrogram
from zoo.speech.data import ESPEAK_VOICES, PHONEME_SEPARATOR, SpeechCorpusConfig, build_corpus, phonemize, read_manifest
from zoo.speech.tokenizer import WhisperTokenizer
from zoo.utils import model_device, read_cache, unwrapped, written_atomically

IGNORE = -100  # label padding and instruction tokens: cross_entropy's ignore_index
UNIFORM = -101  # label of a position whose target is the uniform distribution (no speech: no preferred token)
# The CTC head predicts the transcript's UTF-8 bytes (Li et al., 2019, "Bytes Are All You Need: End-to-End
# Multilingual Speech Recognition and Synthesis with Bytes"), not the decoder's BPE pieces: 256 classes shared
# by every language, each seen thousands of times per epoch, where a BPE piece (often a whole word) is seen a
# few times (README "Speech" has the measured difference). At 50 encoder frames a second there is room for
# a byte and a blank between bytes (speech in the corpus is about 18 bytes a second).
CTC_CLASSES = 256 + 1  # bytes 0-255, blank = 256
# The phoneme head (hierarchical multitask CTC, Toshniwal et al., 2017; Sanabria & Metze, 2018) predicts eSpeak NG's
# phonemes of the transcript (zoo.speech.data.phonemize, its ASCII mnemonics) as units (phoneme_units): one class per
# eSpeak phoneme name ("tS;", "A~", "aI"), not per character of a name. A name's characters are no sounds of their
# own, and they make targets long for CTC, which needs a frame for each target and a blank between two equal ones: a
# Mandarin syllable, "tS;'iou214" (九), was 9 characters, 23-28 a second of Mandarin speech at the corpus's rates
# (eSpeak's default 175 words a minute and the fastest, 210), so CTC needed up to two thirds of the encoder's 50
# frames a second. A Mandarin final's tone contour is a unit of its own ("iou214" -> "iou", "214"): the five contours
# (55, 35, 214, 51, 11) are pitch patterns every final shares, so each is seen often, where a class per toned final
# (97 in the sentences below, the rarest seen 35 times in 20,000) would split what the finals share. A Mandarin
# syllable is then mostly 3 or 4 units and at most 5 (initial, medial glide, final, tone, nasal coda: 九 "tS; iou 214",
# 票 "ph j Au 51", 关 "k w a 55 n"): 13-17 units a second in every language at those rates (bytes: 14-17 in Mandarin,
# 19-31 in the others), about a third of the frames. PHONEME_UNITS: every unit of zoo.speech.grammar's sentences
# (5,000 drawn for each split and language) through phonemize and phoneme_units, sorted: 129, each seen at least 174
# times, in every split; a name that more than one language has ("a", "n", "@") is one class. Then "other" (a unit
# outside them) and the blank, last. ASCII, not IPA: eSpeak's IPA writes one character per tone and merges tones 1 and
# 4 (see phonemize), so 153 of the 375 Han characters of those sentences, each read alone, read like another; with the
# contours 113 do (他 她: "th/'A55/_|").
PHONEME_UNITS: tuple[str, ...] = (
    "**", "0", "11", "214", "3", "35", "3:", "51", "55", "@", "@-", "@L", "@r", "A", "A:", "A@", "Au", "A~", "B", "C",
    "D", "E", "E:", "E~", "I", "I2", "J^", "N", "O", "O:", "O@", "OI", "OY", "O~", "Q", "R", "R2", "S", "S;", "T", "U",
    "U@", "UR", "V", "W", "W~", "X", "Y", "Y:", "Z", "a", "a#", "a-", "aI", "aI@", "aU", "aa", "ai", "b", "d", "dZ",
    "e", "e-", "e:", "e@", "eI", "ei", "f", "g", "h", "i", "i.", "i:", "i@", "i@3", "iA", "iE", "i[", "iou", "j", "k",
    "kh", "l", "l^", "m", "n", "n^", "o", "o-", "o:", "o@", "oI", "oU", "ong", "ou", "p", "pF", "ph", "r", "r-", "s",
    "s.", "t", "t2", "tS", "tS;", "tS;h", "th", "ts", "ts.", "ts.h", "tsh", "u", "u:", "u@", "ua", "uai", "uei", "uo",
    "v", "w", "x", "y", "y&", "y:", "yE", "z", "z.", "z2"
)
PHONEME_OTHER = len(PHONEME_UNITS)
PHONEME_CLASSES = len(PHONEME_UNITS) + 2  # the units, other, blank
# No sounds: eSpeak's pause phonemes, its reserved names (compiledata.c) "_:" pause, "_" short, "_!" short
# without linking, "_|" very short, "_::" long, "_;_" clause, and two of them written as one name (German
# "_!_|"): the Mandarin voice ends every word with "_|", German writes "_!" before a word's first vowel, French
# "_|" before a word it does not link to. And ";", which every voice writes between an "i" and a vowel
# (English "the empty" "D/I2/; 'E/m/p/t/i") and for which eSpeak's IPA writes nothing.
PHONEME_SILENT = re.compile(r"(?:_(?:;_|::|[:!|])?)+|;")
MANDARIN_TONE = re.compile(r"(.+?)(55|35|214|51|11)")  # a toned final of the Mandarin voice: final, contour
_PHONEME_INDEX = {unit: k for k, unit in enumerate(PHONEME_UNITS)}
FEATURES_VERSION = 1  # bump when the log-mel front end changes (cache key)
PHONEMES_VERSION = 3  # bump when zoo.speech.data.phonemize's output changes (cache key)
SPLITS = ("train", "val", "test", "test_unseen")


@dataclass
class SpeechDataConfig:
    corpus: SpeechCorpusConfig = field(default_factory=SpeechCorpusConfig)
    vocab_size: int = 3072  # the whole vocabulary: BPE pieces (~1,550) + specials + 1501 timestamps
    whole_han: bool = False  # every Han character of the training text one token, beyond vocab_size
    translate_share: float = 0.5  # share of the non-English training clips taught to translate into English
    # Every non-English training clip twice, once per task (transcribe, translate), instead of once with the task
    # drawn by translate_share: the decoder sees each transcript and each translation of the split.
    both_tasks: bool = False
    quick_eval_clips: int = 96  # clips decoded by the evaluations during training
    eval_beam_size: int | None = None  # None: greedy decoding in evaluations
    eval_ctc_weight: float = 0.0  # joint CTC/attention decoding of the transcripts in evaluations (zoo.speech.joint)

    def __post_init__(self):
        if not 0.0 <= self.translate_share <= 1.0:
            raise InputError(f"data.translate_share must be in [0, 1], got {self.translate_share}")
        if self.both_tasks and self.translate_share == 0:
            raise InputError("data.both_tasks=true trains every non-English clip to translate too, but "
                             "data.translate_share=0 turns translation off; allowed: both_tasks=false, or a "
                             "translate_share above 0")
        if self.quick_eval_clips < 1:
            raise InputError(f"data.quick_eval_clips={self.quick_eval_clips}; allowed: an integer >= 1")
        if self.eval_beam_size is not None and self.eval_beam_size < 1:
            raise InputError(f"data.eval_beam_size={self.eval_beam_size}; allowed: an integer >= 1, or None (greedy)")
        if not 0.0 <= self.eval_ctc_weight <= 1.0:
            raise InputError(f"data.eval_ctc_weight={self.eval_ctc_weight}; allowed: a number in [0, 1] (0: the "
                             f"decoder alone)")


# ----------------------------------------------------------------------------------------------------------
# features: every clip's log-mel computed once, cached beside the corpus


class MelClips:
    """The log-mel frames (T, n_mels) of every clip of one split plus its manifest row, from one cached file."""

    def __init__(self, mel: torch.Tensor, offsets: torch.Tensor, rows: list[dict]):
        self.mel, self.offsets, self.rows = mel, offsets, rows

    def __len__(self):
        return len(self.rows)

    def n_frames(self, i: int) -> int:
        return int(self.offsets[i + 1] - self.offsets[i])

    def frames(self, i: int) -> torch.Tensor:
        return self.mel[self.offsets[i]:self.offsets[i + 1]].float()  # (T, n_mels)


def mel_clips(corpus_dir: Path, split: str) -> MelClips:
    """Log-mel features of a split, computed on first use and cached (fp16, one safetensors file)."""
    from safetensors.torch import save_file
    from tqdm import tqdm

    rows = read_manifest(corpus_dir, split)
    cache = corpus_dir / f"{split}.mel-v{FEATURES_VERSION}.safetensors"
    tensors = read_cache(cache, ["mel", "offsets"])
    if tensors is None:
        mels = [log_mel_spectrogram(load_audio(corpus_dir / row["audio"])).T.half()
                for row in tqdm(rows, desc=f"log-mel {split}", unit="clip", disable=len(rows) < 200)]
        offsets = torch.tensor([0, *np.cumsum([len(m) for m in mels])], dtype=torch.long)
        tensors = {"mel": torch.cat(mels), "offsets": offsets}
        with written_atomically(cache) as tmp:
            save_file(tensors, str(tmp))
    return MelClips(tensors["mel"], tensors["offsets"], rows)


def phoneme_units(phonemes: str, language: str) -> list[str]:
    """The phoneme head's units of eSpeak's phonemes of a text in `language` (zoo.speech.data.phonemize): its
    phoneme names (split at PHONEME_SEPARATOR and spaces), stress marks dropped from their start; pauses and
    ";" dropped (PHONEME_SILENT), as are the voice-switch markers "(en)" ... "(cmn)", the names between them
    kept; and a toned final of the Mandarin voice split into final and tone contour (MANDARIN_TONE: "iou214" ->
    "iou", "214"), only there: English "0" (not) and "i@3" (here) are whole names."""
    units, voice = [], ESPEAK_VOICES[language]
    for name in re.split(rf"[{PHONEME_SEPARATOR}\s]+", phonemes):
        name = name.lstrip("',")
        if name.startswith("(") and name.endswith(")"):  # eSpeak switching voice, to "en", back to "cmn"
            voice = name[1:-1]
        elif name and not PHONEME_SILENT.fullmatch(name):
            toned = MANDARIN_TONE.fullmatch(name) if voice == ESPEAK_VOICES["zh"] else None
            units.extend(toned.groups() if toned else [name])
    return units


def phoneme_targets(phonemes: str, language: str) -> list[int]:
    """Phoneme CTC targets of eSpeak's phonemes of a text in `language`: the class of each of its phoneme_units
    in PHONEME_UNITS, PHONEME_OTHER for a unit outside them."""
    return [_PHONEME_INDEX.get(unit, PHONEME_OTHER) for unit in phoneme_units(phonemes, language)]


def phoneme_readings(corpus_dir: Path, split: str, rows: list[dict]) -> list[str]:
    """eSpeak's phonemes of every row's transcript ("" for no speech), in row order: read once (one forked eSpeak
    child a language) and cached beside the log-mels as a JSON list; a damaged cache is built again."""
    cache = corpus_dir / f"{split}.phonemes-v{PHONEMES_VERSION}.json"
    if cache.exists():
        try:
            readings = json.loads(cache.read_text(encoding="utf-8"))
        except ValueError:  # UnicodeDecodeError and JSONDecodeError
            readings = None
        if isinstance(readings, list) and len(readings) == len(rows) and all(isinstance(r, str) for r in readings):
            return readings
        warnings.warn(f"damaged cache: {cache} is not a JSON list of {len(rows)} strings; deleting it and building "
                      f"it again", stacklevel=2)
        cache.unlink(missing_ok=True)
    readings = [""] * len(rows)
    for language in sorted({row["language"] for row in rows if not row["no_speech"]}):
        ids = [i for i, row in enumerate(rows) if not row["no_speech"] and row["language"] == language]
        for i, reading in zip(ids, phonemize([rows[i]["text"].strip() for i in ids], language)):
            readings[i] = reading
    with written_atomically(cache) as tmp:
        tmp.write_text(json.dumps(readings, ensure_ascii=False), encoding="utf-8")
    return readings


# ----------------------------------------------------------------------------------------------------------
# the multitask targets


def target_tokens(tokenizer: WhisperTokenizer, row: dict, task: str, prompt_language: str | None = None,
                  filler: int = 0, from_transcript: bool = False) -> tuple[list[int], list[int]]:
    """(decoder input, labels) for one clip and task, in Whisper's layout (see the module docstring).
    A no-speech clip's prompt is in `prompt_language` (default: the tokenizer's first) and is followed by
    `filler`, any text token (default: the first), after which the transcript ends. from_transcript: a
    translation follows the clip's transcript as previous text (WhisperConfig.translate_from_transcript), which
    is context, never predicted."""
    if row["no_speech"]:
        prompt = tokenizer.sot_sequence(prompt_language or tokenizer.languages[0], task, timestamps=False)
        labels = [tokenizer.no_speech] + [IGNORE] * (len(prompt) - 2) + [UNIFORM, tokenizer.eot]
        return prompt + [filler], labels
    prompt = tokenizer.sot_sequence(row["language"], task, timestamps=False)  # sot, lang, task, notimestamps
    text = tokenizer.encode((row["translation"] if task == "translate" else row["text"]).strip())
    previous = ([tokenizer.sot_prev, *tokenizer.encode(row["text"].strip())]
                if from_transcript and task == "translate" else [])
    inputs = previous + prompt + text
    # after sot: predict the language; after the language and task tokens: nothing (instructions)
    labels = [IGNORE] * len(previous) + [prompt[1]] + [IGNORE] * (len(prompt) - 2) + text + [tokenizer.eot]
    return inputs, labels


def _draw(what: str, index: int) -> float:
    """A uniform number in [0, 1) that is a pure function of (what, clip index): workers and a resume see the
    same choice, and a clip keeps it across epochs."""
    return int(hashlib.sha256(f"{what}:{index}".encode()).hexdigest()[:8], 16) / 16**8


def translatable(row: dict) -> bool:
    """Speech in a language other than English: a clip the model can be taught (and asked) to translate."""
    return not row["no_speech"] and row["language"] != "en"


def choose_task(row: dict, index: int, translate_share: float) -> str:
    """transcribe, or (for a translate_share of the non-English clips) translate."""
    if not translatable(row) or translate_share == 0:
        return "transcribe"
    return "translate" if _draw("task", index) < translate_share else "transcribe"


def clip_tasks(row: dict, index: int, translate_share: float, both_tasks: bool) -> tuple[str, ...]:
    """The tasks a clip is trained on: with both_tasks a non-English speech clip both, else choose_task's one."""
    if both_tasks and translatable(row) and translate_share > 0:
        return ("transcribe", "translate")
    return (choose_task(row, index, translate_share),)


def choose_prompt_language(index: int, languages) -> str:
    """The prompt language of no-speech clip `index`: each of the model's languages as often."""
    return languages[int(_draw("language", index) * len(languages))]


def choose_filler(index: int, tokenizer: WhisperTokenizer) -> int:
    """The text token after no-speech clip `index`'s prompt: any of the BPE pieces (ids below <|endoftext|>)."""
    return int(_draw("filler", index) * tokenizer.eot)


class SpeechItems:
    """Items of one split: a clip's log-mel frames with the targets of one of its tasks (clip_tasks: one item per
    clip, or with both_tasks two per non-English clip). corpus_dir: where the split came from (evaluation reads
    the test splits there too). phonemes: each clip's eSpeak phonemes (phoneme_readings), for a model with a
    phoneme head; None: no phoneme targets. from_transcript: translations follow the transcript (target_tokens)."""

    def __init__(self, clips: MelClips, tokenizer: WhisperTokenizer, translate_share: float, corpus_dir: Path,
                 phonemes: list[str] | None = None, both_tasks: bool = False, from_transcript: bool = False):
        self.clips, self.tokenizer, self.corpus_dir, self.phonemes = clips, tokenizer, corpus_dir, phonemes
        self.from_transcript = from_transcript
        self.tasks = [(i, task) for i, row in enumerate(clips.rows)
                      for task in clip_tasks(row, i, translate_share, both_tasks)]  # (clip, task) per item

    def __len__(self):
        return len(self.tasks)

    def lengths(self) -> list[int]:
        """Each item's mel frames: batches group items of similar length."""
        return [self.clips.n_frames(i) for i, _ in self.tasks]

    def __getitem__(self, k: int) -> dict:
        i, task = self.tasks[k]
        row = self.clips.rows[i]
        inputs, labels = target_tokens(self.tokenizer, row, task, choose_prompt_language(i, self.tokenizer.languages),
                                       choose_filler(i, self.tokenizer), self.from_transcript)
        transcript = [] if row["no_speech"] else list(row["text"].strip().encode("utf-8"))  # CTC targets: bytes
        item = {"mel": self.clips.frames(i), "tokens": torch.tensor(inputs), "labels": torch.tensor(labels),
                **ctc_item("ctc", transcript)}
        if self.phonemes is not None:  # no speech: no targets, as the bytes
            targets = [] if row["no_speech"] else phoneme_targets(self.phonemes[i], row["language"])
            item.update(ctc_item("phoneme", targets))
        return item


def ctc_item(name: str, targets: list[int]) -> dict:
    """CTC targets as an item holds them: `name`_targets (one padding class when empty: pad_collate pads but
    does not make empty rows) and `name`_length, the true count."""
    return {f"{name}_targets": torch.tensor(targets or [0], dtype=torch.long),
            f"{name}_length": torch.tensor(len(targets))}


PAD = {"mel": MEL_PAD, "tokens": 0, "labels": IGNORE, "ctc_targets": 0}


def collate(items: list[dict]) -> dict:
    """Speech items -> a batch (pad_collate); phoneme targets are padded as the byte CTC targets where the
    items hold them (a model with a phoneme head)."""
    phonemes = bool(items) and "phoneme_targets" in items[0]
    return pad_collate(items, {**PAD, "phoneme_targets": 0} if phonemes else PAD)


def prepare_data(config, data_config: SpeechDataConfig, path, cache_dir, model=None,
                 run_dir=None) -> TrainingData:
    """The built-in synthesised corpus (path None) or a corpus directory with the same manifests; the BPE is
    trained on the training transcripts and translations (or a trained model's tokenizer is reused)."""
    corpus_dir = Path(path) if path is not None else build_corpus(data_config.corpus, Path(cache_dir) / "speech")
    splits = {split: mel_clips(corpus_dir, split) for split in ("train", "val")}
    tokenizer = getattr(model, "tokenizer", None) if model is not None else None
    if tokenizer is None:
        rows = splits["train"].rows
        texts = [r["text"] for r in rows if not r["no_speech"]] + [r["translation"] for r in rows if not r["no_speech"]]
        languages = sorted({r["language"] for r in rows if not r["no_speech"]})
        tokenizer = WhisperTokenizer.train(texts, data_config.vocab_size, languages, whole_han=data_config.whole_han)
    if model is None:
        config = dataclasses.replace(config, vocab_size=tokenizer.vocab_size)
    phonemes = {name: phoneme_readings(corpus_dir, name, clips.rows) if config.phoneme_ctc_weight > 0 else None
                for name, clips in splits.items()}
    # validation keeps one item per clip, so its loss stays comparable between runs with and without both_tasks
    train, val = (SpeechItems(splits[name], tokenizer, data_config.translate_share, corpus_dir, phonemes[name],
                              both_tasks=data_config.both_tasks and name == "train",
                              from_transcript=config.translate_from_transcript) for name in ("train", "val"))
    return TrainingData(train, val, config, extras={"tokenizer": tokenizer}, lengths=train.lengths())


def example_batch(model, generator: torch.Generator) -> tuple[dict, dict]:
    """Three clips of different lengths (so the batch is padded) with random targets, for the cross-model
    tests; no frozen modules."""
    n_mels, vocab = model.config.n_mels, model.config.vocab_size
    items = []
    for frames, length in ((40, 5), (64, 7), (23, 3)):
        tokens = torch.randint(0, vocab, (length + 1,), generator=generator)
        mel = torch.randn(frames, n_mels, generator=generator)
        ctc = torch.randint(0, 256, (length,), generator=generator).tolist()
        items.append({"mel": mel, "tokens": tokens[:-1], "labels": tokens[1:], **ctc_item("ctc", ctc)})
        if model.config.phoneme_ctc_weight > 0:
            phonemes = torch.randint(0, PHONEME_CLASSES - 1, (length,), generator=generator).tolist()
            items[-1].update(ctc_item("phoneme", phonemes))
    return collate(items), {}


# ----------------------------------------------------------------------------------------------------------
# the loss


def token_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed loss, number of predicted positions) of (B, L, V) logits against (B, L) labels: cross-entropy
    with the label, or at UNIFORM positions with the uniform distribution (-mean over the vocabulary of the
    log-probabilities); IGNORE positions do not count."""
    logits, labels = logits.float().flatten(0, 1), labels.flatten()
    uniform = labels == UNIFORM
    total = F.cross_entropy(logits, labels.masked_fill(uniform, IGNORE), ignore_index=IGNORE, reduction="sum")
    total = total - logits[uniform].log_softmax(-1).mean(-1).sum()
    return total, (labels != IGNORE).sum()


def ctc_loss(logits: torch.Tensor, audio_mask: torch.Tensor | None, targets: torch.Tensor,
             lengths: torch.Tensor) -> torch.Tensor:
    """CTC loss per target token, averaged over the clips, of (B, S, C) logits (the blank is the last class)
    against (B, N) right-padded targets of the given lengths."""
    log_probs = logits.float().log_softmax(-1).transpose(0, 1)  # (S, B, C)
    B, S, classes = logits.shape
    frames = audio_mask.sum(1) if audio_mask is not None else torch.full((B,), S, device=logits.device)
    per_clip = F.ctc_loss(log_probs, targets, frames, lengths, blank=classes - 1,
                          reduction="none", zero_infinity=True)  # a no-speech clip's target is empty: all blanks
    return (per_clip / lengths.clamp(min=1)).mean()  # per target token, as reduction="mean" (which divides by 0)


def loss(model, batch: dict):
    """Cross-entropy of the decoder's next-token predictions (mean over predicted tokens), plus with
    config.ctc_weight > 0 the encoder's CTC loss on the transcript's bytes (joint CTC-attention, Watanabe et
    al., 2017) and with config.phoneme_ctc_weight > 0 the phoneme head's CTC loss on its phonemes (Toshniwal et
    al., 2017): (1 - w_ctc - w_phoneme) * CE + w_ctc * CTC + w_phoneme * phoneme CTC."""
    mel, mel_mask = batch["mel"].transpose(-1, -2), batch["mel_mask"]
    config = unwrapped(model).config
    w_ctc, w_phoneme = config.ctc_weight, config.phoneme_ctc_weight
    heads = w_ctc > 0 or w_phoneme > 0
    output = model(mel, batch["tokens"], mel_mask, ctc=heads)
    logits, ctc_logits, phoneme_logits, audio_mask = output if heads else (output, None, None, None)
    total, count = token_loss(logits, batch["labels"])
    ce = total / count.clamp(min=1)
    loss_value, parts = (1 - w_ctc - w_phoneme) * ce, {"ce": ce.detach()}
    if w_ctc > 0:
        ctc = ctc_loss(ctc_logits, audio_mask, batch["ctc_targets"], batch["ctc_length"])
        loss_value, parts["ctc"] = loss_value + w_ctc * ctc, ctc.detach()
    if w_phoneme > 0:
        phoneme_ctc = ctc_loss(phoneme_logits, audio_mask, batch["phoneme_targets"], batch["phoneme_length"])
        loss_value, parts["phoneme_ctc"] = loss_value + w_phoneme * phoneme_ctc, phoneme_ctc.detach()
    return loss_value, parts


# ----------------------------------------------------------------------------------------------------------
# evaluation


@torch.inference_mode()
def teacher_forced_loss(model, items: SpeechItems, indices: list[int], batch_size: int = 32) -> float:
    """The training loss's cross-entropy on the given items: mean over every predicted token."""
    device = model_device(model)
    nll, count = 0.0, 0
    for start in range(0, len(indices), batch_size):
        batch = collate([items[i] for i in indices[start:start + batch_size]])
        batch = {k: v.to(device) for k, v in batch.items()}
        total, n = token_loss(model(batch["mel"].transpose(-1, -2), batch["tokens"], batch["mel_mask"]),
                              batch["labels"])
        nll, count = nll + total.item(), count + int(n)
    return nll / count


def decode_clips(model, clips: MelClips, indices: list[int], task: str, beam_size: int | None,
                 ctc_weight: float = 0.0, batch_size: int = 32, prompts: list | None = None) -> list:
    """zoo.speech.decoding results for the clips, language detected per clip, no timestamps. prompts: each
    clip's previous text (token ids), or None."""
    from zoo.speech.decoding import DecodingOptions, decode

    options = DecodingOptions(task=task, without_timestamps=True, beam_size=beam_size, ctc_weight=ctc_weight)
    device = model_device(model)
    # batches of similar lengths: a batch is padded to its longest clip, and the encoder and the CTC prefix
    # recursion (zoo.speech.joint) run over every padded frame
    order = sorted(range(len(indices)), key=lambda k: clips.n_frames(indices[k]))
    results = [None] * len(indices)
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        mels = [clips.frames(indices[k]).T.to(device) for k in batch]
        for k, result in zip(batch, decode(model, mels, options,
                                           prompts=[prompts[k] for k in batch] if prompts is not None else None)):
            results[k] = result
    return results


def is_silence(result, no_speech_threshold: float = 0.6, logprob_threshold: float = -1.0) -> bool:
    """Whisper's rule for a window with nobody speaking (transcribe(): no text is kept)."""
    return result.no_speech_prob > no_speech_threshold and result.avg_logprob < logprob_threshold


def score_split(model, clips: MelClips, indices: list[int], data_config: SpeechDataConfig, suffix: str = "",
                translate: bool = True) -> tuple[dict, list[tuple[str, str]]]:
    """Transcription (and translation) quality on the clips: error rates per language, BLEU and chrF,
    language identification, no-speech detection, hallucinations, real-time factor. Also returns the
    (true, predicted) language pairs for the confusion matrix ("-" for no speech)."""
    import time

    from zoo.speech.metrics import CHARACTER_LANGUAGES, error_rate, translation_scores

    rows = [clips.rows[i] for i in indices]
    start = time.perf_counter()
    heard = decode_clips(model, clips, indices, "transcribe", data_config.eval_beam_size, data_config.eval_ctc_weight)
    speech = [k for k, row in enumerate(rows) if not row["no_speech"]]
    foreign = [k for k in speech if translatable(rows[k])]
    silent = [is_silence(r) for r in heard]
    # a model that translates from the transcript (consecutive decoding) gets the one just heard (none: silence)
    prompts = ([[] if silent[k] else heard[k].tokens for k in foreign]
               if unwrapped(model).config.translate_from_transcript else None)
    translated = decode_clips(model, clips, [indices[k] for k in foreign], "translate", data_config.eval_beam_size,
                              prompts=prompts) if translate and foreign else []
    seconds = time.perf_counter() - start
    texts = ["" if quiet else r.text for r, quiet in zip(heard, silent)]
    metrics: dict[str, float] = {}
    for language in sorted({rows[k]["language"] for k in speech}):
        chosen = [k for k in speech if rows[k]["language"] == language]
        references, hypotheses = [rows[k]["text"] for k in chosen], [texts[k] for k in chosen]
        kind = "cer" if language in CHARACTER_LANGUAGES else "wer"
        metrics[f"{kind}_{language}{suffix}"] = error_rate(references, hypotheses, language)
        if kind == "wer" and language != "en":  # CER too: WER counts a word with one wrong letter as a whole error
            metrics[f"cer_{language}{suffix}"] = error_rate(references, hypotheses, language, characters=True)
    if translated:
        scores = translation_scores([rows[k]["translation"] for k in foreign], [r.text for r in translated])
        metrics.update({f"{name}{suffix}": value for name, value in scores.items()})
    if speech:
        metrics[f"language_accuracy{suffix}"] = sum(heard[k].language == rows[k]["language"]
                                                    for k in speech) / len(speech)
    quiet_rows = [k for k, row in enumerate(rows) if row["no_speech"]]
    if quiet_rows:
        true_positive = sum(silent[k] for k in quiet_rows)
        metrics[f"no_speech_recall{suffix}"] = true_positive / len(quiet_rows)
        metrics[f"no_speech_precision{suffix}"] = true_positive / max(1, sum(silent))
        metrics[f"hallucination_rate{suffix}"] = sum(bool(texts[k]) for k in quiet_rows) / len(quiet_rows)
    metrics[f"no_speech_accuracy{suffix}"] = sum(s == row["no_speech"] for s, row in zip(silent, rows)) / len(rows)
    audio_seconds = sum(row["duration"] for row in rows)
    metrics[f"real_time_factor{suffix}"] = seconds / audio_seconds
    pairs = [("-" if row["no_speech"] else row["language"], "-" if quiet else r.language)
             for row, r, quiet in zip(rows, heard, silent)]
    return metrics, pairs


def save_language_confusion(pairs: list[tuple[str, str]], path: Path):
    from zoo.plots import save_confusion_matrix

    names = sorted({name for pair in pairs for name in pair} - {"-"}) + ["-"]
    confusion = torch.zeros(len(names), len(names), dtype=torch.long)
    for true, predicted in pairs:
        confusion[names.index(true), names.index(predicted)] += 1
    save_confusion_matrix(confusion, [n if n != "-" else "no speech" for n in names], path)


def evaluate(model, data: TrainingData, data_config: SpeechDataConfig, out_dir=None, quick: bool = False) -> dict:
    """During training (quick): val_loss and the decoded quality of the first quick_eval_clips validation
    clips. Full (export, `zoo eval`): val_loss on the validation split, then everything on the held-out test
    split and, with the suffix _unseen, on the test sentences made of words never seen in training; with
    out_dir, language_confusion.png."""
    from zoo.utils import eval_mode

    val: SpeechItems = data.val
    with eval_mode(model):
        if quick:  # a progress signal: greedy, the decoder alone (cheap), whatever the final evaluation uses
            indices = list(range(min(len(val), data_config.quick_eval_clips)))
            greedy = dataclasses.replace(data_config, eval_beam_size=None, eval_ctc_weight=0.0)
            metrics, _ = score_split(model, val.clips, indices, greedy, translate=False)
            return {"val_loss": teacher_forced_loss(model, val, indices), **metrics}
        metrics = {"val_loss": teacher_forced_loss(model, val, list(range(len(val))))}
        test = mel_clips(val.corpus_dir, "test")
        scores, pairs = score_split(model, test, list(range(len(test))), data_config)
        metrics.update(scores)
        unseen = mel_clips(val.corpus_dir, "test_unseen")
        metrics.update(score_split(model, unseen, list(range(len(unseen))), data_config, suffix="_unseen",
                                   translate=False)[0])
    if out_dir is not None:
        save_language_confusion(pairs, Path(out_dir) / "language_confusion.png")
    return metrics
