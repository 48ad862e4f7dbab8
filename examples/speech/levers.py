"""Three measurements behind the speech recipe's choices (README "Speech", "What each lever bought").

    python examples/speech/levers.py ctc-targets CORPUS_DIR --targets bytes [--steps 300] [--stride 2] [--lr 1e-3]
        [--batch-size 24]
    python examples/speech/levers.py grouping CORPUS_DIR [--vocab-size 2048] [--steps 30]
    python examples/speech/levers.py joint CORPUS_DIR MODEL [--clips 180] [--search BEAMS,WEIGHT,CANDIDATES ...]

CORPUS_DIR is a built corpus (zoo.speech.data.build_corpus; `zoo train whisper-cpu` leaves it under
$ZOO_HOME/cache/speech/speech-<hash>; examples/speech/make_corpus.py prints where). On a tiny corpus (make_corpus.py
--quick) both run in seconds with --steps 1 (and ctc-targets with a --batch-size no larger than its speech clips).

ctc-targets: the recipe model's encoder (conv stem, 4 layers of width 192) with a CTC head alone, trained on the
corpus's speech clips with bytes or BPE pieces as CTC targets; every 100 steps it prints the validation CTC loss per
target and the greedy CTC character error rate. --stride 4 adds a third stride-2 convolution (25 frames a second).

grouping: seconds per training step of the recipe model (joint CTC-attention loss, AdamW) on batches of 24 from the
trainer's BatchPlan, random and length-grouped, alternating, with the padded mel frames per batch.

joint: a trained model (a run directory or a shipped name) transcribes the first --clips speech clips of the
validation split once per --search setting (beams 0 = greedy, the CTC weight, the candidates per hypothesis), and
prints each language's error rate (WER, CER for Mandarin), their mean and the seconds it took.
"""

import argparse
import math
import random
import time
from pathlib import Path

import jiwer
import torch
import torch.nn.functional as F
from torch import nn

from zoo.nn import Transformer
from zoo.speech.decoding import pad_mels
from zoo.speech.recipe import mel_clips
from zoo.speech.tokenizer import WhisperTokenizer
from zoo.speech.whisper import encoder_backbone, sinusoids


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


def ctc_targets(args):
    torch.manual_seed(0)
    rng = random.Random(0)
    train, val = mel_clips(args.corpus, "train"), mel_clips(args.corpus, "val")
    train_ids = [i for i, r in enumerate(train.rows) if not r["no_speech"]]
    val_ids = [i for i, r in enumerate(val.rows) if not r["no_speech"]][:64]
    if args.targets == "bpe":
        rows = [r for r in train.rows if not r["no_speech"]]
        tokenizer = WhisperTokenizer.train([r["text"] for r in rows], 3072, sorted({r["language"] for r in rows}))
        encode, decode, classes = tokenizer.encode, tokenizer.decode, tokenizer.vocab_size
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
            hypotheses = []
            for row, n in zip(logits.argmax(-1).tolist(), frames.tolist()):
                best = row[:n]  # greedy CTC: merge repeats, drop blanks
                kept = [t for j, t in enumerate(best) if t != classes and (j == 0 or t != best[j - 1])]
                hypotheses.append(decode(kept))
            references = [val.rows[i]["text"].strip() for i in val_ids]
            print(f"step {step}: validation CTC {val_loss.item():.3f} per target, "
                  f"greedy CER {jiwer.cer(references, hypotheses):.3f}  | {hypotheses[0]!r}", flush=True)


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
    from zoo.speech.decoding import DecodingOptions, decode
    from zoo.speech.metrics import error_rate

    torch.set_num_threads(args.threads)
    model = (zoo.load(args.model) if Path(args.model).is_dir() else zoo.load(args.model, pretrained=True)).eval()
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("ctc-targets")
    p.add_argument("corpus", type=Path)
    p.add_argument("--targets", choices=("bytes", "bpe"), default="bytes")
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
    args = parser.parse_args()
    {"ctc-targets": ctc_targets, "grouping": grouping, "joint": joint}[args.what](args)
