"""`make bench`: every benchmark as its own process, then one report, benchmarks/results.md, and one chart,
benchmarks/results.png.

    python benchmarks/run_all.py [--quick] [--only attention vision ...] [--threads 2] [--out benchmarks]

Each benchmark prints its own report as it runs and writes its cases with --json PATH: a list of {"case", "zoo",
"peer", "unit", "ratio", "target"} (or a dict holding that list under "cases"), zoo's figure and its peer's measured
in the same process at the same thread count. A ratio says how many times better zoo did than the peer: peer time /
zoo time, zoo rate / peer rate, peer memory / zoo memory, so above 1 zoo is ahead; a benchmark that leaves it out
gets it from the unit (a rate, "/s", is better higher). A target is the ratio the issue asks for. --quick passes
--quick to each benchmark (smoke figures, not ones to quote). A benchmark that fails is reported as failed, and
the others still run.
"""

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name: (script, arguments, arguments with --quick, whether it takes --threads); None: not run in that mode
BENCHMARKS = {
    "attention": ("attention.py", [], ["--quick"], False),
    "text": ("text.py", [], ["--quick"], True),
    "nanogpt step": ("nanogpt_baby.py", [], ["--quick"], True),
    "nanogpt race": ("nanogpt_baby.py", ["--race"], ["--race", "--quick"], True),
    "vision": ("vision.py", [], ["--quick"], True),
    "speech": ("speech.py", [], ["--quick"], True),
    "diffusion": ("diffusion.py", [], ["--quick"], True),
    "trainer": ("trainer.py", [], ["--quick"], False),
    "muon": ("muon.py", [], ["--quick"], True),
}


def run_benchmark(name: str, threads: int, quick: bool, tmp: Path) -> dict:
    """Run one benchmark (its report goes to this terminal); its cases, or the reason it has none."""
    script, full, quick_args, takes_threads = BENCHMARKS[name]
    out = tmp / f"{name.replace(' ', '_')}.json"
    command = [sys.executable, str(HERE / script), *(quick_args if quick else full), "--json", str(out),
               *(["--threads", str(threads)] if takes_threads else [])]
    print(f"\n===== {name}: {' '.join(command[1:])}", flush=True)
    start = time.perf_counter()
    result = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        return {"name": name, "seconds": seconds, "error": f"exited with {result.returncode}", "cases": []}
    if not out.is_file():
        return {"name": name, "seconds": seconds, "error": "wrote no --json file", "cases": []}
    return {"name": name, "seconds": seconds, "cases": load_cases(out)}


def load_cases(path: Path) -> list[dict]:
    data = json.loads(path.read_text())
    cases = data["cases"] if isinstance(data, dict) else data
    return [{**case, "ratio": ratio_of(case)} for case in cases]


def ratio_of(case: dict) -> float | None:
    """The case's ratio (zoo ahead above 1), computed from its figures and unit when it gives none."""
    if case.get("ratio") is not None:
        return float(case["ratio"])
    zoo, peer = case.get("zoo"), case.get("peer")
    if not zoo or not peer:
        return None
    return zoo / peer if case.get("unit", "").endswith("/s") else peer / zoo


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict:
    from zoo.train.strategy import describe_cpu

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    return {"cpu": describe_cpu(), "cores": os.cpu_count(), "memory_gib": memory / 2**30,
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            **{package: version(package) for package in ("torch", "transformers", "diffusers", "torchvision")}}


# ----------------------------------------------------------------------------------------------------------
# the report


def figure(value) -> str:
    """A figure to 3 significant digits (whole numbers from 100 on), with thousands separators."""
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:#.3g}".rstrip(".")  # 3 significant digits, trailing zeros kept: 10.0, 4.00, 0.0780


def met(case: dict) -> str:
    if case.get("target") is None:
        return ""
    return "yes" if case["ratio"] is not None and case["ratio"] >= case["target"] else "**no**"


def write_markdown(results: list[dict], meta: dict, path: Path):
    m = meta["machine"]
    lines = [
        "# Benchmark results", "",
        f"Written by `{meta['command']}` on {meta['date']}, {meta['seconds'] / 60:.1f} min in all"
        + (" (--quick: smoke figures, not ones to quote)" if meta["quick"] else "") + ".", "",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']:.1f} GiB memory, {m['os']}",
        f"- versions: python {m['python']}, torch {m['torch']}, torchvision {m['torchvision']}, "
        f"transformers {m['transformers']}, diffusers {m['diffusers']}",
        f"- threads: {meta['threads']} (OMP_NUM_THREADS and each benchmark's --threads)",
        f"- load average (1 min): {meta['load_before']:.2f} before, {meta['load_after']:.2f} after", "",
        "zoo's figure and the peer's are measured in the same run at the same thread count. ratio: how many times "
        "better zoo did (peer time / zoo time, zoo rate / peer rate, peer memory / zoo memory); above 1, zoo is "
        "ahead. target: the ratio the issue asks for. The chart is `results.png`.", "",
        "| benchmark | case | zoo | peer | unit | ratio | target | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for case in result["cases"]:
            target = f"{case['target']:g}x" if case.get("target") is not None else ""
            ratio = f"{case['ratio']:.2f}x" if case["ratio"] is not None else "-"
            lines.append(f"| {result['name']} | {case['case']} | {figure(case.get('zoo'))} | "
                         f"{figure(case.get('peer'))} | {case.get('unit', '')} | {ratio} | {target} | {met(case)} |")
        if result.get("error"):
            lines.append(f"| {result['name']} | **failed: {result['error']}** | | | | | | |")
    lines += ["", "Seconds per benchmark: " + ", ".join(f"{r['name']} {r['seconds']:.0f}" for r in results), ""]
    path.write_text("\n".join(lines))


def write_chart(results: list[dict], path: Path):
    """One horizontal bar per case: its ratio on a log axis, a line at 1x, a marker at its target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    cases = [(f"{r['name']}: {c['case']}", c) for r in results for c in r["cases"] if c["ratio"]]
    fig, ax = plt.subplots(figsize=(11, 0.32 * len(cases) + 1.6))
    labels = [label if len(label) <= 80 else label[:77] + "..." for label, _ in cases]
    y = list(range(len(cases)))[::-1]
    ratios = [c["ratio"] for _, c in cases]
    colours = ["tab:green" if r >= 1 else "tab:red" for r in ratios]
    ax.barh(y, ratios, color=colours, alpha=0.7)
    targets = [(row, c["target"]) for row, (_, c) in zip(y, cases) if c.get("target") is not None]
    if targets:
        ax.scatter([t for _, t in targets], [row for row, _ in targets], marker="D", color="black", zorder=3,
                   label="target")
        ax.legend(loc="lower right")
    ax.axvline(1.0, color="black", lw=1)
    ax.set_xscale("log")
    values = ratios + [t for _, t in targets]
    ax.set_xlim(min(values + [1.0]) / 1.5, max(values + [1.0]) * 1.5)
    ticks = [m * 10.0**e for e in range(-3, 4) for m in (1, 2, 5)]  # 1x, 2x, 5x, 10x, ... on the log axis
    ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}x"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlabel("ratio (above 1: zoo ahead of the peer measured in the same run)")
    ax.set_title("zoo vs peers, same run, same thread count", fontsize=10)
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.savefig(path, dpi=110, bbox_inches="tight")  # grows the canvas to fit the longest label
    plt.close(fig)


def write_results(results: list[dict], meta: dict, out_dir: Path):
    out_dir.mkdir(parents=True, exist_ok=True)
    write_markdown(results, meta, out_dir / "results.md")
    write_chart(results, out_dir / "results.png")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run these benchmarks only")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(HERE), help="where results.md and results.png go")
    args = parser.parse_args()
    meta = {"command": " ".join(["python benchmarks/run_all.py", *sys.argv[1:]]), "quick": args.quick,
            "threads": args.threads, "machine": machine(), "load_before": os.getloadavg()[0],
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        results = [run_benchmark(name, args.threads, args.quick, Path(tmp)) for name in args.only or BENCHMARKS]
    meta.update(seconds=time.perf_counter() - start, load_after=os.getloadavg()[0])
    write_results(results, meta, Path(args.out))
    failed = [r["name"] for r in results if r.get("error")]
    print(f"\nwrote {Path(args.out) / 'results.md'} and results.png"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
