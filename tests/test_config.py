"""Nested typed configs: family configs compose TransformerConfig as `backbone`; overrides reach nested fields
by dotted keys or partial dicts, validated at every level, and round-trip through config.json."""

import json
from dataclasses import dataclass, field

import pytest
import torch

import zoo
from zoo.config import config_from_dict, config_to_dict, dumps, parse_sets, replace_config
from zoo.nn import TransformerConfig
from zoo.registry import get_family, get_model_entry
from zoo.text.gpt import GPTConfig
from zoo.vision.vit import ViTConfig


# A three-level config, to show that nothing is special to depth 2 or to TransformerConfig.
@dataclass
class Leaf:
    rate: float = 0.5
    names: tuple[str, ...] = ("a",)

    def __post_init__(self):
        if not 0 < self.rate < 1:
            raise ValueError(f"Leaf.rate must be in (0, 1), got {self.rate}")


@dataclass
class Middle:
    width: int = 8
    leaf: Leaf = field(default_factory=Leaf)


@dataclass
class Outer:
    name: str = "x"
    middle: Middle = field(default_factory=Middle)


def test_dotted_keys_and_partial_dicts_reach_any_depth_and_keep_the_other_fields():
    config = replace_config(Outer(), {"middle.leaf.rate": "0.25", "middle": {"width": "16"}})
    assert config == Outer(middle=Middle(width=16, leaf=Leaf(rate=0.25)))  # strings parsed to the field types
    again = replace_config(config, {"middle": {"leaf": {"names": "p,q"}}})
    assert again.middle == Middle(width=16, leaf=Leaf(rate=0.25, names=("p", "q")))
    assert config.middle.leaf.names == ("a",)  # the original is untouched (dataclasses.replace at every level)
    whole = replace_config(config, {"middle.leaf": Leaf(rate=0.75)})  # a config object replaces the whole level
    assert whole.middle == Middle(width=16, leaf=Leaf(rate=0.75))


def test_nested_post_init_validation_runs_on_every_level():
    with pytest.raises(ValueError, match=r"Leaf.rate must be in \(0, 1\), got 2.0"):
        replace_config(Outer(), {"middle.leaf.rate": 2})
    with pytest.raises(ValueError, match="Leaf.rate must be in"):
        config_from_dict(Outer, {"middle": {"leaf": {"rate": 0}}})


def test_config_from_dict_rebuilds_nested_configs_and_names_unknown_keys_by_their_path():
    config = Outer(name="y", middle=Middle(width=3, leaf=Leaf(rate=0.1, names=("u", "v"))))
    data = json.loads(dumps(config))
    assert data["middle"]["leaf"]["names"] == ["u", "v"]
    rebuilt = config_from_dict(Outer, data)
    assert rebuilt == config and isinstance(rebuilt.middle.leaf, Leaf) and rebuilt.middle.leaf.names == ("u", "v")
    data["middle"]["leaf"]["rates"] = 0.3
    with pytest.raises(ValueError, match=r"unknown field 'middle.leaf.rates' for Leaf \(did you mean rate\b.*\); "
                                         r"allowed: rate, names"):
        config_from_dict(Outer, data)


def test_unknown_nested_field_names_the_dotted_path_and_suggestions():
    with pytest.raises(ValueError, match=r"unknown field 'model.backbone.n_layer' for TransformerConfig "
                                         r"\(did you mean n_layers\?\); allowed: dim, n_layers, n_heads"):
        replace_config(GPTConfig(), {"backbone.n_layer": 2}, "model")
    with pytest.raises(ValueError, match=r"unknown field 'model.backbone.n_layer'.*did you mean n_layers"):
        replace_config(GPTConfig(), {"backbone": {"n_layer": 2}}, "model")
    # A field that moved into the backbone points at its new place.
    with pytest.raises(ValueError, match=r"unknown field 'model.dim' for GPTConfig \(it is a nested field: "
                                         r"model.backbone.dim\); allowed: vocab_size, tie_embeddings, backbone"):
        replace_config(GPTConfig(), {"dim": 64}, "model")


def test_bad_type_in_a_nested_field_names_the_dotted_path():
    with pytest.raises(ValueError, match=r"model.backbone.n_layers expects an integer, got 'many'"):
        replace_config(GPTConfig(), {"backbone.n_layers": "many"}, "model")
    with pytest.raises(ValueError, match=r"backbone.dropout expects a number, got 'high'"):
        zoo.load("gpt-nano", backbone={"dropout": "high"})
    with pytest.raises(ValueError, match=r"model.backbone is a TransformerConfig: give a dict of its fields or set "
                                         r"them one by one, e.g. model.backbone.dim=..."):
        replace_config(GPTConfig(), {"backbone": "4"}, "model")
    with pytest.raises(ValueError, match=r"unknown field 'model.vocab_size.x': 'model.vocab_size' is not a "
                                         r"nested config \(its type is int\), so it has no field 'x'"):
        replace_config(GPTConfig(), {"vocab_size.x": 1}, "model")


def test_partial_dict_update_keeps_the_recipes_other_backbone_fields():
    model = zoo.load("gpt-nano", backbone={"n_layers": 2})
    backbone = model.config.backbone
    assert len(model.backbone.blocks) == 2
    # gpt-nano's other choices survive: width 128, 4 heads, context 256, GeGLU 2x wide
    assert (backbone.dim, backbone.n_heads, backbone.max_seq_len, backbone.mlp_ratio) == (128, 4, 256, 2.0)
    assert model.backbone.blocks[0].mlp.down.weight.shape == (128, 256)  # hidden = mlp_ratio * dim
    assert model.max_seq_len == 256
    dotted = zoo.load("gpt-nano", **{"backbone.n_layers": 2, "backbone.n_kv_heads": "2"})
    assert dotted.config.backbone == config_from_dict(TransformerConfig, {**config_to_dict(backbone), "n_kv_heads": 2})


def test_set_at_depth_two_reaches_the_backbone_of_the_built_model():
    sections = parse_sets(["model.backbone.n_layers=2", "model.backbone.mlp_ratio=3", "model.vocab_size=97",
                           "train.lr=1e-3"])
    assert sections == {"model": {"backbone.n_layers": "2", "backbone.mlp_ratio": "3", "vocab_size": "97"},
                        "data": {}, "train": {"lr": "1e-3"}}
    config = replace_config(get_model_entry("gpt-nano").make_config(), sections["model"], "model")
    model = get_family("gpt").build(config)
    assert len(model.backbone.blocks) == 2 and config.backbone.mlp_ratio == 3.0 and config.vocab_size == 97
    assert model.backbone.config.max_seq_len == 256  # untouched fields keep the recipe's values


def test_parse_sets_refuses_malformed_items():
    assert parse_sets(["data.path=a=b"])["data"] == {"path": "a=b"}  # the value may hold '='
    for bad in ("model.backbone.n_layers", "backbone.n_layers=2", "model.=2", "model.backbone..dim=2"):
        with pytest.raises(ValueError, match="expected section.field=value with section one of model, data, train"):
            parse_sets([bad])


def test_nested_gpt_config_saves_and_loads_equal_with_bit_exact_weights(tmp_path):
    torch.manual_seed(0)
    model = zoo.load("gpt-nano", vocab_size=61, tie_embeddings=False,
                     backbone={"n_layers": 2, "dim": 48, "n_heads": 4, "n_kv_heads": 2, "max_seq_len": 40,
                               "positions": "none", "norm": "layernorm", "bias": True})
    model.save_pretrained(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())["config"]
    assert saved["backbone"]["n_kv_heads"] == 2 and saved["backbone"]["positions"] == "none"
    assert "n_layers" not in saved  # nothing copied: the backbone's fields live only under "backbone"
    loaded = zoo.load(tmp_path / "m")
    assert loaded.config == model.config and isinstance(loaded.config.backbone, TransformerConfig)
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    idx = torch.randint(0, 61, (2, 9))
    assert torch.equal(model.eval()(idx), loaded.eval()(idx))
    overridden = zoo.load(tmp_path / "m", backbone={"dropout": 0.1})  # overrides apply to a saved model too
    assert overridden.config.backbone.dropout == 0.1 and overridden.config.backbone.n_kv_heads == 2


def test_nested_vit_config_round_trips(tmp_path):
    model = zoo.load("vit-nano", num_classes=3, pool="cls", backbone={"n_layers": 1, "rope_theta": 50})
    model.save_pretrained(tmp_path / "v")
    loaded = zoo.load(tmp_path / "v")
    assert loaded.config == model.config and loaded.config.backbone.rope_theta == 50.0
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


@pytest.mark.parametrize("backbone, message", [
    ({"causal": False}, r"GPTConfig.backbone.causal=False; allowed: True"),
    ({"positions": "rope2d"}, r"GPTConfig.backbone.positions='rope2d'; allowed: rope, none"),
    ({"cross_attention": True}, r"GPTConfig.backbone.cross_attention=True; allowed: False"),
    ({"adaln": True}, r"GPTConfig.backbone.adaln=True; allowed: False"),
])
def test_gpt_refuses_a_backbone_it_cannot_use(backbone, message):
    with pytest.raises(ValueError, match=message):
        zoo.load("gpt-nano", backbone=backbone)
    with pytest.raises(ValueError, match=message):
        GPTConfig(backbone=TransformerConfig(**{"dim": 64, **backbone}))
    with pytest.raises(TypeError, match="GPTConfig.backbone must be a TransformerConfig, got dict"):
        GPTConfig(backbone={"n_layers": 2})


def test_vit_refuses_a_backbone_it_cannot_use():
    with pytest.raises(ValueError, match=r"ViTConfig.backbone.positions='rope'; allowed: rope2d"):
        zoo.load("vit-nano", backbone={"positions": "rope"})
    with pytest.raises(ValueError, match=r"ViTConfig.backbone.causal=True; allowed: False"):
        zoo.load("vit-nano", backbone={"causal": True})
    # 32 px images in 4 px patches: 64 patch tokens, 65 with the class token.
    assert zoo.load("vit-nano", backbone={"max_seq_len": 64}).config.num_tokens == 64
    with pytest.raises(ValueError, match=r"ViTConfig.backbone.max_seq_len=64 is too small for 65 tokens \(8x8 "
                                         r"patches of 32 px images \+ the class token\); allowed: >= 65"):
        zoo.load("vit-nano", pool="cls", backbone={"max_seq_len": 64})
    with pytest.raises(ValueError, match=r"max_seq_len=257 is too small for 1024 tokens.*allowed: >= 1024"):
        zoo.load("vit-nano", image_size=128)  # vit-nano's context covers images up to 64 px
    assert zoo.load("vit-nano", image_size=128, backbone={"max_seq_len": 1024}).config.grid == 32
    with pytest.raises(ValueError, match=r"ViTConfig.backbone.max_seq_len=63 is too small for 64 tokens"):
        ViTConfig(image_size=32, patch_size=4, backbone=TransformerConfig(positions="rope2d", causal=False,
                                                                          max_seq_len=63))
