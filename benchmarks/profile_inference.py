"""Where the speech and diffusion inference paths spend their time: torch.profiler's table of operators for the
shipped models' main calls, and the wall time of each call.

    python benchmarks/profile_inference.py [--only speech diffusion] [--threads 1] [--rows 12] [--no-prepack]
                                           [--rounds 5] [--json PATH]

  speech     model.transcribe() of 8 clips of 2 to 4 s (eSpeak NG speech in 4 languages, synthesised here) with
             its defaults: language detection, beam search (beam 5), temperature fallback; whisper-cpu's shipped
             weights.
  diffusion  TextToImagePipeline of dit-shapes' shipped weights: 2 captions, 25 flow-Euler steps, guidance 4.0,
             images as numpy arrays.

--no-prepack turns off the CPU weight packing (decoding option prepack=False; the pipeline's prepack=False) to
show what it buys. The wall time is the best of --rounds calls after a warm-up; the profiled call is one more.
Run it on an older checkout to see what a change did (the options it passes exist there, except the pipeline's
prepack, which is passed only with --no-prepack).
"""

import argparse
import json
import os
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

SPEECH = [("the small dog runs to the red house", "en"), ("el gato come pan en la casa", "es"),
          ("le chien mange une pomme verte", "fr"), ("der kleine hund spielt im garten", "de")]
CAPTIONS = ["a small red triangle at the top left on a blue background",
            "a large green circle in the centre on a white background"]


def speech_call(prepack: bool):
    import zoo
    from zoo.speech.data import synthesize

    model = zoo.load("whisper-cpu", pretrained=True)
    clips = [synthesize(text, language) for text, language in SPEECH] * 2
    options = {} if prepack else {"prepack": False}
    return lambda: model.transcribe(clips, **options)


def diffusion_call(prepack: bool):
    from zoo.diffusion.pipeline import TextToImagePipeline
    from zoo.shipped import shipped_dir

    pipeline = TextToImagePipeline.from_pretrained(shipped_dir("dit-shapes"))
    options = dict(num_inference_steps=25, guidance_scale=4.0, guidance_interval=None, output_type="np",
                   progress=False)
    if not prepack:
        options["prepack"] = False
    return lambda: pipeline(CAPTIONS, generator=torch.Generator().manual_seed(0), **options)


CALLS = {"speech": speech_call, "diffusion": diffusion_call}


def measure(name: str, call, rounds: int, rows: int) -> dict:
    call()  # warm-up: first-call allocations, lazy imports
    seconds = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        call()
    events = profiler.key_averages()
    total = sum(event.self_cpu_time_total for event in events)
    top = sorted(events, key=lambda event: event.self_cpu_time_total, reverse=True)[:rows]
    print(f"\n== {name}: best of {rounds} calls {min(seconds) * 1e3:.0f} ms; profiled call, self CPU time by operator")
    print(f"{'operator':<52} {'share':>6} {'ms':>8} {'calls':>6}")
    for event in top:
        print(f"{event.key[:52]:<52} {event.self_cpu_time_total / total:>6.1%} "
              f"{event.self_cpu_time_total / 1e3:>8.1f} {event.count:>6}")
    return {"case": name, "best_ms": round(min(seconds) * 1e3, 1),
            "top": [{"op": e.key, "share": round(e.self_cpu_time_total / total, 4), "calls": e.count} for e in top]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=sorted(CALLS), default=sorted(CALLS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=12, help="operators shown per profile")
    parser.add_argument("--no-prepack", action="store_true", help="decode and sample on the unpacked weights")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if min(args.threads, args.rounds, args.rows) < 1:
        parser.error("--threads, --rounds and --rows must be >= 1")
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), prepack {not args.no_prepack}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    results = [measure(name, CALLS[name](not args.no_prepack), args.rounds, args.rows) for name in args.only]
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
