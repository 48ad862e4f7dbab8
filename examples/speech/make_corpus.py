"""Synthesise the multilingual speech corpus (eSpeak NG, five languages, noise, reverberation, no-speech clips)
and listen to a few clips.

    python examples/speech/make_corpus.py [--train-clips 14400] [--out corpus-samples]
    python examples/speech/make_corpus.py --quick --out /tmp/samples    # a handful of clips per split, seconds

By default it builds exactly the corpus `zoo train whisper-cpu` trains on (the recipe's clip counts; about 16 min
on 2 cores), cached under $ZOO_HOME/cache/speech, so the training run finds it there; --train-clips builds a
corpus of its own beside it. A clip of each language and each no-speech kind is copied to --out with its
transcript and translation. --quick builds the tiny corpus `examples/speech/train.py --quick` trains on.
"""

import argparse
import shutil
from pathlib import Path

from zoo.registry import get_model_entry, zoo_home
from zoo.speech.data import SpeechCorpusConfig, build_corpus, read_manifest

# the same clip counts as examples/speech/train.py --quick: its run finds this corpus in the cache
QUICK_CORPUS = {"train_clips": 12, "val_clips": 4, "test_clips": 6, "test_unseen_clips": 3}

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--train-clips", type=int, help="default: the whisper-cpu recipe's")
parser.add_argument("--out", default="corpus-samples")
parser.add_argument("--quick", action="store_true", help="a handful of clips per split")
args = parser.parse_args()

if __name__ == "__main__":
    recipe = get_model_entry("whisper-cpu").data["corpus"]  # its clip counts and its training language cycle
    clips = {**recipe, **QUICK_CORPUS} if args.quick else dict(recipe)
    if args.train_clips is not None:
        clips["train_clips"] = args.train_clips
    corpus = build_corpus(SpeechCorpusConfig(**clips), zoo_home() / "cache" / "speech")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seen = set()
    for row in read_manifest(corpus, "train"):
        key = row["language"] or row["kind"]
        if key in seen:
            continue
        seen.add(key)
        shutil.copy(corpus / row["audio"], out / f"{key}.wav")
        print(f"{key:>12}: {row['text'] or '(no speech)'}" + (f"  ->  {row['translation']}" if row["text"] else ""))
    print(f"corpus in {corpus}; samples in {out}/")
