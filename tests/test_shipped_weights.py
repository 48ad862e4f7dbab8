"""The weights zoo ships (zoo/weights): each loads hash-verified and scores on held-out data what its manifest says.

The evaluation is the family's own (`zoo eval DIR --json`). It reads only held-out splits, whose items are pure
functions of (seed, split, index), so a one-item training split (EVAL_ONLY) gives the same figures at a fraction of
the data build (the speech corpus's 14,400 training clips alone take 16 minutes to synthesise).
"""

import json
import math

import pytest

from zoo.evaluation import evaluate_directory
from zoo.shipped import MANIFEST, load_shipped, shipped_dir, shipped_names, weights_root

EVAL_ONLY = {"whisper": {"corpus.train_clips": 1}, "dit": {"n_train": 1}, "vae": {"n_train": 1},
             "judge": {"n_train": 1}, "alexnet": {"n_train": 1}, "vit": {"n_train": 1}}
MACHINE_DEPENDENT = ("real_time_factor", "tokens_per_s")  # speed, not quality
TRAINING_SPLIT = ("scaling_factor",)  # the VAE's latent std over its training images, which EVAL_ONLY shrinks
MAX_TOTAL_MB = 40
REQUIRED = ("name", "command", "commit", "trained_at", "machine", "wall_time_s", "dtype", "metrics", "curve", "files")


@pytest.fixture(scope="module")
def zoo_home(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZOO_HOME", str(tmp_path_factory.mktemp("zoo_home")))
        patch.delenv("ZOO_WEIGHTS_DIR", raising=False)
        yield


def test_the_shipped_set_is_complete_small_and_documented():
    names = shipped_names()
    assert names, f"no shipped weights in {weights_root()}"
    total = 0
    for name in names:
        manifest = json.loads((shipped_dir(name) / MANIFEST).read_text())
        assert all(manifest.get(key) is not None for key in REQUIRED), f"{name}: manifest lacks {REQUIRED}"
        assert manifest["name"] == name and manifest["command"].startswith("zoo train ")
        assert manifest["curve"]["loss"], f"{name}: no loss curve"
        total += sum((shipped_dir(name) / relative).stat().st_size for relative in manifest["files"])
    assert total < MAX_TOTAL_MB * 1e6, f"the shipped weights take {total / 1e6:.1f} MB, over {MAX_TOTAL_MB} MB"


@pytest.mark.slow
@pytest.mark.parametrize("name", shipped_names())
def test_shipped_weights_score_what_their_manifest_says(name, zoo_home):
    model = load_shipped(name)  # verifies every file's sha256 first
    family = json.loads((shipped_dir(name) / "config.json").read_text())["family"]
    assert model.config is not None
    measured = evaluate_directory(shipped_dir(name), data_overrides=EVAL_ONLY.get(family))
    recorded = json.loads((shipped_dir(name) / MANIFEST).read_text())["metrics"]
    for key, value in recorded.items():
        if key.startswith(MACHINE_DEPENDENT) or key in TRAINING_SPLIT:
            continue
        assert math.isclose(measured[key], value, rel_tol=0.02, abs_tol=0.011), \
            f"{name}: {key} measured {measured[key]:.4f}, manifest {value:.4f}"
