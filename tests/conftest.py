"""Shared test fixtures: every test gets its own ZOO_HOME (cache, default run dirs) in a temp folder."""

import os

# The test-only encoder-decoder family (tests/families/reverse.py) loads as a plugin, as any family outside
# zoo would, so the cross-model suite (test_all_models) covers it too. Set before zoo imports its families.
os.environ.setdefault("ZOO_FAMILIES", "tests.families.reverse")

import pytest  # noqa: E402
import torch  # noqa: E402

# `make test` runs pytest-xdist workers side by side: each takes its share of the cores, so two workers with two
# threads each do not fight over two cores (OpenMP threads that spin-wait for a busy core slow down many times
# over). The processes a test starts (torchrun ranks, examples) inherit the share through OMP_NUM_THREADS.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, min(2, (os.cpu_count() or 1) // WORKERS))
if WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = str(THREADS)
torch.set_num_threads(THREADS)

# A worker is handed a whole file at a time (--dist loadfile), in collection order (--no-loadscope-reorder). The
# longest files go first, so none of them is left running alone on one worker at the end while the other core
# idles (longest processing time first). Measured with --durations on a 2-core machine; the order only changes
# the wall time, and files not named keep their own order after these.
LONGEST_FILES = ("test_shipped_weights.py", "test_resume_matrix.py", "test_examples.py", "test_demo.py",
                 "test_train.py", "test_benchmarks.py", "test_reliability_distributed.py", "test_family_contract.py",
                 "test_reliability_checkpoints.py", "test_decoding_levers.py", "test_speech_model.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's own order is kept


@pytest.fixture(autouse=True)
def zoo_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("zoo_home")
    monkeypatch.setenv("ZOO_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """A small deterministic English-like corpus (~30k characters) for text training tests."""
    import random

    rng = random.Random(0)
    words = ("the model learns to predict the next token from the tokens before it while attention "
             "looks back over the context and the loss falls as training goes on").split()
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(5, 12))) + "." for _ in range(600)]
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(lines) + "\n")
    return path
