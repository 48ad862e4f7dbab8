"""Diffusion data: captions against the scenes, held-out compositions, determinism, the cache, the tokenizer,
config validation. Tiny splits only: every test renders a few dozen 32 px images at most."""

import itertools
import math

import pytest
import torch

from zoo.config import replace_config
from zoo.data.shapes import BACKGROUNDS, COLOURS, SHAPES, Background, Scene, ShapeSpec, colour_word
from zoo.diffusion import data as D
from zoo.diffusion.data import (
    BACKGROUND_COLOURS,
    LABELS,
    SPLITS,
    Attributes,
    CaptionTokenizer,
    DiffusionDataConfig,
    DiffusionScenes,
    caption,
    heldout_pairs,
    load_split,
    load_splits,
    parse_caption,
    split_pairs,
)

TINY = DiffusionDataConfig(n_train=40, n_val=8, n_test=8, n_test_heldout=8)


def pairs_of(config: DiffusionDataConfig, split: str) -> set[tuple[str, str]]:
    scenes = DiffusionScenes(config, split)
    return {(s.shapes[0].shape, s.shapes[0].colour) for s in map(scenes.scene, range(len(scenes)))}


# -----------------------------------------------------------------------------
# captions


def expected_words(scene: Scene) -> dict:
    """The scene's attributes worked out here from the raw scene, independently of the module's helpers."""
    spec = scene.shapes[0]
    col, row = min(int(spec.centre[0] * 3), 2), min(int(spec.centre[1] * 3), 2)
    position = {(1, 1): "centre"}.get((row, col), " ".join(
        w for w in (("top", "", "bottom")[row], ("left", "", "right")[col]) if w))
    third = (0.7 - 0.3) / 3  # the generator's default size range, which the diffusion data keeps
    size = "small" if spec.size < 0.3 + third else "medium" if spec.size < 0.3 + 2 * third else "large"
    return {"shape": spec.shape, "colour": spec.colour, "size": size, "position": position,
            "background": scene.background.kind,
            "background_colours": tuple(colour_word(c) for c in scene.background.colours)}


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("split", ["train", "test_heldout"])
def test_captions_state_the_scene_attributes(seed, split):
    config = DiffusionDataConfig(n_train=30, n_test_heldout=30, seed=seed)
    scenes = DiffusionScenes(config, split)
    kinds = set()
    for i in range(len(scenes)):
        scene = scenes.scene(i)
        assert len(scene.shapes) == 1 and scene.distractor is None  # all that is drawn is captioned
        text = caption(scene)
        assert text == scenes.caption(i)
        parsed = parse_caption(text)
        assert parsed.__dict__ == expected_words(scene), text
        kinds.add(parsed.background)
        words = text.split()
        assert words[:4] == ["a", parsed.size, parsed.colour, parsed.shape] and words[-1] == "background"
    assert kinds == set(BACKGROUNDS)  # every background kind is captioned in 30 scenes


def test_caption_wording():
    blue, orange, grey = (30, 70, 225), (250, 140, 20), (128, 128, 128)
    triangle = ShapeSpec("triangle", "red", 0.35, (0.1, 0.1))
    assert caption(Scene((triangle,), Background("solid", (blue,)), None, 0)) == (
        "a small red triangle at the top left on a blue background")
    ring = ShapeSpec("ring", "white", 0.65, (0.5, 0.5))
    assert caption(Scene((ring,), Background("noise", (orange,)), None, 0)) == (
        "a large white ring in the centre on a noisy orange background")
    heart = ShapeSpec("heart", "green", 0.5, (0.9, 0.5))
    assert caption(Scene((heart,), Background("gradient", (orange, grey)), None, 0)) == (
        "a medium green heart on the right on an orange to grey gradient background")
    assert caption(Scene((heart,), Background("gradient", (blue, blue)), None, 0)) == (
        "a medium green heart on the right on a blue gradient background")
    assert caption(Scene((heart,), Background("solid", (orange,)), None, 0)).endswith("on an orange background")
    with pytest.raises(ValueError, match="one shape"):
        caption(Scene((heart, ring), Background("solid", (blue,)), None, 0))


def test_parse_caption_reads_prompts_and_rejects_others():
    attrs = parse_caption("  A Small RED triangle at the  top left on a blue background ")
    assert attrs == Attributes("triangle", "red", "small", "top left", "solid", ("blue",))
    assert parse_caption("a large yellow star at the bottom on a light grey to dark cyan gradient background") == (
        Attributes("star", "yellow", "large", "bottom", "gradient", ("light grey", "dark cyan")))
    assert parse_caption("a medium black cross on the left on an orange gradient background") == (
        Attributes("cross", "black", "medium", "left", "gradient", ("orange", "orange")))
    for bad in ("a red triangle", "a small pink triangle at the top on a blue background",  # pink: not a paint
                "a small red triangle at the top on a orange background",  # article
                "a small red triangle at the top on a blue to red background",  # two colours without "gradient"
                "a small red triangle on the centre on a blue background",
                "a small red triangle at the top on a blue background please"):
        with pytest.raises(ValueError):
            parse_caption(bad)


def test_attributes_round_trip_through_label_indices():
    for shape, colour, size, position in itertools.islice(
            itertools.product(SHAPES, COLOURS, D.SIZE_WORDS, D.POSITIONS), 0, None, 37):
        for background, colours in (("solid", ("dark blue",)), ("noise", ("white",)),
                                    ("gradient", ("pink", "light grey"))):
            attrs = Attributes(shape, colour, size, position, background, colours)
            assert Attributes.from_indices(attrs.indices()) == attrs
            assert parse_caption(attrs.caption()) == attrs
    with pytest.raises(ValueError, match="gradient background has 2"):
        Attributes("ring", "red", "small", "top", "gradient", ("blue",))


def test_background_colour_names_are_all_that_colour_word_returns():
    grid = range(0, 256, 8)
    names = {colour_word(rgb) for rgb in itertools.product(grid, grid, grid)}
    assert names == set(BACKGROUND_COLOURS)


# -----------------------------------------------------------------------------
# held-out compositions


def test_heldout_pairs_are_fixed_spread_and_leave_every_shape_and_colour_seen():
    held = heldout_pairs()
    assert len(held) == 9 and held == heldout_pairs(0.125, 0)
    assert {s for s, _ in held} == set(SHAPES)  # 9 pairs: one held-out colour per shape
    assert heldout_pairs(0.125, 1) != held
    assert heldout_pairs(0.0) == frozenset()
    for k, seed in itertools.product(range(1, 37), range(3)):
        held = heldout_pairs(k / 72, seed)
        assert len(held) == k
        per_shape = [sum(s == shape for s, _ in held) for shape in SHAPES]
        per_colour = [sum(c == colour for _, c in held) for colour in COLOURS]
        assert max(per_shape) <= math.ceil(k / 9) and max(per_colour) <= math.ceil(k / 8)
        assert max(per_shape) < len(COLOURS) and max(per_colour) < len(SHAPES)
    with pytest.raises(ValueError, match="allowed"):
        heldout_pairs(0.6)


def test_splits_draw_their_pairs_only():
    config = DiffusionDataConfig(n_train=300, n_val=60, n_test=60, n_test_heldout=120)
    held = heldout_pairs(config.heldout_share, config.heldout_seed)
    assert split_pairs(config, "test_heldout") == held
    for split in ("train", "val", "test"):
        assert not pairs_of(config, split) & held, split
        assert split_pairs(config, split) == frozenset(itertools.product(SHAPES, COLOURS)) - held
    assert pairs_of(config, "test_heldout") == held  # only held-out pairs, and all of them
    train = pairs_of(config, "train")
    assert {s for s, _ in train} == set(SHAPES) and {c for _, c in train} == set(COLOURS)
    with pytest.raises(ValueError, match="unknown split"):
        DiffusionScenes(config, "validation")


def test_rendered_labels_agree_with_the_split(tmp_path):
    data = load_splits(TINY, tmp_path)
    held = heldout_pairs()
    for split in SPLITS:
        ds = data[split]
        pairs = {(SHAPES[s], list(COLOURS)[c]) for s, c in zip(ds.labels["shape"].tolist(),
                                                               ds.labels["colour"].tolist())}
        assert (pairs <= held) == (split == "test_heldout") and bool(pairs & held) == (split == "test_heldout")
        scenes = DiffusionScenes(TINY, split)
        assert ds.captions == [scenes.caption(i) for i in range(len(ds))]
        assert [ds.attributes(i) for i in range(len(ds))] == [scenes.attributes(i) for i in range(len(ds))]
        spec = scenes.scene(0).shapes[0]
        assert ds.geometry[0].tolist() == pytest.approx([spec.size, *spec.centre, spec.rotation], rel=1e-6)


# -----------------------------------------------------------------------------
# tensors: determinism and cache


def test_tensors_are_deterministic_and_seeded():
    a, b = load_split(TINY, "val"), load_split(TINY, "val")
    assert a.images.shape == (8, 3, 32, 32) and a.images.dtype == torch.uint8
    assert torch.equal(a.images, b.images) and a.captions == b.captions
    assert all(torch.equal(a.labels[k], b.labels[k]) for k in LABELS)
    other = load_split(replace_config(TINY, {"seed": 1}), "val")
    assert not torch.equal(a.images, other.images) and a.captions != other.captions
    longer = load_split(replace_config(TINY, {"n_val": 12}), "val")  # item i does not depend on the split size
    assert torch.equal(longer.images[:8], a.images)
    test = load_split(TINY, "test")  # another split: another stream
    assert not any(torch.equal(x, y) for x in a.images for y in test.images)
    bigger = load_split(replace_config(TINY, {"image_size": 48}), "val")  # same scenes at another size
    assert bigger.images.shape == (8, 3, 48, 48) and bigger.captions == a.captions


def test_workers_do_not_change_the_tensors():
    a, b = load_split(TINY, "test", num_workers=0), load_split(TINY, "test", num_workers=1)
    assert torch.equal(a.images, b.images) and torch.equal(a.geometry, b.geometry)


def test_cache_is_reused(tmp_path, monkeypatch):
    calls = []
    real = D.render
    monkeypatch.setattr(D, "render", lambda scene, config: calls.append(1) or real(scene, config))
    first = load_split(TINY, "val", tmp_path)
    assert len(calls) == TINY.n_val
    (path,) = tmp_path.glob("diffusion-val-*.safetensors")
    mtime = path.stat().st_mtime_ns
    again = load_split(TINY, "val", tmp_path)
    assert len(calls) == TINY.n_val and path.stat().st_mtime_ns == mtime  # loaded, not rendered
    assert torch.equal(first.images, again.images) and first.captions == again.captions
    load_split(replace_config(TINY, {"n_train": 50}), "val", tmp_path)  # other splits' sizes are not in the key
    assert len(calls) == TINY.n_val
    load_split(replace_config(TINY, {"heldout_seed": 3}), "val", tmp_path)  # other pairs: rendered anew
    assert len(calls) == 2 * TINY.n_val and len(list(tmp_path.glob("diffusion-val-*"))) == 2
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary files left behind


def test_items_and_empty_splits(tmp_path):
    tokenizer = CaptionTokenizer.build()
    ds = load_split(TINY, "train", tokenizer=tokenizer)
    item = ds[3]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert -1.0 <= item["image"].min() and item["image"].max() <= 1.0
    assert torch.allclose((item["image"] + 1) * 127.5, ds.images[3].float(), atol=1e-3)
    assert tokenizer.decode(item["tokens"].tolist()) == item["caption"] == ds.captions[3]
    assert item["mask"].sum() == len(item["caption"].split())
    empty = load_split(replace_config(TINY, {"n_test": 0}), "test", tmp_path)
    assert len(empty) == 0 and empty.images.shape == (0, 3, 32, 32)


# -----------------------------------------------------------------------------
# tokenizer


def test_tokenizer_round_trip_and_unknown_words(tmp_path):
    tok = CaptionTokenizer.build()
    assert tok.pad_id == 0 and tok.unk_id == 1 and tok.max_length == D.max_caption_words() == 17
    assert tok.vocab_size == 2 + len(D.caption_words())
    scenes = DiffusionScenes(DiffusionDataConfig(n_train=200), "train")
    for i in range(len(scenes)):
        text = scenes.caption(i)
        ids = tok.encode(text)
        assert tok.unk_id not in ids and len(ids) == len(text.split()) <= tok.max_length
        assert tok.decode(ids) == text
    longest = "a medium purple crescent at the bottom right on a light grey to dark grey gradient background"
    assert len(tok.encode(longest)) == 17
    prompt = "A huge, RED triangle at the top-left; CENTER gray <unk> huge"
    assert tok.unknown_words(prompt) == ["huge", "unk", "huge"]
    assert tok.decode(tok.encode(prompt)) == "a <unk> red triangle at the top left centre grey <unk> <unk>"
    assert tok.unknown_words("a small red triangle at the top left on a blue background") == []
    ids, mask = tok.encode_batch(["a red ring", "a large blue star"])
    assert ids.shape == mask.shape == (2, 17) and mask.sum(1).tolist() == [3, 4]
    assert tok.decode(ids[0].tolist()) == "a red ring"
    with pytest.raises(ValueError, match="at most 17"):
        tok.encode(longest + " and more words")
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([tok.vocab_size])
    path = tok.save(tmp_path)
    assert path.name == "tokenizer.json"
    loaded = CaptionTokenizer.load(tmp_path)
    assert loaded.max_length == 17 and loaded.hf.get_vocab() == tok.hf.get_vocab()
    assert loaded.encode(prompt) == tok.encode(prompt) and loaded.unknown_words(prompt) == tok.unknown_words(prompt)
    short = CaptionTokenizer.build(max_length=5)
    assert CaptionTokenizer.load(short.save(tmp_path / "short.json")).max_length == 5
    with pytest.raises(FileNotFoundError):
        CaptionTokenizer.load(tmp_path / "missing.json")


# -----------------------------------------------------------------------------
# config


@pytest.mark.parametrize("field,value,allowed", [
    ("image_size", 8, ">= 16"), ("n_train", 0, ">= 1"), ("n_val", 0, ">= 1"), ("n_test", -1, ">= 0"),
    ("n_test_heldout", 2.5, "integer"), ("seed", -1, ">= 0"), ("heldout_seed", True, "integer"),
    ("heldout_share", 0.6, r"\[0, 0.5\]"), ("heldout_share", "a lot", r"\[0, 0.5\]"),
    ("heldout_share", 0.001, "one pair"), ("backgrounds", (), "non-empty"), ("backgrounds", ("plaid",), "solid"),
    ("backgrounds", "solid", "a tuple"),
])
def test_config_validation_names_the_field(field, value, allowed):
    with pytest.raises(ValueError, match=rf"DiffusionDataConfig\.{field}=.*allowed.*{allowed}"):
        DiffusionDataConfig(**{field: value})


def test_config_from_the_command_line():
    config = replace_config(DiffusionDataConfig(), {"backgrounds": "solid,noise", "heldout_share": "0.25"}, "data")
    assert config.backgrounds == ("solid", "noise") and len(heldout_pairs(config.heldout_share)) == 18
    assert DiffusionDataConfig(heldout_share=0.0, n_test_heldout=0).count("test_heldout") == 0
    assert DiffusionDataConfig(backgrounds=["solid"]).backgrounds == ("solid",)
    with pytest.raises(ValueError, match="unknown split"):
        DiffusionDataConfig().count("dev")
