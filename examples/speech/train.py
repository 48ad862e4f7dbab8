"""Train the Whisper-style model on the synthesised corpus and print its test-set figures.

    python examples/speech/train.py runs/speech [--steps 800]
    python examples/speech/train.py /tmp/speech --quick    # a tiny model on a tiny corpus, seconds

The same as `zoo train whisper-cpu --out DIR`: the run directory gets log.jsonl, loss.png, TensorBoard events,
checkpoints/, language_confusion.png, metrics.json and the final model (load it with zoo.load(DIR)).
--quick trains a 1 + 1 layer model of width 32 for 10 steps (unless --steps says otherwise) on a handful of
clips per split (the corpus of `examples/speech/make_corpus.py --quick`): every stage runs, nothing is learnt.
"""

import argparse

from zoo.train import train

# The --set overrides the tests use. The clip counts are examples/speech/make_corpus.py's QUICK_CORPUS, so a
# corpus built by it is found in the cache.
QUICK_CORPUS = {"train_clips": 12, "val_clips": 4, "test_clips": 6, "test_unseen_clips": 3}
QUICK_STEPS = 10
QUICK = [*(f"data.corpus.{name}={n}" for name, n in QUICK_CORPUS.items()), "data.quick_eval_clips=4",
         "model.encoder.n_layers=1", "model.encoder.dim=32", "model.encoder.n_heads=2",
         "model.decoder.n_layers=1", "model.decoder.dim=32", "model.decoder.n_heads=2",
         "train.batch_size=4", "train.eval_every=0"]

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("out")
parser.add_argument("--steps", type=int)
parser.add_argument("--quick", action="store_true", help="a tiny model on a tiny corpus: runs in seconds")
args = parser.parse_args()
if args.quick and args.steps is None:
    args.steps = QUICK_STEPS

if __name__ == "__main__":
    metrics = train("whisper-cpu", out=args.out, steps=args.steps, sets=QUICK if args.quick else [])
    for key in ("wer_en", "cer_zh", "wer_es", "wer_fr", "wer_de", "bleu", "language_accuracy", "no_speech_accuracy"):
        print(f"{key:>20}: {metrics.get(key, float('nan')):.3f}")
