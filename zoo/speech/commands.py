"""`zoo transcribe`: the speech family's command (registered with the whisper family in zoo/speech/whisper.py)."""

import argparse
import json

from zoo.registry import Command


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("dir", help="a trained speech model directory, or a model name with trained weights")
    p.add_argument("files", nargs="+", metavar="FILE", help="audio files (any format soundfile reads)")
    p.add_argument("--task", choices=("transcribe", "translate"), default="transcribe",
                   help="transcribe in the spoken language, or translate into English")
    p.add_argument("--language", help="the spoken language's code (default: detected)")
    p.add_argument("--beam-size", type=int,
                   help="beams of the search at temperature 0 (default: 5, whisper's)")
    p.add_argument("--best-of", type=int,
                   help="samples per window at temperatures above 0, the most likely kept (default: 5)")
    p.add_argument("--ctc-weight", type=float,
                   help="joint CTC/attention decoding of transcripts with this weight on the model's CTC head "
                        "(0: the decoder alone; default: the model's own, see Whisper.transcribe)")
    p.add_argument("--temperature", type=float, help="one sampling temperature instead of the fallback schedule")
    p.add_argument("--no-condition", action="store_true",
                   help="do not condition each 30 s window on the previous window's text")
    p.add_argument("--timestamps", action="store_true",
                   help="predict segment timestamps (for a model trained with them; zoo's recipe trains without)")
    p.add_argument("--json", action="store_true", help="one JSON object per file")


def run(args: argparse.Namespace):
    from zoo.checkpoint import load_pretrained
    from zoo.models import trained_dir
    from zoo.speech.transcribe import transcribe

    model = load_pretrained(trained_dir(args.dir)).eval()
    options = {"task": args.task, "language": args.language, "condition_on_previous_text": not args.no_condition,
               "without_timestamps": not args.timestamps}
    if args.beam_size is not None:
        options["beam_size"] = args.beam_size
    if args.best_of is not None:
        options["best_of"] = args.best_of
    if args.temperature is not None:
        options["temperature"] = args.temperature
    if args.ctc_weight is not None:
        options["ctc_weight"] = args.ctc_weight
    for path in args.files:
        result = transcribe(model, path, **options)
        if args.json:
            print(json.dumps({"file": path, **result}, ensure_ascii=False))
        else:
            print(f"{path} [{result['language']}]: {result['text']}")


TRANSCRIBE = Command("transcribe", "transcribe or translate speech with a trained speech model", add_arguments, run)
