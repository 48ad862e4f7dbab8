"""What zoo reads from disk (issue 13, requirements 1 and 2).

Safe loading: weights come only from safetensors or torch.load(weights_only=True), so a pickle that would run code
is refused and never unpickled, wherever it sits (a model directory, a file given to zoo.load, a checkpoint), and
no source file can ask torch.load for anything else.

Malformed files fail cleanly: hypothesis mutates valid files (a tiny model directory, every tokenizer file) and
each mutation either loads or raises one of zoo's own errors naming the mutated file. The mutations run in a child
process whose address space is capped a little above what it uses when they start (RLIMIT_AS), so a length in a
file that made a loader allocate fails the run instead of exhausting the machine, and a crash in a native parser
fails it too. The shipped weights' hash check (one changed byte) is tested in tests/test_shipped.py; here only a
malformed manifest.
"""

import ast
import hashlib
import json
import os
import pickle
import re
import struct
import subprocess
import sys
import time
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

import zoo
from zoo.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_pretrained
from zoo.cli import main
from zoo.errors import CorruptFileError, MissingFileError, UnsafeFileError, ZooError
from zoo.shipped import MANIFEST, load_shipped

ROOT = Path(__file__).resolve().parents[1]
TINY_GPT = {"vocab_size": 61, "backbone": {"n_layers": 1, "dim": 16, "n_heads": 2, "max_seq_len": 16}}
PICKLE_FORMATS = ("zip", "raw")  # torch.save's zip archive, and a bare pickle (torch.load reads both)
SCANNED_DIRS = ("zoo", "benchmarks", "examples", "scripts")
MEMORY_HEADROOM = 1 << 30  # what the mutation child may allocate beyond its size when the mutations start
MUTATIONS = settings(max_examples=120, deadline=timedelta(seconds=10), database=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def tiny_model_dir(directory: Path) -> Path:
    torch.manual_seed(0)
    return zoo.load("gpt-nano", **TINY_GPT).save_pretrained(directory)


# ------------------------------------------------------------------------------------------------------------------
# pickles: refused, never unpickled


class WritesMarker:
    """Unpickling this creates the file `path` (open(path, "w")): a stand-in for any code a pickle can run."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def write_payload(path: Path, marker: Path, fmt: str) -> Path:
    payload = {"weights": WritesMarker(marker)}
    if fmt == "zip":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))  # torch.save's protocol: the unpickler reads its opcodes
    return path


def unpickle_unsafely(path: Path):
    """What a plain unpickler does with the payload (the data.pkl of a torch zip archive holds no tensors here)."""
    data = path.read_bytes()
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            data = archive.read(next(name for name in archive.namelist() if name.endswith("data.pkl")))
    pickle.loads(data)


@pytest.mark.parametrize("fmt", PICKLE_FORMATS)
def test_the_payload_runs_code_when_unpickled(tmp_path, fmt):
    """The reference for the refusals below: unpickled without weights_only, the payload creates its marker."""
    marker = tmp_path / "marker"
    unpickle_unsafely(write_payload(tmp_path / "payload", marker, fmt))
    assert marker.exists()


@pytest.mark.parametrize("fmt", PICKLE_FORMATS)
def test_a_pickle_given_to_zoo_load_or_in_a_model_directory_is_refused_unread(tmp_path, fmt, capsys):
    marker = tmp_path / "marker"
    given_file = write_payload(tmp_path / "model.pt", marker, fmt)
    directory = tiny_model_dir(tmp_path / "model")
    (directory / WEIGHTS_FILE).unlink()  # weights as a pickle only, as many downloaded checkpoints are
    write_payload(directory / "pytorch_model.bin", marker, fmt)

    with pytest.raises(UnsafeFileError, match=r"model\.pt: pickle files can run arbitrary code"):
        zoo.load(given_file)
    with pytest.raises(UnsafeFileError, match=r"pytorch_model\.bin: pickle files can run arbitrary code"):
        zoo.load(directory)
    assert main(["eval", str(directory)]) == 2
    assert "pytorch_model.bin" in capsys.readouterr().err
    assert not marker.exists()


@pytest.fixture
def checkpoint(tmp_path):
    """A checkpoint of a tiny GPT with its AdamW state, as save_checkpoint writes it for the single strategy, and a
    function that loads it into a fresh model."""
    from zoo.train.checkpointing import load_checkpoint, save_checkpoint
    from zoo.train.distributed import Dist
    from zoo.train.strategy import Single

    strategy = Single(Dist(0, 1, 0, torch.device("cpu")), "fp32")

    def fresh():
        model = zoo.load("gpt-nano", **TINY_GPT)
        return model, torch.optim.AdamW(model.parameters())

    model, optimizer = fresh()
    model(torch.arange(8)[None]).float().mean().backward()
    optimizer.step()
    path = save_checkpoint(tmp_path / "run", 1, strategy, model, optimizer, {"step": 1}, {})

    def load():
        model, optimizer = fresh()
        return load_checkpoint(path, strategy, model, optimizer, {})

    return path, load


@pytest.mark.parametrize("fmt", PICKLE_FORMATS)
def test_a_checkpoint_holding_a_pickle_is_refused_through_weights_only(checkpoint, tmp_path, fmt):
    path, load = checkpoint
    assert load()[0] == {"step": 1}  # the reference: the untouched checkpoint resumes
    marker = tmp_path / "marker"
    for name in ("trainer.pt", "rng_rank0.pt", "state.pt"):
        original = (path / name).read_bytes()
        write_payload(path / name, marker, fmt)
        with pytest.raises(UnsafeFileError, match=rf"{name}: it pickles more than tensors.* arbitrary code"):
            load()
        (path / name).write_bytes(original)
    assert not marker.exists()


def test_a_damaged_or_missing_checkpoint_file_is_named(checkpoint):
    path, load = checkpoint
    for name in ("trainer.pt", "rng_rank0.pt", "state.pt"):
        original = (path / name).read_bytes()
        for damaged in (original[: len(original) // 2], b"", b"not a torch file"):
            (path / name).write_bytes(damaged)
            with pytest.raises(CorruptFileError, match=rf"{name} is not a valid torch file"):
                load()
        (path / name).write_bytes(original)
    original = (path / "trainer.pt").read_bytes()
    torch.save([1, 2], path / "trainer.pt")
    with pytest.raises(CorruptFileError, match=r"trainer\.pt is not a zoo trainer state: it holds a list"):
        load()
    (path / "trainer.pt").write_bytes(original)
    torch.save({"torch": torch.zeros(3)}, path / "rng_rank0.pt")
    with pytest.raises(CorruptFileError, match=r"rng_rank0\.pt is not a zoo RNG state"):
        load()
    (path / "trainer.pt").unlink()
    with pytest.raises(MissingFileError, match=r"trainer\.pt is missing"):
        load()


# ------------------------------------------------------------------------------------------------------------------
# the source never asks torch.load for pickles


def torch_load_calls(tree: ast.AST) -> list[ast.Call]:
    """Calls of torch.load, however torch or load was imported (import torch as t; from torch import load as l)."""
    modules, functions = {"torch"}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.asname or alias.name for alias in node.names if alias.name == "torch"}
        elif isinstance(node, ast.ImportFrom) and node.module in ("torch", "torch.serialization"):
            functions |= {alias.asname or alias.name for alias in node.names if alias.name == "load"}
    calls = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in functions or isinstance(func, ast.Attribute) and (
                func.attr == "load" and ast.unparse(func.value) in {*modules, "torch.serialization"}):
            calls.append(node)
    return calls


def unsafe_loads(source: str, where: str) -> list[str]:
    """Each torch.load call that does not pass weights_only=True literally, and any weights_only=False."""
    problems = [f"{where}:{m.string.count(chr(10), 0, m.start()) + 1}: {m.group()}"
                for m in re.finditer(r"weights_only\s*=\s*False", source)]
    for call in torch_load_calls(ast.parse(source)):
        flag = next((k.value for k in call.keywords if k.arg == "weights_only"), None)
        if not (isinstance(flag, ast.Constant) and flag.value is True) or any(k.arg is None for k in call.keywords):
            problems.append(f"{where}:{call.lineno}: {ast.unparse(call)}")
    return problems


def test_the_scan_finds_unsafe_torch_loads():
    source = ("import torch\nimport torch as t\nfrom torch import load as grab\n"
              "torch.load(p)\nt.load(p, weights_only=False)\ngrab(p, weights_only=flag)\n"
              "torch.load(p, **options)\ntorch.load(p, weights_only=True)\n")
    assert [line.split(": ")[0] for line in unsafe_loads(source, "x")] == ["x:5", "x:4", "x:5", "x:6", "x:7"]


def test_no_source_file_loads_a_pickle_without_weights_only():
    problems, calls = [], 0
    for directory in SCANNED_DIRS:
        for path in sorted((ROOT / directory).rglob("*.py")):
            source = path.read_text(encoding="utf-8")
            calls += len(torch_load_calls(ast.parse(source)))
            problems += unsafe_loads(source, str(path.relative_to(ROOT)))
    assert calls >= 2, "the scan found no torch.load call at all: it no longer sees them"
    assert not problems, "torch.load must pass weights_only=True:\n" + "\n".join(problems)


# ------------------------------------------------------------------------------------------------------------------
# malformed files: deterministic cases, each with the reason the message gives


@pytest.fixture
def model_dir(tmp_path) -> Path:
    return tiny_model_dir(tmp_path / "model")


def rewrite_weights(directory: Path, change):
    """Apply change(tensors) to the weights and save them back (a valid safetensors file of other content)."""
    tensors = load_file(directory / WEIGHTS_FILE)
    change(tensors)
    save_file(tensors, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})


def test_weights_that_do_not_fit_the_config_name_the_tensor_and_both_shapes(model_dir):
    rewrite_weights(model_dir, lambda t: t.update({"backbone.norm.weight": torch.ones(17)}))
    with pytest.raises(CorruptFileError, match=r"model\.safetensors does not fit the gpt config in .*config\.json: "
                                               r"tensor 'backbone\.norm\.weight' has shape \[17\]; the config needs "
                                               r"\[16\]"):
        zoo.load(model_dir)


def test_missing_extra_and_doubled_tied_tensors_are_listed(model_dir):
    original = (model_dir / WEIGHTS_FILE).read_bytes()
    rewrite_weights(model_dir, lambda t: t.update({"extra": t.pop("backbone.norm.weight")}))
    with pytest.raises(CorruptFileError, match=r"missing tensors \['backbone\.norm\.weight'\], "
                                               r"unexpected tensors \['extra'\]"):
        zoo.load(model_dir)
    (model_dir / WEIGHTS_FILE).write_bytes(original)
    rewrite_weights(model_dir, lambda t: t.update({"head.weight": t["embed.weight"].clone()}))
    with pytest.raises(CorruptFileError, match=r"it holds embed\.weight and head\.weight, which this model ties"):
        zoo.load(model_dir)
    (model_dir / WEIGHTS_FILE).write_bytes(original)
    rewrite_weights(model_dir, lambda t: t.update({"head.weight": t.pop("embed.weight")}))
    tied = zoo.load(model_dir)  # either name of a tie holds it (safetensors.torch.load_model accepts both too)
    assert torch.equal(tied.embed.weight, load_file(model_dir / WEIGHTS_FILE)["head.weight"])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64, torch.float8_e4m3fn])
def test_floating_weights_of_any_width_load_cast_to_the_model(model_dir, dtype):
    reference = load_file(model_dir / WEIGHTS_FILE)
    rewrite_weights(model_dir, lambda t: t.update({k: v.to(dtype) for k, v in t.items()}))
    model = zoo.load(model_dir)
    assert model.embed.weight.dtype == torch.float32
    assert torch.equal(model.embed.weight, reference["embed.weight"].to(dtype).float())


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.uint8, torch.bool, torch.complex64])
def test_integer_bool_or_complex_weights_are_refused_not_cast(model_dir, dtype):
    rewrite_weights(model_dir, lambda t: t.update({"embed.weight": t["embed.weight"].to(dtype)}))
    kind = str(dtype).removeprefix("torch.")
    with pytest.raises(CorruptFileError, match=rf"tensor 'embed\.weight' is {kind}, the model's is float32: a "
                                               rf"floating tensor is needed"):
        zoo.load(model_dir)


def test_a_header_longer_than_the_file_fails_before_anything_is_allocated(model_dir):
    data = (model_dir / WEIGHTS_FILE).read_bytes()
    (model_dir / WEIGHTS_FILE).write_bytes(struct.pack("<Q", 1 << 60) + data[8:])
    with pytest.raises(CorruptFileError, match=r"model\.safetensors is not a valid safetensors file \(.*header"):
        zoo.load(model_dir)


@pytest.mark.parametrize(("content", "reason"), [
    (b"\xff\xfe not text", "not JSON"),
    (b'{"family": "gpt", "config": ', "not JSON"),
    (b"[" * 100_000, "not JSON"),
    (b"[1, 2]", "a JSON list"),
    (b'{"family": "gpt"}', "its 'config' is not an object"),
    (b'{"family": "gpt-9", "config": {}}', "unknown model family 'gpt-9'"),
    (b'{"family": "gpt", "config": {"backbone": {"n_layers": -1}}}', "n_layers must be >= 1"),
    (b'{"family": "gpt", "config": {"vocab_sise": 61}}', "unknown field 'vocab_sise'"),
    (b'{"family": "gpt", "config": {"backbone": {"mlp_ratio": NaN}}}', "cannot be built here"),
    (b'{"family": "gpt", "config": {"backbone": {"dim": 1099511627776}}}', "cannot be built here"),
])
def test_a_malformed_config_is_named_with_the_reason(model_dir, content, reason):
    (model_dir / CONFIG_FILE).write_bytes(content)
    with pytest.raises(CorruptFileError, match=re.escape(str(model_dir / CONFIG_FILE)) + ".*" + re.escape(reason)):
        zoo.load(model_dir)


@pytest.mark.parametrize(("content", "reason"), [
    ("{", "is not JSON"),
    ('{"data": [1]}', "'data' is a JSON list, not an object"),
    ('{"data": {"tokenizer": "morse"}}', "morse"),
    ('{"data": {"colour": "red"}}', "unknown field 'data.colour'"),
    ('{"data_path": 3}', "data_path is 3, not a path"),
])
def test_zoo_eval_names_a_malformed_training_config(model_dir, content, reason, capsys):
    (model_dir / "train_config.json").write_text(content)
    assert main(["eval", str(model_dir)]) == 2
    error = capsys.readouterr().err
    assert str(model_dir / "train_config.json") in error and reason in error, error


def test_overrides_that_change_the_architecture_are_the_callers_error(model_dir):
    with pytest.raises(ZooError, match=r"with the overrides \{'vocab_size': 62\}") as error:
        zoo.load(model_dir, vocab_size=62)
    assert not isinstance(error.value, CorruptFileError)


def test_a_damaged_tokenizer_fails_the_load_naming_it(model_dir):
    from zoo.text.tokenizer import BPE_FILE, META_FILE, BPETokenizer

    BPETokenizer.train(["def f(x):\n    return x\n"] * 8, 300).save(model_dir)
    with pytest.raises(CorruptFileError, match=r"tokenizer in .* has \d+ tokens, more than the vocab_size=61"):
        zoo.load(model_dir)  # a tokenizer whose ids the 61-row embedding cannot take
    (model_dir / BPE_FILE).write_text("{")
    with pytest.raises(CorruptFileError, match=r"tokenizer\.json is not a valid `tokenizers` file"):
        zoo.load(model_dir)
    (model_dir / META_FILE).write_text('{"kind": "char", "chars": "ba"}')
    with pytest.raises(CorruptFileError, match=r"zoo_tokenizer\.json is not a valid zoo tokenizer: .*sorted"):
        zoo.load(model_dir)


def test_a_malformed_manifest_refuses_the_shipped_weights(model_dir, tmp_path, monkeypatch):
    """(A changed weights byte: tests/test_shipped.py, test_one_changed_byte_is_refused_naming_the_file_and_...)"""
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(model_dir.parent))
    files = {name: hashlib.sha256((model_dir / name).read_bytes()).hexdigest() for name in (CONFIG_FILE, WEIGHTS_FILE)}
    manifest = model_dir / MANIFEST
    manifest.write_text(json.dumps({"files": files}))
    assert load_shipped("model").config.backbone.dim == 16  # the reference: a well-formed manifest loads
    for content, reason in [("{", "not JSON"), ("[]", "a JSON list, not an object"),
                            ('{"files": ["config.json"]}', "no 'files' object"),
                            (json.dumps({"files": {**files, "../escape": "0"}}), "a path outside its directory")]:
        manifest.write_text(content)
        with pytest.raises(CorruptFileError, match=re.escape(str(manifest)) + ".*" + re.escape(reason)):
            load_shipped("model")


# ------------------------------------------------------------------------------------------------------------------
# malformed files: hypothesis mutations, in a child process with capped memory


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS and /proc/self/status are Linux's")
def test_mutated_files_load_or_fail_with_zoos_error_naming_the_file(tmp_path):
    code = "import sys; from tests.test_reliability_files import fuzz; fuzz(sys.argv[1])"
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}, timeout=600)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-12000:]}"
    assert "mutations done" in result.stdout
    print(result.stdout)


def fuzz(scratch: str):
    """The child's work: build valid files, cap the address space, then mutate each file kind in turn."""
    from zoo.diffusion.data import CaptionTokenizer
    from zoo.speech.tokenizer import WhisperTokenizer, special_token_names
    from zoo.text.tokenizer import BPETokenizer, CharTokenizer, load_tokenizer

    scratch = Path(scratch)
    valid = tiny_model_dir(scratch / "valid")
    target = scratch / "target"
    target.mkdir()
    text = ["def f(x):\n    return x + 1\n", "the cat sat on the mat"] * 4
    tokenizers = {  # a saved tokenizer directory and how its family loads it
        "char": (CharTokenizer.train("".join(text)).save(scratch / "char"), load_tokenizer),
        "bpe": (BPETokenizer.train(text, 300).save(scratch / "bpe"), load_tokenizer),
        "whisper": (WhisperTokenizer.train(text, 300 + len(special_token_names(["en", "es"])), ["en", "es"])
                    .save(scratch / "whisper"), WhisperTokenizer.load),
        "caption": (CaptionTokenizer.build().save(directory_at(scratch / "caption")).parent, CaptionTokenizer.load),
    }
    limit_address_space(MEMORY_HEADROOM)
    with pytest.raises(RuntimeError, match="can't allocate memory"):  # the cap is on: 2 GiB more fails now
        torch.empty(2 * MEMORY_HEADROOM, dtype=torch.uint8)

    files = ModelFiles(valid, target)
    for check in (truncated_weights, weights_header_lengths, weights_bytes_overwritten, weights_header_edits,
                  weights_content_edits, config_bytes, config_values):
        start = time.perf_counter()
        check(files)
        print(f"{check.__name__}: ok ({time.perf_counter() - start:.1f} s)", flush=True)
    for kind, (directory, load) in tokenizers.items():
        for name in sorted(p.name for p in directory.iterdir()):
            start = time.perf_counter()
            tokenizer_file_mutations(directory, name, target / kind, load)
            print(f"{kind} {name}: ok ({time.perf_counter() - start:.1f} s)", flush=True)
    print("mutations done")


def directory_at(path: Path) -> Path:
    path.mkdir()
    return path


def limit_address_space(headroom: int):
    """Cap this process's virtual memory at its current size plus `headroom` (torch alone maps a few GiB)."""
    import resource

    size = next(int(line.split()[1]) * 1024 for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (size + headroom, resource.getrlimit(resource.RLIMIT_AS)[1]))


class ModelFiles:
    """The bytes of a valid model directory, and a scratch directory to write a mutated copy into and load."""

    def __init__(self, valid: Path, target: Path):
        self.config = (valid / CONFIG_FILE).read_bytes()
        self.weights = (valid / WEIGHTS_FILE).read_bytes()
        self.header_length = struct.unpack("<Q", self.weights[:8])[0]
        self.header = json.loads(self.weights[8:8 + self.header_length])
        self.target = target
        self.tensors = load_file(valid / WEIGHTS_FILE)
        self.reference = {k: v.view(torch.uint8) for k, v in self.tensors.items()}

    def load(self, config: bytes | None = None, weights: bytes | None = None, mutated: str = WEIGHTS_FILE):
        """Load the copy with these bytes: the model, or None after a ZooError naming the mutated file. Any other
        exception propagates and fails the run. A mutated config.json is loaded twice: zoo.load reads it first to
        tell a Hugging Face folder (zoo/interop.py), and load_pretrained (what `zoo eval DIR` calls) reads it
        itself."""
        (self.target / CONFIG_FILE).write_bytes(self.config if config is None else config)
        (self.target / WEIGHTS_FILE).write_bytes(self.weights if weights is None else weights)
        loaders = (zoo.load, load_pretrained) if mutated == CONFIG_FILE else (load_pretrained,)
        models = [loads_or_names(load, self.target, self.target / mutated) for load in loaders]
        assert len({model is None for model in models}) == 1, "zoo.load and load_pretrained disagree"
        return models[0]

    def with_header(self, header: dict) -> bytes:
        encoded = json.dumps(header).encode()
        return struct.pack("<Q", len(encoded)) + encoded + self.weights[8 + self.header_length:]


def loads_or_names(load, source: Path, path: Path):
    """load(source), or None after a ZooError whose message names `path`."""
    try:
        return load(source)
    except ZooError as error:
        assert str(path) in str(error), f"{type(error).__name__} does not name {path}: {error}"
        return None


def json_values(max_leaves: int = 4):
    """Any JSON value, numbers kept small: a config is built as it reads, so n_layers=2**40 would take as long to
    build as the model it describes (test_a_malformed_config_is_named_with_the_reason has a too large one)."""
    scalars = (st.none() | st.booleans() | st.integers(-3, 40) | st.floats(-1e3, 1e3) | st.text(max_size=8)
               | st.sampled_from([float("nan"), float("inf"), float("-inf"), "gpt", "whisper", "dit"]))
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=max_leaves)


def json_paths(value, prefix=()) -> list[tuple]:
    """Every place in a JSON document: the keys and indices leading to each value (the root too)."""
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return [prefix, *(path for key, child in children for path in json_paths(child, (*prefix, key)))]


def replaced(document, path: tuple, value):
    if not path:
        return value
    copy = dict(document) if isinstance(document, dict) else list(document)
    copy[path[0]] = replaced(document[path[0]], path[1:], value)
    return copy


@MUTATIONS
@given(data=st.data())
def truncated_weights(files: ModelFiles, data):
    cut = data.draw(st.integers(0, len(files.weights) - 1))
    assert files.load(weights=files.weights[:cut]) is None  # the header must tile the data exactly


@MUTATIONS
@given(length=st.integers(0, 2**64 - 1))
@example(length=2**60)
def weights_header_lengths(files: ModelFiles, length):
    if length != files.header_length:  # 2**60, or one byte past the header: neither may allocate or load
        assert files.load(weights=struct.pack("<Q", length) + files.weights[8:]) is None


@MUTATIONS
@given(data=st.data())
def weights_bytes_overwritten(files: ModelFiles, data):
    """Bytes anywhere: in the header the file may still parse (a changed digit of a shape); in the tensor data it
    is valid and loads the changed values."""
    changes = data.draw(st.lists(st.tuples(st.integers(0, len(files.weights) - 1), st.integers(0, 255)),
                                 min_size=1, max_size=4))
    weights = bytearray(files.weights)
    for index, byte in changes:
        weights[index] = byte
    model = files.load(weights=bytes(weights))
    if all(index >= 8 + files.header_length for index, _ in changes):
        assert model is not None
        loaded = {k: v.view(torch.uint8) for k, v in load_file(files.target / WEIGHTS_FILE).items()}
        assert loaded.keys() == files.reference.keys()
        changed = [index for index, byte in changes if files.weights[index] != byte]
        assert any(not torch.equal(loaded[k], files.reference[k]) for k in loaded) == bool(changed)


TENSOR_NAMES = st.sampled_from(["embed.weight", "head.weight", "backbone.norm.weight", "extra", ""])


@MUTATIONS
@given(data=st.data())
def weights_header_edits(files: ModelFiles, data):
    """The header's own fields: overlapping or out-of-range offsets, other dtypes and shapes, renamed, dropped
    and added entries (the data bytes are left as they are, so most no longer tile the file)."""
    header = json.loads(json.dumps(files.header))
    names = sorted(k for k in header if k != "__metadata__")
    name = data.draw(st.sampled_from(names))
    entry = header[name]
    edit = data.draw(st.sampled_from(["offsets", "overlap", "dtype", "shape", "rename", "drop", "add"]))
    if edit == "offsets":
        entry["data_offsets"] = data.draw(st.lists(st.integers(-1, 2**64), min_size=0, max_size=3))
    elif edit == "overlap":
        other = header[data.draw(st.sampled_from(names))]
        shift = data.draw(st.integers(-64, 64))
        entry["data_offsets"] = [max(0, other["data_offsets"][0] + shift), other["data_offsets"][1]]
    elif edit == "dtype":
        entry["dtype"] = data.draw(st.sampled_from(["F16", "BF16", "F64", "I32", "I64", "U8", "BOOL", "C64",
                                                    "F8_E4M3", "F8_E5M2", "F4", "F32x", 7]))
    elif edit == "shape":
        entry["shape"] = data.draw(st.lists(st.integers(-1, 2**40), max_size=4))
    elif edit == "rename":
        header[data.draw(TENSOR_NAMES)] = header.pop(name)
    elif edit == "drop":
        del header[name]
    else:
        header[data.draw(TENSOR_NAMES)] = json.loads(json.dumps(entry))
    files.load(weights=files.with_header(header))


@MUTATIONS
@given(data=st.data())
def weights_content_edits(files: ModelFiles, data):
    """Valid safetensors files of the wrong content: refused unless what changed is a floating width."""
    tensors = {key: tensor.clone() for key, tensor in files.tensors.items()}
    name = data.draw(st.sampled_from(sorted(tensors)))
    edit = data.draw(st.sampled_from(["dtype", "shape", "drop", "rename", "add"]))
    loads = False
    if edit == "dtype":
        dtype = data.draw(st.sampled_from([torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.int64,
                                           torch.uint8, torch.bool, torch.complex64]))
        tensors[name] = tensors[name].to(dtype)
        loads = dtype.is_floating_point
    elif edit == "shape":
        shape = data.draw(st.lists(st.integers(0, 20), max_size=3))
        loads = list(tensors[name].shape) == shape
        tensors[name] = torch.zeros(shape)
    elif edit == "drop":
        del tensors[name]
    elif edit == "rename":
        new = data.draw(TENSOR_NAMES)
        loads = new == name or {name, new} == {"embed.weight", "head.weight"}  # either name of the tie holds it
        tensors[new] = tensors.pop(name)
    else:  # a copy under another name: an extra tensor, or one replacing another (loads if the shapes agree)
        new = data.draw(TENSOR_NAMES.filter(lambda new: new != name))
        loads = new in tensors and tensors[new].shape == tensors[name].shape
        tensors[new] = tensors[name].clone()
    save_file(tensors, str(files.target / "edited"))
    model = files.load(weights=(files.target / "edited").read_bytes())
    assert (model is not None) == loads


@MUTATIONS
@given(content=st.binary(max_size=200) | st.text(max_size=200).map(str.encode)
       | json_values().map(lambda value: json.dumps(value).encode()))
def config_bytes(files: ModelFiles, content):
    """config.json replaced: random bytes, random text, any JSON value (a list, a number, an object without the
    fields): nothing of it is a config."""
    assert files.load(config=content, mutated=CONFIG_FILE) is None


@MUTATIONS
@given(data=st.data())
def config_values(files: ModelFiles, data):
    """One value anywhere in config.json replaced by any JSON value: an unknown family, a field of the wrong type
    or out of range, an unknown field, another architecture (then the weights no longer fit; that error names
    config.json too)."""
    document = json.loads(files.config)
    path = data.draw(st.sampled_from(json_paths(document)))
    mutated = json.dumps(replaced(document, path, data.draw(json_values()))).encode()
    files.load(config=mutated, mutated=CONFIG_FILE)


def tokenizer_file_mutations(directory: Path, name: str, target: Path, load):
    """One file of a saved tokenizer truncated, overwritten in places, or with one JSON value replaced; the
    tokenizer loads or fails with a ZooError naming that file."""
    original = (directory / name).read_bytes()
    document = json.loads(original)
    paths = json_paths(document)

    @MUTATIONS
    @given(data=st.data())
    def mutate(data):
        edit = data.draw(st.sampled_from(["truncate", "overwrite", "value"]))
        if edit == "truncate":
            content = original[:data.draw(st.integers(0, len(original) - 1))]
        elif edit == "overwrite":
            content = bytearray(original)
            for _ in range(data.draw(st.integers(1, 4))):
                content[data.draw(st.integers(0, len(original) - 1))] = data.draw(st.integers(0, 255))
            content = bytes(content)
        else:
            path = paths[data.draw(st.integers(0, len(paths) - 1))]
            content = json.dumps(replaced(document, path, data.draw(json_values()))).encode()
        (target / name).write_bytes(content)
        loads_or_names(load, target, target / name)

    target.mkdir(exist_ok=True)
    for other in directory.iterdir():
        (target / other.name).write_bytes(other.read_bytes())
    mutate()
    (target / name).write_bytes(original)
