"""Four measurements behind the speech recipe's choices (README "Speech", "What each lever bought").

    python examples/speech/levers.py ctc-targets CORPUS_DIR --targets bytes [--steps 300] [--stride 2] [--lr 1e-3]
        [--batch-size 24] [--val-clips 64]
    python examples/speech/levers.py grouping CORPUS_DIR [--vocab-size 2048] [--steps 30]
    python examples/speech/levers.py joint CORPUS_DIR MODEL [--clips 180] [--search BEAMS,WEIGHT,CANDIDATES ...]
    python examples/speech/levers.py mandarin CORPUS_DIR MODEL [--splits test test_unseen] [--show 3]

CORPUS_DIR is a built corpus (zoo.speech.data.build_corpus; `zoo train whisper-cpu` leaves it under
$ZOO_HOME/cache/speech/speech-<hash>; examples/speech/make_corpus.py prints where). On a tiny corpus (make_corpus.py
--quick) both run in seconds with --steps 1 (and ctc-targets with a --batch-size no larger than its speech clips).

ctc-targets: the recipe model's encoder (conv stem, 4 layers of width 192) with a CTC head alone, trained on the
corpus's speech clips with bytes, bytes with each Han character of the training text a class of its own (chars)
or BPE pieces as CTC targets; every 100 steps it prints the validation CTC loss per target and the greedy CTC
character error rate over the first --val-clips validation speech clips, and per language. --stride 4 adds a third
stride-2 convolution (25 frames a second).

grouping: seconds per training step of the recipe model (joint CTC-attention loss, AdamW) on batches of 24 from the
trainer's BatchPlan, random and length-grouped, alternating, with the padded mel frames per batch.

joint: a trained model (a run directory or a shipped name) transcribes the first --clips speech clips of the
validation split once per --search setting (beams 0 = greedy, the CTC weight, the candidates per hypothesis), and
prints each language's error rate (WER, CER for Mandarin), their mean and the seconds it took.

mandarin: where a model's Mandarin errors come from. Its Mandarin clips of each split are transcribed with joint
decoding (as `zoo eval` does) and by the CTC head alone (greedy); for each, the CER with its substitutions,
deletions and insertions, and how many substitutions swap two characters eSpeak reads alike (its phonemes for
each character alone, tone included: zoo.speech.data.phonemize), i.e. errors no model could avoid from the
audio without the sentence's context.
"""

import argparse
import math
import random
import re
import time
from collections import Counter
from pathlib import Path

import jiwer
import torch
import torch.nn.functional as F
from torch import nn

from zoo.nn import Transformer
from zoo.speech.decoding import pad_mels
from zoo.speech.metrics import error_rate, normalize
from zoo.speech.recipe import mel_clips
from zoo.speech.tokenizer import WhisperTokenizer
from zoo.speech.whisper import encoder_backbone, sinusoids
from zoo.text.tokenizer import HAN

CTC_BYTES = 256  # the recipe's CTC head predicts bytes; --targets chars puts one class per Han character after them


class CTCEncoder(nn.Module):
    """The Whisper encoder (conv stem, sinusoidal positions, bidirectional backbone) with a CTC head only."""

    def __init__(self, classes: int, stride: int, dim: int = 192, layers: int = 4):
        super().__init__()
        self.stem = nn.ModuleList([nn.Conv1d(80, dim, 3, padding=1), nn.Conv1d(dim, dim, 3, stride=2, padding=1)])
        if stride == 4:
            self.stem.append(nn.Conv1d(dim, dim, 3, stride=2, padding=1))
        self.register_buffer("positions", sinusoids(1500, dim), persistent=False)
        self.encoder = Transformer(encoder_backbone(dim=dim, n_heads=3, n_layers=layers))
        self.head = nn.Linear(dim, classes + 1)  # + blank, the last class

    def forward(self, mel, mask):
        x = mel
        for k, conv in enumerate(self.stem):
            x = F.gelu(conv(x))
            mask = mask[:, ::2] if k > 0 and mask is not None else mask
        x = x.transpose(1, 2)
        return self.head(self.encoder(x + self.positions[:x.shape[1]], mask=mask)), mask


def ctc_text(labels: list[int], characters: str = "") -> str:
    """CTC labels (bytes, then one class per character of `characters`, as han_classes makes them) -> text; bytes
    that are not valid UTF-8 become U+FFFD."""
    text, pending = [], bytearray()
    for label in labels:
        if label < CTC_BYTES:
            pending.append(label)
            continue
        text.append(pending.decode("utf-8", errors="replace") + characters[label - CTC_BYTES])
        pending = bytearray()
    return "".join(text) + pending.decode("utf-8", errors="replace")


def greedy_ctc(logits: torch.Tensor, frames: int) -> list[int]:
    """Best path of one clip's (S, C) CTC logits over its first `frames` frames: repeats merged, blanks (the last
    class) dropped (Graves et al., 2006)."""
    best = logits[:frames].argmax(-1).tolist()
    blank = logits.shape[-1] - 1
    return [t for j, t in enumerate(best) if t != blank and (j == 0 or t != best[j - 1])]


def han_classes(texts: list[str]):
    """CTC targets as UTF-8 bytes, except that each Han character of the training text is one class of its own
    (256 + its index), so a Mandarin syllable maps to one label rather than to three bytes shared with thousands
    of other characters. Returns (encode, decode, number of classes)."""
    characters = "".join(sorted({c for text in texts for c in re.findall(HAN, text)}))
    index = {c: CTC_BYTES + k for k, c in enumerate(characters)}

    def encode(text: str) -> list[int]:
        return [label for c in text for label in ((index[c],) if c in index else c.encode("utf-8"))]

    return encode, (lambda labels: ctc_text(labels, characters)), CTC_BYTES + len(characters)


def ctc_targets(args):
    torch.manual_seed(0)
    rng = random.Random(0)
    train, val = mel_clips(args.corpus, "train"), mel_clips(args.corpus, "val")
    train_ids = [i for i, r in enumerate(train.rows) if not r["no_speech"]]
    val_ids = [i for i, r in enumerate(val.rows) if not r["no_speech"]][:args.val_clips]
    rows = [r for r in train.rows if not r["no_speech"]]
    if args.targets == "bpe":
        tokenizer = WhisperTokenizer.train([r["text"] for r in rows], 3072, sorted({r["language"] for r in rows}))
        encode, decode, classes = tokenizer.encode, tokenizer.decode, tokenizer.vocab_size
    elif args.targets == "chars":
        encode, decode, classes = han_classes([r["text"] for r in rows])
    else:
        encode, classes = (lambda text: list(text.encode("utf-8"))), 256
        decode = lambda ids: bytes(ids).decode("utf-8", errors="replace")  # noqa: E731
    model = CTCEncoder(classes, args.stride)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05, betas=(0.9, 0.98))

    def batch(clips, ids):
        mel, mask, _ = pad_mels([clips.frames(i).T for i in ids])
        return mel, mask, [encode(clips.rows[i]["text"].strip()) for i in ids]

    def ctc(mel, mask, targets):
        logits, frames_mask = model(mel, mask)
        frames = frames_mask.sum(1) if frames_mask is not None else torch.full((len(targets),), logits.shape[1])
        lengths = torch.tensor([len(t) for t in targets])
        per_clip = F.ctc_loss(logits.float().log_softmax(-1).transpose(0, 1), torch.tensor(sum(targets, [])),
                              frames, lengths, blank=classes, reduction="none", zero_infinity=True)
        return (per_clip / lengths).mean(), logits, frames

    for step in range(1, args.steps + 1):
        warm, cosine = min(1.0, step / 100), 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for group in optimizer.param_groups:
            group["lr"] = args.lr * warm * (0.1 + 0.9 * cosine)
        loss = ctc(*batch(train, rng.sample(train_ids, args.batch_size)))[0]
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 100 == 0 or step == args.steps:
            model.eval()
            with torch.no_grad():
                mel, mask, targets = batch(val, val_ids)
                val_loss, logits, frames = ctc(mel, mask, targets)
            model.train()
            hypotheses = [decode(greedy_ctc(row, n)) for row, n in zip(logits, frames.tolist())]
            references = [val.rows[i]["text"].strip() for i in val_ids]
            per_language = {}
            for language in sorted({val.rows[i]["language"] for i in val_ids}):
                chosen = [k for k, i in enumerate(val_ids) if val.rows[i]["language"] == language]
                per_language[language] = error_rate([references[k] for k in chosen],
                                                    [hypotheses[k] for k in chosen], language, characters=True)
            shown = " ".join(f"{language} {rate:.3f}" for language, rate in per_language.items())
            print(f"step {step}: validation CTC {val_loss.item():.3f} per target, "
                  f"greedy CER {jiwer.cer(references, hypotheses):.3f} ({shown})  | {hypotheses[0]!r}", flush=True)


def grouping(args):
    import zoo
    from zoo.speech.data import SpeechCorpusConfig
    from zoo.speech.recipe import SpeechDataConfig, collate, loss, prepare_data
    from zoo.speech.whisper import Whisper
    from zoo.train.trainer import BatchPlan

    corpus = SpeechCorpusConfig(train_clips=12000, val_clips=200, test_clips=300, test_unseen_clips=200)
    data = prepare_data(zoo.load("whisper-cpu").config, SpeechDataConfig(vocab_size=args.vocab_size, corpus=corpus),
                        args.corpus, None)
    model = Whisper(data.config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for name, lengths in (("random", None), ("grouped", data.lengths)) * 2:
        plan = BatchPlan(len(data.train), 24, 1, 1, 0, seed=1, lengths=lengths)
        start, frames = time.perf_counter(), 0
        for step in range(args.steps):
            (ids,) = plan.micro_batches(step)
            batch = collate([data.train[i] for i in ids.tolist()])
            frames += batch["mel"].shape[0] * batch["mel"].shape[1]
            value, _ = loss(model, batch)
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
        print(f"{name}: {(time.perf_counter() - start) / args.steps:.3f} s per step, "
              f"{frames // args.steps} padded mel frames per batch", flush=True)


def joint(args):
    import zoo
    from zoo.models import trained_dir
    from zoo.speech.decoding import DecodingOptions, decode

    torch.set_num_threads(args.threads)
    model = zoo.load(trained_dir(args.model)).eval()
    val = mel_clips(args.corpus, "val")
    ids = [i for i in range(len(val)) if not val.rows[i]["no_speech"]][:args.clips]
    for setting in args.search:
        beams, weight, candidates = setting.split(",")
        options = DecodingOptions(without_timestamps=True, beam_size=int(beams) or None, ctc_weight=float(weight),
                                  ctc_candidates=int(candidates))
        start = time.perf_counter()
        texts = []
        for first in range(0, len(ids), 32):
            texts += [r.text for r in decode(model, [val.frames(i).T for i in ids[first:first + 32]], options)]
        seconds = time.perf_counter() - start
        rates = {}
        for language in sorted({val.rows[i]["language"] for i in ids}):
            chosen = [k for k, i in enumerate(ids) if val.rows[i]["language"] == language]
            rates[language] = error_rate([val.rows[ids[k]]["text"] for k in chosen], [texts[k] for k in chosen],
                                         language)
        shown = "  ".join(f"{language} {rate:.3f}" for language, rate in rates.items())
        print(f"beams {beams} ctc_weight {weight} candidates {candidates}: {shown}  mean "
              f"{sum(rates.values()) / len(rates):.3f}  ({seconds:.1f} s)", flush=True)


def mandarin(args):
    import zoo
    from zoo.models import trained_dir
    from zoo.speech.data import phonemize, read_manifest
    from zoo.speech.decoding import DecodingOptions, decode

    torch.set_num_threads(args.threads)
    model = zoo.load(trained_dir(args.model)).eval()
    if getattr(model, "ctc_head", None) is None:
        raise SystemExit(f"{args.model} has no CTC head (a Whisper trained with model.ctc_weight > 0, as "
                         f"whisper-cpu, has one): this analysis compares joint decoding with the CTC head alone")
    trained = {c for row in read_manifest(args.corpus, "train") if row["language"] == "zh"
               for c in re.findall(HAN, row["text"])}
    readings = dict(zip(sorted(trained), phonemize(sorted(trained), "zh")))  # one eSpeak child for them all

    def reading(character: str) -> str:
        """eSpeak's phonemes for one character alone."""
        if character not in readings:  # a character the model wrote that training never had
            readings[character] = phonemize([character], "zh")[0]
        return readings[character]

    alike = Counter(reading(c) for c in trained)
    print(f"eSpeak reads {sum(alike[reading(c)] > 1 for c in trained)} of the {len(trained)} Han characters of the "
          f"training text like another of them", flush=True)
    options = DecodingOptions(without_timestamps=True, beam_size=5, ctc_weight=0.3, ctc_candidates=16)
    for split in args.splits:
        clips = mel_clips(args.corpus, split)
        ids = [i for i, row in enumerate(clips.rows) if row["language"] == "zh"]
        if not ids:
            print(f"{split}: no Mandarin clips", flush=True)
            continue
        references = [normalize(clips.rows[i]["text"]).replace(" ", "") for i in ids]
        joint_texts, ctc_texts = [], []
        for first in range(0, len(ids), 16):
            mels = [clips.frames(i).T for i in ids[first:first + 16]]
            joint_texts += [r.text for r in decode(model, mels, options)]
            with torch.no_grad():
                mel, mask, _ = pad_mels(mels)
                features, audio_mask = model.embed_audio(mel, mask)
                logits = model.ctc_head(features)
            frames = audio_mask.sum(1).tolist() if audio_mask is not None else [logits.shape[1]] * len(mels)
            ctc_texts += [ctc_text(greedy_ctc(row, n)) for row, n in zip(logits, frames)]
        characters = sum(len(r) for r in references)
        print(f"{split}: {len(ids)} Mandarin clips, {characters} characters", flush=True)
        for name, texts in (("joint decoding (5 beams, CTC weight 0.3)", joint_texts),
                            ("the CTC head alone, greedy", ctc_texts)):
            hypotheses = [normalize(t).replace(" ", "") for t in texts]
            edits = jiwer.process_characters(references, hypotheses)
            homophones = 0
            for alignment, ref, hyp in zip(edits.alignments, references, hypotheses):
                for chunk in (c for c in alignment if c.type == "substitute"):
                    pairs = zip(ref[chunk.ref_start_idx:chunk.ref_end_idx], hyp[chunk.hyp_start_idx:chunk.hyp_end_idx])
                    homophones += sum(reading(a) == reading(b) for a, b in pairs)
            print(f"  {name}: CER {edits.cer:.3f}; substitutions {edits.substitutions} ({homophones} between "
                  f"characters eSpeak reads alike), deletions {edits.deletions}, insertions {edits.insertions}",
                  flush=True)
        for k in range(min(args.show, len(ids))):
            print(f"  reference {references[k]}\n  joint     {joint_texts[k]}\n  CTC alone {ctc_texts[k]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("ctc-targets")
    p.add_argument("corpus", type=Path)
    p.add_argument("--targets", choices=("bytes", "chars", "bpe"), default="bytes")
    p.add_argument("--val-clips", type=int, default=64, help="validation speech clips scored every 100 steps")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--stride", type=int, choices=(2, 4), default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=24, help="clips per step, drawn without replacement")
    p = sub.add_parser("grouping")
    p.add_argument("corpus", type=Path)
    p.add_argument("--vocab-size", type=int, default=2048)
    p.add_argument("--steps", type=int, default=30)
    p = sub.add_parser("joint")
    p.add_argument("corpus", type=Path)
    p.add_argument("model", help="a trained run directory, or a shipped name such as whisper-cpu")
    p.add_argument("--clips", type=int, default=180)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--search", nargs="+", default=["5,0,16", "5,0.3,16"], metavar="BEAMS,WEIGHT,CANDIDATES")
    p = sub.add_parser("mandarin")
    p.add_argument("corpus", type=Path)
    p.add_argument("model", help="a trained run directory, or a shipped name such as whisper-cpu")
    p.add_argument("--splits", nargs="+", default=["test", "test_unseen"], choices=("val", "test", "test_unseen"))
    p.add_argument("--show", type=int, default=3, help="clips of each split printed with both transcripts")
    p.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    {"ctc-targets": ctc_targets, "grouping": grouping, "joint": joint, "mandarin": mandarin}[args.what](args)
