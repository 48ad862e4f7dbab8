"""Synthesise the multilingual speech corpus (eSpeak NG, five languages, noise, reverberation, no-speech clips)
and listen to a few clips.

    python examples/speech/make_corpus.py [--train-clips 4000] [--out corpus-samples]

The corpus is cached under $ZOO_HOME/cache/speech (the same one `zoo train whisper-cpu` uses); a few clips
of each language and each no-speech kind are copied to --out with their transcript and translation.
"""

import argparse
import shutil
from pathlib import Path

from zoo.registry import zoo_home
from zoo.speech.data import SpeechCorpusConfig, build_corpus, read_manifest

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--train-clips", type=int, default=4000)
parser.add_argument("--out", default="corpus-samples")
args = parser.parse_args()

if __name__ == "__main__":
    corpus = build_corpus(SpeechCorpusConfig(train_clips=args.train_clips), zoo_home() / "cache" / "speech")
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
