"""The captioned-shapes generator: determinism, labels, pixels, captions, errors, learnability, caching."""

import re

import numpy as np
import pytest
import torch
from PIL import Image

from zoo.data import shapes as S
from zoo.data.shapes import (
    COLOURS,
    NUMBERS,
    SHAPES,
    SceneConfig,
    ShapesDataset,
    ShapeSpec,
    caption,
    class_names,
    label,
    materialize,
    render,
    sample_scene,
    save_grid,
    shape_mask,
)


def scenes(n: int, config: SceneConfig = SceneConfig(), seed: int = 0) -> list[S.Scene]:
    return [sample_scene(np.random.default_rng([seed, i]), config) for i in range(n)]


# -----------------------------------------------------------------------------
# determinism


def test_item_is_a_pure_function_of_seed_and_index():
    a, b = ShapesDataset(1000, seed=7), ShapesDataset(5, seed=7)  # a different n must not matter
    for i in range(5):
        assert a.pil(i).tobytes() == b.pil(i).tobytes()
        assert torch.equal(a[i][0], b[i][0]) and a[i][1] == b[i][1]
        assert a.caption(i) == b.caption(i)
    images = [a.pil(i).tobytes() for i in range(20)]
    assert len(set(images)) == 20  # different i -> different image
    other = ShapesDataset(5, seed=8)
    assert all(other.pil(i).tobytes() != b.pil(i).tobytes() for i in range(5))
    assert torch.equal(a[-1][0], a[999][0])


def test_scene_does_not_depend_on_resolution():
    # the 32 px and 64 px datasets show the same scenes, which lets models be compared across sizes
    small, large = ShapesDataset(10, 3), ShapesDataset(10, 3, config=SceneConfig(image_size=64))
    assert [small.caption(i) for i in range(10)] == [large.caption(i) for i in range(10)]
    a, b = small[0][0], large[0][0]
    assert a.shape == (3, 32, 32) and b.shape == (3, 64, 64)
    assert (torch.nn.functional.avg_pool2d(b, 2) - a).abs().mean() < 0.05


# -----------------------------------------------------------------------------
# items and labels


@pytest.mark.parametrize("task,config", [("shape", SceneConfig()), ("colour", SceneConfig(image_size=48)),
                                         ("count", SceneConfig(max_count=4))])
def test_items_are_float_images_in_unit_range_with_labels_in_range(task, config):
    ds = ShapesDataset(16, 0, task=task, config=config)
    size = config.image_size
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.dtype == torch.float32 and x.shape == (3, size, size)
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert isinstance(y, int) and 0 <= y < len(ds.classes)
    assert ds.classes == class_names(task, config)
    assert ShapesDataset(2, 0, transform=lambda im: im.size)[0][0] == (32, 32)
    assert ds.pil(0).mode == "RGB" and ds.pil(0).size == (size, size)
    with pytest.raises(IndexError):
        ds[len(ds)]


@pytest.mark.parametrize("task,classes", [
    ("shape", SHAPES), ("colour", tuple(COLOURS)), ("count", NUMBERS[:4]),
])
def test_every_class_occurs_roughly_uniformly(task, classes):
    ds = ShapesDataset(500, 1, task=task, config=SceneConfig(max_count=4))
    counts = np.bincount(ds.labels(), minlength=len(classes))
    assert len(counts) == len(classes) == len(ds.classes) and counts.sum() == 500
    expected = 500 / len(classes)
    tolerance = 4 * np.sqrt(expected)  # ~4 binomial standard deviations
    assert np.abs(counts - expected).max() < tolerance, counts


def test_labels_match_the_scene():
    for scene in scenes(50, SceneConfig(max_count=3)):
        main = scene.shapes[0]
        assert all(s.shape == main.shape and s.colour == main.colour for s in scene.shapes)
        assert SHAPES[label(scene, "shape")] == main.shape
        assert list(COLOURS)[label(scene, "colour")] == main.colour
        assert label(scene, "count") == len(scene.shapes) - 1


def test_paint_is_closest_to_its_named_colour_and_clutter_follows_its_probability():
    palette = np.array(list(COLOURS.values()))
    sampled = scenes(200)
    for scene in sampled:
        fill = np.array(scene.shapes[0].fill)
        assert np.abs(fill - COLOURS[scene.shapes[0].colour]).max() <= 25  # jittered, not recoloured
        assert list(COLOURS)[np.linalg.norm(palette - fill, axis=1).argmin()] == scene.shapes[0].colour
    with_clutter = sum(scene.distractor is not None for scene in sampled)
    assert 70 < with_clutter < 130  # distractor_prob=0.5 (a few crowded scenes drop theirs)
    assert {d.kind for scene in sampled if (d := scene.distractor)} == {"line", "dots", "shape"}
    assert all(scene.distractor is None for scene in scenes(50, SceneConfig(distractor_prob=0.0)))
    for scene in sampled:  # clutter shapes are of another class, so the label stays unambiguous
        if scene.distractor is not None and scene.distractor.kind == "shape":
            assert scene.distractor.shape != scene.shapes[0].shape


def test_at_least_eight_distinct_shapes_and_colours():
    assert len(set(SHAPES)) >= 8 and len(set(COLOURS)) >= 8
    # a rotated square is a diamond: both classes at once would be unlearnable under free rotation
    assert not {"square", "diamond"} <= set(SHAPES)
    masks = {s: shape_mask(ShapeSpec(s, "red", 0.9, (0.5, 0.5)), 32) > 0.5 for s in SHAPES}
    for a in SHAPES:  # every pair of silhouettes differs in a clear number of pixels
        for b in SHAPES:
            if a < b:
                assert (masks[a] ^ masks[b]).sum() > 40, (a, b)


# -----------------------------------------------------------------------------
# pixels


def test_shape_stands_out_from_background_and_is_painted_on_top():
    config = SceneConfig(noise_std=0.0, distractor_prob=1.0)  # clutter on, sensor noise off
    for scene in scenes(60, config):
        image = np.asarray(render(scene, config), dtype=np.float32) / 255
        mask = np.max([shape_mask(s, config.image_size) for s in scene.shapes], axis=0)
        fill = np.array(scene.shapes[0].fill) / 255
        inside = image[mask > 0.999]
        assert len(inside) > 0
        # the distractor is drawn first, so fully covered pixels are exactly the shape's paint
        assert np.abs(inside - fill).max() <= 1 / 255 + 1e-6
        outside = image[mask == 0]
        contrast = np.linalg.norm(outside.mean(0) - fill)
        assert contrast > 0.3, (caption(scene), contrast)


def test_count_scenes_have_separate_visible_shapes():
    config = SceneConfig(max_count=5)
    seen = set()
    for scene in scenes(100, config):
        seen.add(len(scene.shapes))
        masks = [shape_mask(s, 32) for s in scene.shapes]
        assert all(m.sum() > 8 for m in masks)  # each copy covers > 8 px at 32 px
        for a in range(len(masks)):  # and no two copies touch, so the count is unambiguous
            for b in range(a):
                assert (masks[a] * masks[b]).max() == 0
        for s in scene.shapes:  # fully inside the image
            assert s.size / 2 <= min(*s.centre, 1 - s.centre[0], 1 - s.centre[1]) + 1e-9
    assert seen == {1, 2, 3, 4, 5}


def test_render_is_deterministic_and_uses_all_backgrounds():
    kinds = set()
    for scene in scenes(30):
        kinds.add(scene.background.kind)
        assert render(scene).tobytes() == render(scene).tobytes()
    assert kinds == set(S.BACKGROUNDS)
    solid = SceneConfig(backgrounds=("solid",), noise_std=0.0, distractor_prob=0.0)
    for scene in scenes(5, solid):
        image = np.asarray(render(scene, solid))
        corners = {tuple(image[y, x]) for y in (0, -1) for x in (0, -1)}
        assert corners == {scene.background.colours[0]}


# -----------------------------------------------------------------------------
# captions


def test_caption_names_shape_colour_and_background():
    for scene in scenes(100, SceneConfig(max_count=3)):
        text = caption(scene)
        main, n = scene.shapes[0], len(scene.shapes)
        assert text == caption(scene)
        assert re.search(rf"\b{main.colour}\b", text) and main.shape in text
        assert "background" in text
        if n == 1:
            assert re.match(r"a (small|medium|large) ", text)
            assert text.endswith(("top left", "top", "top right", "left", "centre", "right",
                                  "bottom left", "bottom", "bottom right"))
        else:
            assert text.startswith(f"{NUMBERS[n - 1]} {main.colour} {S._plural(main.shape)} ")


def test_caption_example():
    spec = ShapeSpec("star", "red", 0.65, (0.2, 0.2), 10.0)
    scene = S.Scene((spec,), S.Background("solid", ((20, 30, 110),)), None, seed=0)
    assert caption(scene) == "a large red star on a dark blue background, top left"
    crosses = tuple(ShapeSpec("cross", "green", 0.2, (0.2 + 0.3 * k, 0.5)) for k in range(3))
    scene = S.Scene(crosses, S.Background("noise", ((128, 128, 128),)), None, seed=0)
    assert caption(scene) == "three green crosses on a noisy grey background"


# -----------------------------------------------------------------------------
# errors


@pytest.mark.parametrize("make,bad,allowed", [
    (lambda: ShapesDataset(10, 0, task="size"), "size", ["shape", "colour", "count"]),
    (lambda: label(scenes(1)[0], "hue"), "hue", ["shape", "colour", "count"]),
    (lambda: class_names("hue"), "hue", ["shape", "colour", "count"]),
    (lambda: ShapeSpec("circle", "pink", 0.5, (0.5, 0.5)), "pink", list(COLOURS)),
    (lambda: ShapeSpec("diamond", "red", 0.5, (0.5, 0.5)), "diamond", list(SHAPES)),
    (lambda: SceneConfig(image_size=8), "8", ["16"]),
    (lambda: SceneConfig(backgrounds=("stripes",)), "stripes", ["solid", "gradient", "noise"]),
    (lambda: ShapesDataset(0, 0), "0", ["positive"]),
    (lambda: ShapesDataset(-3, 0), "-3", ["positive"]),
    (lambda: ShapesDataset(10, 0, task="count"), "max_count=1", ["2..9"]),
])
def test_bad_inputs_raise_value_error_naming_the_allowed_values(make, bad, allowed):
    with pytest.raises(ValueError) as err:
        make()
    message = str(err.value)
    assert bad in message and all(a in message for a in allowed), message


# -----------------------------------------------------------------------------
# learnability: clearly above chance with cheap features, far from trivial


def _features(x: torch.Tensor) -> torch.Tensor:
    """Translation-invariant silhouette features: |FFT| of each pixel's distance from the border colour."""
    border = torch.cat([x[:, :, 0], x[:, :, -1], x[:, :, :, 0], x[:, :, :, -1]], dim=-1).median(-1).values
    distance = (x - border[:, :, None, None]).norm(dim=1)
    distance = distance / distance.flatten(1).amax(1)[:, None, None]
    return torch.log1p(torch.fft.fft2(distance).abs()[:, :12, :12]).flatten(1)


def _nearest_centroid_accuracy(f: torch.Tensor, y: torch.Tensor, n_train: int, n_classes: int) -> float:
    mean, std = f[:n_train].mean(0), f[:n_train].std(0) + 1e-6
    f = (f - mean) / std
    centroids = torch.stack([f[:n_train][y[:n_train] == c].mean(0) for c in range(n_classes)])
    predictions = torch.cdist(f[n_train:], centroids).argmin(1)
    return (predictions == y[n_train:]).float().mean().item()


def test_shape_task_is_learnable_but_not_trivial():
    data = materialize(ShapesDataset(2000, 123), progress=False)
    x, y = data.images.float() / 255, data.targets
    chance = 1 / len(SHAPES)
    accuracy = _nearest_centroid_accuracy(_features(x), y, 1500, len(SHAPES))
    assert 3 * chance < accuracy < 0.9, accuracy  # measured ~0.45
    # raw pixels carry no shortcut: random colour, position and background leave them near chance
    raw = _nearest_centroid_accuracy(x.flatten(1), y, 1500, len(SHAPES))
    assert raw < 2 * chance, raw


# -----------------------------------------------------------------------------
# materialize, cache, grid


def test_materialize_matches_items_and_caches_to_safetensors(tmp_path, monkeypatch):
    ds = ShapesDataset(40, 5, task="colour")
    data = materialize(ds, cache_dir=tmp_path, progress=False)
    assert data.images.dtype == torch.uint8 and data.images.shape == (40, 3, 32, 32)
    assert data.classes == ds.classes and len(data) == 40
    for i in (0, 17, 39):
        x, y = ds[i]
        assert torch.equal(data[i][0], x) and data[i][1] == y
    files = list(tmp_path.iterdir())
    assert [f.suffix for f in files] == [".safetensors"]

    def no_render(*args, **kwargs):
        raise AssertionError("should have loaded from the cache")

    monkeypatch.setattr(S, "render", no_render)
    again = materialize(ShapesDataset(40, 5, task="shape"), cache_dir=tmp_path, progress=False)
    assert torch.equal(again.images, data.images)
    assert again.targets.tolist() == [label(ds.scene(i), "shape") for i in range(40)]
    with pytest.raises(AssertionError):  # another seed is another file
        materialize(ShapesDataset(40, 6), cache_dir=tmp_path, progress=False)


def test_save_grid_writes_png_and_captions(tmp_path):
    ds = ShapesDataset(10, 0)
    path = tmp_path / "grid.png"
    save_grid(ds, path, nrow=5)
    with Image.open(path) as image:
        assert image.size == (5 * 34 + 2, 2 * 34 + 2)  # 32 px tiles, 2 px padding
    assert path.with_suffix(".txt").read_text().splitlines() == [ds.caption(i) for i in range(10)]
    save_grid(materialize(ds, progress=False).images, tmp_path / "u8.png", nrow=4, n=8, scale=2)
    with Image.open(tmp_path / "u8.png") as image:
        assert image.size == (4 * 66 + 2, 2 * 66 + 2)
