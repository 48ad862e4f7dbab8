"""Train the Whisper-style model on the synthesised corpus and print its test-set figures.

    python examples/speech/train.py runs/speech [--steps 800]

The same as `zoo train whisper-cpu --out DIR`: the run directory gets log.jsonl, loss.png, TensorBoard events,
checkpoints/, language_confusion.png, metrics.json and the final model (load it with zoo.load(DIR)).
"""

import argparse

from zoo.train import train

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("out")
parser.add_argument("--steps", type=int)
args = parser.parse_args()

if __name__ == "__main__":
    metrics = train("whisper-cpu", out=args.out, steps=args.steps)
    for key in ("wer_en", "cer_zh", "wer_es", "wer_fr", "wer_de", "bleu", "language_accuracy", "no_speech_accuracy"):
        print(f"{key:>20}: {metrics.get(key, float('nan')):.3f}")
