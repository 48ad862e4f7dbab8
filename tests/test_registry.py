"""Registry, overrides and the checkpoint format (config.json + model.safetensors, never pickle)."""

import json

import pytest
import torch

import zoo


def test_list_models_is_sorted_and_filters_with_wildcards():
    names = zoo.list_models()
    assert names == sorted(names)
    assert {"gpt-nano", "gpt-mini", "gpt-124m"} <= set(names)
    assert zoo.list_models("gpt-n*") == ["gpt-nano"]
    assert zoo.list_models("nothing*") == []


def test_unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match="did you mean: gpt-nano"):
        zoo.load("gpt-nanoo")


def test_overrides_are_validated_by_name_and_type():
    model = zoo.load("gpt-nano", backbone={"n_layers": 2, "dim": 64})
    assert len(model.backbone.blocks) == 2 and model.config.backbone.dim == 64
    assert model.embed.weight.shape == (256, 64)
    with pytest.raises(ValueError, match=r"unknown field 'backbone.n_layer'.*did you mean n_layers.*allowed: dim"):
        zoo.load("gpt-nano", backbone={"n_layer": 2})
    with pytest.raises(ValueError, match=r"unknown field 'n_layers' for GPTConfig \(it is a nested field: "
                                         r"backbone.n_layers\); allowed: vocab_size, tie_embeddings, backbone"):
        zoo.load("gpt-nano", n_layers=2)  # the flat field of old configs points at its new place
    with pytest.raises(ValueError, match="backbone.n_layers expects an integer"):
        zoo.load("gpt-nano", backbone={"n_layers": "many"})
    with pytest.raises(ValueError, match="allowed: geglu, swiglu, gelu"):
        zoo.load("gpt-nano", backbone={"mlp": "relu"})


def test_save_load_round_trip_is_bit_exact(tmp_path):
    torch.manual_seed(0)
    model = zoo.load("gpt-nano", backbone={"n_layers": 2, "n_kv_heads": 2}, tie_embeddings=True)
    model.save_pretrained(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["family"] == "gpt" and meta["name"] == "gpt-nano" and meta["config"]["backbone"]["n_kv_heads"] == 2
    loaded = zoo.load(tmp_path / "m")
    assert loaded.config == model.config
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for key in original:
        assert torch.equal(original[key], restored[key]), key
    assert loaded.head.weight is loaded.embed.weight  # tying survives the round trip
    idx = torch.randint(0, 256, (2, 9))
    assert torch.equal(model.eval()(idx), loaded.eval()(idx))


def test_pickle_files_are_refused(tmp_path):
    model = zoo.load("gpt-nano", backbone={"n_layers": 1})
    torch.save(model.state_dict(), tmp_path / "model.pt")
    with pytest.raises(ValueError, match="refusing to load .*model.pt: pickle"):
        zoo.load(tmp_path / "model.pt")
    model.save_pretrained(tmp_path / "d")
    (tmp_path / "d" / "model.safetensors").rename(tmp_path / "d" / "pytorch_model.bin")
    with pytest.raises(ValueError, match="refusing to load .*pytorch_model.bin"):
        zoo.load(tmp_path / "d")


def test_missing_directory_and_missing_pretrained_weights_are_clear(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no model directory"):
        zoo.load(str(tmp_path / "nope") + "/")
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(tmp_path / "no-shipped-weights"))
    with pytest.raises(FileNotFoundError, match="zoo train gpt-nano"):
        zoo.load("gpt-nano", pretrained=True)
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        zoo.load(tmp_path)


def test_load_moves_to_dtype():
    model = zoo.load("gpt-nano", backbone={"n_layers": 1}, dtype=torch.bfloat16)
    assert next(model.parameters()).dtype == torch.bfloat16
