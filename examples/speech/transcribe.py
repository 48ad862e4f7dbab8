"""Transcribe, translate and identify the language of audio files with a trained speech model.

    python examples/speech/transcribe.py runs/speech clip.wav [more.wav ...] [--translate]

The same as `zoo transcribe DIR FILE... [--task translate]`. Any file soundfile reads works (WAV, FLAC,
OGG; stereo is downmixed, other sample rates resampled); audio longer than 30 s goes window by window.
"""

import argparse

import zoo
from zoo.speech.transcribe import transcribe

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("model")
parser.add_argument("files", nargs="+")
parser.add_argument("--translate", action="store_true", help="translate into English instead")
args = parser.parse_args()

if __name__ == "__main__":
    model = zoo.load(args.model)
    for path in args.files:
        result = transcribe(model, path, task="translate" if args.translate else "transcribe")
        print(f"{path} [{result['language']}]: {result['text']}")
        for segment in result["segments"]:
            print(f"    {segment['start']:6.2f}-{segment['end']:6.2f}  {segment['text']}")
