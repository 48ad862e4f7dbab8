"""Evaluating a trained model directory as `zoo eval DIR` does: shared by the CLI, `ship` (the metrics of shipped
weights) and `zoo reproduce` (the metrics of a reproduction), so all three measure the same thing.
"""

from pathlib import Path

from zoo.checkpoint import load_pretrained, read_json_object
from zoo.config import replace_config
from zoo.errors import CorruptFileError, InputError
from zoo.registry import family_of_config, zoo_home

RUN_FILE = "train_config.json"


def load_for_eval(directory: str | Path, data_path: str | None = None, data_overrides: dict | None = None):
    """The trained model in DIR, its family, and its data prepared as it was trained (or from data_path), with
    data_overrides applied to the data settings (e.g. a smaller training split: evaluation reads the held-out
    splits, whose items do not depend on the training split's size)."""
    model = load_pretrained(directory)
    family = family_of_config(model.config)
    run_file = Path(directory) / RUN_FILE
    run = read_json_object(run_file, "training config") if run_file.exists() else {}
    data_config = recorded_data_config(family, run, run_file) if family.data_config else None
    if data_overrides:
        if data_config is None:
            raise InputError(f"family {family.name!r} has no data settings to override")
        data_config = replace_config(data_config, data_overrides, "data")
    path = data_path if data_path is not None else run.get("data_path")
    if not isinstance(path, (str, type(None))):
        raise CorruptFileError(f"{run_file}: data_path is {path!r}, not a path")
    data = family.prepare_data(model.config, data_config, path, zoo_home() / "cache", model=model)
    return model, family, data, data_config


def recorded_data_config(family, run: dict, run_file: Path):
    """The data settings a run recorded in train_config.json; settings that do not fit name the file."""
    fields = run.get("data", {})
    try:
        if not isinstance(fields, dict):
            raise InputError(f"'data' is a JSON {type(fields).__name__}, not an object")
        return replace_config(family.data_config(), fields, "data")
    except (ValueError, TypeError) as error:  # replace_config's and the data config's own checks
        raise CorruptFileError(f"{run_file} does not hold valid data settings: {error}") from None


def evaluate_directory(directory: str | Path, data_path: str | None = None, out_dir: Path | None = None,
                       data_overrides: dict | None = None) -> dict:
    """The family's full evaluation of the model in DIR; plots (a confusion matrix, ...) go to out_dir if given."""
    model, family, data, data_config = load_for_eval(directory, data_path, data_overrides)
    if family.evaluate is None:
        raise InputError(f"family {family.name!r} has no evaluation")
    return family.evaluate(model.eval(), data, data_config, out_dir=out_dir, quick=False)
