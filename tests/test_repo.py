"""The repository stands alone: no file reaches outside it, the benchmark data ships in it, and the tests and
files the README cites exist."""

import ast
import hashlib
import importlib.util
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IGNORED_DIRS = {".git", ".venv", "build", "runs", "out", "__pycache__", ".pytest_cache", ".ruff_cache",
                ".hypothesis", ".gl", ".whl"}
TEXT_SUFFIXES = {".py", ".md", ".toml", ".cfg", ".ini", ".sh", ".yml", ".yaml", ".json"}
# Built from pieces so that this file does not match itself.
OUTSIDE = re.compile(r"\.\./" + "shared" + "|/work/" + "shared")
SHAKESPEARE_MD5 = "6fb458f1232090904fb40fe944165e91"


def repo_files(suffixes=TEXT_SUFFIXES):
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in IGNORED_DIRS and not d.endswith(".egg-info")]
        for name in filenames:
            if Path(name).suffix in suffixes or name == "Makefile":
                yield Path(dirpath) / name


def test_no_file_refers_to_a_folder_outside_the_repository():
    offenders = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
                 for path in repo_files() for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
                 if OUTSIDE.search(line)]
    assert not offenders, "\n".join(offenders)


def test_no_python_file_climbs_out_of_the_repository_from_its_own_path():
    """Path(__file__).parents[k] / .parent.parent...: the folder it names must still be inside the repository."""
    pattern = re.compile(r"Path\(__file__\)(?:\.resolve\(\))?(?:\.parents\[(\d+)\]|((?:\.parent\b)+))")
    offenders = []
    for path in repo_files({".py"}):
        for match in pattern.finditer(path.read_text()):
            k = int(match.group(1)) if match.group(1) is not None else match.group(2).count(".parent") - 1
            parents = path.resolve().parents
            if k >= len(parents) or not parents[k].is_relative_to(ROOT):
                offenders.append(f"{path.relative_to(ROOT)}: {match.group(0)}")
    assert not offenders, offenders


def test_the_shakespeare_benchmark_defaults_to_the_copy_in_the_repository(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # the benchmarks import each other as scripts (timing.py)
    spec = importlib.util.spec_from_file_location("nanogpt_baby", ROOT / "benchmarks" / "nanogpt_baby.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = Path(module.DEFAULT_DATA)
    assert data == ROOT / "benchmarks" / "data" / "tinyshakespeare.txt"
    assert hashlib.md5(data.read_bytes()).hexdigest() == SHAKESPEARE_MD5
    assert len(data.read_text(encoding="utf-8")) == 1_115_394
    assert "tinyshakespeare" in (data.parent / "README.md").read_text()  # where it comes from
    # --data still overrides it, and defaults to it.
    tree = ast.parse((ROOT / "benchmarks" / "nanogpt_baby.py").read_text())
    data_args = [call for call in ast.walk(tree) if isinstance(call, ast.Call)
                 and getattr(call.func, "attr", None) == "add_argument" and call.args
                 and isinstance(call.args[0], ast.Constant) and call.args[0].value == "--data"]
    assert len(data_args) == 1
    default = {k.arg: ast.unparse(k.value) for k in data_args[0].keywords}["default"]
    assert "DEFAULT_DATA" in default


def test_the_files_and_tests_the_readme_cites_exist():
    readme = (ROOT / "README.md").read_text()
    for rel in set(re.findall(r"(?<![\w/.])((?:tests|benchmarks)/[\w./-]*\w)", readme)):
        assert (ROOT / rel).exists(), f"README cites {rel}, which does not exist"
    test_names = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        test_names |= {node.name for node in ast.walk(ast.parse(path.read_text()))
                       if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}
    for file, name in re.findall(r"(tests/test_\w+\.py)::(test_\w+)", readme):
        source = ast.parse((ROOT / file).read_text())
        assert name in {n.name for n in ast.walk(source) if isinstance(n, ast.FunctionDef)}, f"{file}::{name}"
    for name in set(re.findall(r"`(test_\w+)`", readme)):
        assert name in test_names, f"README cites {name}, which is no test"
