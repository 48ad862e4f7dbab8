"""
Captioned shapes: a procedurally drawn image dataset, deterministic by seed.

Each image holds one main shape (or, for the count task, several copies of it) in a named colour on a
random background, plus optional clutter. The same scene also yields a caption, so the one generator
feeds both the vision classifiers (AlexNet, ViT) and the text-to-image diffusion models.

    ds = ShapesDataset(n=20_000, seed=0, task="shape")
    image, label = ds[0]          # float tensor (3, 32, 32) in [0, 1], int in range(len(ds.classes))
    ds.caption(0)                 # "a large red star on a dark blue background, top left"
    fast = materialize(ds, cache_dir="~/.cache/zoo")   # render once into a uint8 tensor

Item i is a pure function of (seed, i, config): any subset, worker or rank draws the identical image.
Drawing: masks are drawn with PIL at SUPERSAMPLE x resolution and box-filtered down (exact area
coverage, i.e. anti-aliased edges); backgrounds and compositing are done at full size in numpy.

Class choice: "diamond" is deliberately absent because a square rotated by 45 degrees *is* a diamond,
and we want free rotation for every class. Pentagons/hexagons/octagons are absent because at ~10 px
they blur into circles. The classes kept differ in topology (ring, crescent) or silhouette (points,
arms, lobes, a shaft) and stay distinct at 32 px under any rotation.
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import Dataset, TensorDataset

from zoo.errors import InputError
from zoo.utils import read_cache, written_atomically

SHAPES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "cross", "ring", "arrow", "crescent", "heart",
)
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 70, 225),
    "yellow": (245, 220, 30),
    "purple": (140, 40, 185),
    "orange": (250, 140, 20),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
TASKS: tuple[str, ...] = ("shape", "colour", "count")
BACKGROUNDS: tuple[str, ...] = ("solid", "gradient", "noise")
NUMBERS: tuple[str, ...] = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# Bump whenever the pixels a given (config, seed, i) produces change: it is part of the cache key.
GENERATOR_VERSION = 1
SUPERSAMPLE = 4  # draw masks at 4x and box-filter down: anti-aliased edges for ~free
MIN_CONTRAST = 0.45  # Euclidean RGB distance in [0,1] units (max sqrt(3)) between shape and background
COLOUR_JITTER = 20  # +- per channel, so "red" is a small cloud of reds, not a single lookup value
NOISE_TEXTURE_STD = 0.07  # amplitude of the blotchy "noise" background, kept well below MIN_CONTRAST

RGB = tuple[int, int, int]


# -----------------------------------------------------------------------------
# scene description: plain frozen dataclasses, no pixels


@dataclass(frozen=True)
class ShapeSpec:
    shape: str
    colour: str  # a COLOURS name: this is the label, `rgb` is the (jittered) paint actually used
    size: float  # diameter of the circumscribed circle, as a fraction of the image side
    centre: tuple[float, float]  # (x, y) in [0, 1], y pointing down like image rows
    rotation: float = 0.0  # degrees
    rgb: RGB | None = None  # None -> exactly COLOURS[colour]

    def __post_init__(self) -> None:
        _check("shape", self.shape, SHAPES)
        _check("colour", self.colour, tuple(COLOURS))

    @property
    def fill(self) -> RGB:
        return self.rgb if self.rgb is not None else COLOURS[self.colour]


@dataclass(frozen=True)
class Background:
    kind: str  # one of BACKGROUNDS
    colours: tuple[RGB, ...]  # 1 colour for solid/noise, 2 (start, end) for gradient
    angle: float = 0.0  # gradient direction in degrees


@dataclass(frozen=True)
class Distractor:
    """Small clutter of a different kind than the main shape; drawn first, so never on top of it."""

    kind: str  # "line" | "dots" | "shape"
    rgb: RGB
    points: tuple[tuple[float, float], ...]  # line end points / dot centres / shape centre, in [0, 1]
    size: float  # line width / dot diameter / shape diameter, fraction of image side
    shape: str = ""  # the SHAPES class, for kind == "shape"
    rotation: float = 0.0


@dataclass(frozen=True)
class Scene:
    shapes: tuple[ShapeSpec, ...]  # the main shapes: all the same class and colour name
    background: Background
    distractor: Distractor | None
    seed: int  # drives the pixel-level randomness (noise texture, sensor noise) in render()


@dataclass(frozen=True)
class SceneConfig:
    image_size: int = 32
    min_size: float = 0.3  # the main shape's diameter range, fraction of image side
    max_size: float = 0.7
    rotate: bool = True
    backgrounds: tuple[str, ...] = BACKGROUNDS  # kinds to draw from, uniformly
    noise_std: float = 0.03  # additive Gaussian pixel noise, [0,1] units
    distractor_prob: float = 0.5
    max_count: int = 1  # >1: each scene holds 1..max_count copies of the main shape (count task)

    def __post_init__(self) -> None:
        if self.image_size < 16:
            raise InputError(f"image_size={self.image_size} is too small: allowed image_size >= 16")
        if not 0.05 <= self.min_size <= self.max_size <= 1.0:
            raise InputError(
                f"min_size={self.min_size}, max_size={self.max_size}: "
                "allowed 0.05 <= min_size <= max_size <= 1"
            )
        if not self.backgrounds:
            raise InputError(f"backgrounds is empty: allowed a non-empty subset of {BACKGROUNDS}")
        for kind in self.backgrounds:
            _check("background", kind, BACKGROUNDS)
        if self.noise_std < 0:
            raise InputError(f"noise_std={self.noise_std}: allowed noise_std >= 0")
        if not 0.0 <= self.distractor_prob <= 1.0:
            raise InputError(f"distractor_prob={self.distractor_prob}: allowed 0 <= distractor_prob <= 1")
        if not 1 <= self.max_count <= len(NUMBERS):
            raise InputError(f"max_count={self.max_count}: allowed 1 <= max_count <= {len(NUMBERS)}")


def _check(what: str, value: object, allowed: Sequence[object]) -> None:
    if value not in allowed:
        raise InputError(f"unknown {what} {value!r}; allowed: {', '.join(map(str, allowed))}")


# -----------------------------------------------------------------------------
# sampling a scene


def sample_scene(rng: np.random.Generator, config: SceneConfig = SceneConfig()) -> Scene:
    # class labels first and uniformly, so every class is equally frequent by construction;
    # the background then adapts to the shape colour (never the other way round)
    count = int(rng.integers(1, config.max_count + 1))
    shape = SHAPES[rng.integers(len(SHAPES))]
    colour = list(COLOURS)[rng.integers(len(COLOURS))]
    jitter = rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, 3)
    rgb = tuple(int(v) for v in np.clip(np.array(COLOURS[colour]) + jitter, 0, 255))

    # several copies must be smaller to fit side by side; 1/sqrt(count) keeps total area roughly constant
    shrink = 1.0 if count == 1 else min(1.0, 1.2 / math.sqrt(count))
    sizes, centres = _place(rng, rng.uniform(config.min_size, config.max_size, count) * shrink)
    rotations = rng.uniform(0, 360, count) if config.rotate else np.zeros(count)
    shapes = tuple(
        ShapeSpec(shape, colour, float(s), (float(c[0]), float(c[1])), float(r), rgb)
        for s, c, r in zip(sizes, centres, rotations)
    )

    background = _sample_background(rng, config, rgb)
    distractor = None
    if rng.random() < config.distractor_prob:
        # a small shape of another class next to several tiny main shapes makes counts ambiguous
        kinds = ("line", "dots") if config.max_count > 1 else ("line", "dots", "shape")
        distractor = _sample_distractor(rng, shapes, background, kinds)
    return Scene(shapes, background, distractor, seed=int(rng.integers(2**31)))


def _place(rng: np.random.Generator, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sizes, centres) such that every shape lies inside the image and no two circumscribed circles
    come close, so the count is unambiguous. Shapes go in one at a time by rejection sampling (far
    likelier to succeed than placing all at once); if one will not fit, shrink all by 10% and restart."""
    for _ in range(100):
        centres: list[np.ndarray] = []
        for size in sizes:
            for _ in range(50):
                c = size / 2 + rng.random(2) * (1 - size)
                # gap: 10% of the radii plus 1 px at 32 px, visible even after anti-aliasing
                if all(np.hypot(*(c - o)) > (size + s) / 2 * 1.1 + 0.03 for o, s in zip(centres, sizes)):
                    centres.append(c)
                    break
            else:
                break
        if len(centres) == len(sizes):
            return sizes, np.array(centres)
        sizes = sizes * 0.9
    raise RuntimeError("could not place shapes")  # unreachable: 0.9**100 makes anything fit


def _contrast(rgb: RGB, background: Background) -> float:
    """Smallest RGB distance between the paint and the background, checked along gradients too
    (distance is convex, so a mid-gradient colour can be closer than either end)."""
    a = np.array(rgb) / 255
    cols = np.array(background.colours) / 255
    if len(cols) == 2:
        cols = cols[0] + np.linspace(0, 1, 9)[:, None] * (cols[1] - cols[0])
    return float(np.linalg.norm(cols - a, axis=1).min())


def _sample_background(rng: np.random.Generator, config: SceneConfig, rgb: RGB) -> Background:
    kind = config.backgrounds[rng.integers(len(config.backgrounds))]
    for _ in range(100):
        n_colours = 2 if kind == "gradient" else 1
        colours = tuple(tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(n_colours))
        background = Background(kind, colours, float(rng.uniform(0, 360)))
        if _contrast(rgb, background) >= MIN_CONTRAST:
            return background
    # practically unreachable; black or white is always far from at least one of our colours
    far = (0, 0, 0) if sum(rgb) > 3 * 128 else (255, 255, 255)
    return Background("solid", (far,))


def _sample_distractor(
    rng: np.random.Generator, shapes: tuple[ShapeSpec, ...], background: Background, kinds: tuple[str, ...]
) -> Distractor | None:
    kind = kinds[rng.integers(len(kinds))]
    for _ in range(100):  # any colour that stands out from the background
        rgb = tuple(int(v) for v in rng.integers(0, 256, 3))
        if _contrast(rgb, background) >= MIN_CONTRAST:
            break
    # anchor it outside every main shape's circle so it is never fully hidden behind one
    for _ in range(50):
        anchor = rng.uniform(0.1, 0.9, 2)
        if all(np.hypot(*(anchor - s.centre)) > s.size / 2 + 0.04 for s in shapes):
            break
    else:
        return None  # crowded scene: no clutter rather than clutter on top of the label
    if kind == "line":
        angle, length = rng.uniform(0, math.pi), rng.uniform(0.2, 0.5)
        d = np.array([math.cos(angle), math.sin(angle)]) * length / 2
        ends = np.clip([anchor - d, anchor + d], 0, 1)
        return Distractor("line", rgb, _points(ends), float(rng.uniform(0.03, 0.06)))
    if kind == "dots":
        dots = np.clip(anchor + rng.normal(0, 0.06, (int(rng.integers(3, 6)), 2)), 0.03, 0.97)
        return Distractor("dots", rgb, _points(dots), float(rng.uniform(0.05, 0.08)))
    other = [s for s in SHAPES if s != shapes[0].shape]
    size = float(rng.uniform(0.12, 0.2))
    anchor = np.clip(anchor, size / 2, 1 - size / 2)
    shape = other[rng.integers(len(other))]
    return Distractor("shape", rgb, _points([anchor]), size, shape, rotation=float(rng.uniform(0, 360)))


def _points(xy: np.ndarray | Sequence[np.ndarray]) -> tuple[tuple[float, float], ...]:
    return tuple((float(x), float(y)) for x, y in xy)


# -----------------------------------------------------------------------------
# geometry: every shape is a list of (polygon, fill) in unit coordinates inside the unit circle;
# fill 0 polygons punch holes (ring, crescent), which is why we draw masks rather than colours


def _ngon(
    n: int, radius: float = 1.0, phase: float = -90.0, centre: tuple[float, float] = (0.0, 0.0)
) -> np.ndarray:
    t = np.deg2rad(phase + np.arange(n) * 360 / n)
    return np.stack([centre[0] + radius * np.cos(t), centre[1] + radius * np.sin(t)], axis=1)


def _star(points: int = 5, inner: float = 0.42) -> np.ndarray:
    outer, inner_ = _ngon(points), _ngon(points, inner, phase=-90 + 180 / points)
    return np.stack([outer, inner_], axis=1).reshape(-1, 2)


def _heart() -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))  # minus: image y is down
    pts = np.stack([x, y], axis=1)
    pts -= (pts.max(0) + pts.min(0)) / 2  # centre the bounding box ...
    return pts / np.linalg.norm(pts, axis=1).max()  # ... and fit the unit circle


_W = 0.3  # half-width of the cross arms and (scaled) arrow shaft: thick enough to survive 32 px
_OUTLINES: dict[str, list[tuple[np.ndarray, int]]] = {
    "circle": [(_ngon(64), 255)],
    "square": [(np.array([[-0.7, -0.7], [0.7, -0.7], [0.7, 0.7], [-0.7, 0.7]]), 255)],
    "triangle": [(_ngon(3, phase=-90) + [0, 0.12], 255)],  # shifted so its bounding box is centred
    "star": [(_star(), 255)],
    "cross": [(np.array([[-_W, -0.95], [_W, -0.95], [_W, -_W], [0.95, -_W], [0.95, _W], [_W, _W],
                         [_W, 0.95], [-_W, 0.95], [-_W, _W], [-0.95, _W], [-0.95, -_W], [-_W, -_W]]), 255)],
    "ring": [(_ngon(64), 255), (_ngon(64, 0.55), 0)],
    "arrow": [(np.array([[-0.95, -0.22], [0.1, -0.22], [0.1, -0.65], [0.95, 0], [0.1, 0.65],
                         [0.1, 0.22], [-0.95, 0.22]]), 255)],
    "crescent": [(_ngon(64), 255), (_ngon(64, 0.85, centre=(0.45, 0.0)), 0)],
    "heart": [(_heart(), 255)],
}


def _rotation(degrees: float) -> np.ndarray:
    t = math.radians(degrees)
    return np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])


def _draw_mask(size: int, draw: Callable[[ImageDraw.ImageDraw, int], None]) -> np.ndarray:
    big = size * SUPERSAMPLE
    mask = Image.new("L", (big, big), 0)
    draw(ImageDraw.Draw(mask), big)
    return np.asarray(mask.resize((size, size), Image.BOX), dtype=np.float32) / 255


def _polygons(
    d: ImageDraw.ImageDraw, big: int, shape: str, size: float, centre: Sequence[float], rotation: float
) -> None:
    transform = _rotation(rotation).T * (size / 2 * big)
    offset = np.asarray(centre) * big
    for poly, fill in _OUTLINES[shape]:
        d.polygon((poly @ transform + offset).ravel().tolist(), fill=fill)


def shape_mask(spec: ShapeSpec, image_size: int) -> np.ndarray:
    """Coverage of one shape as float32 (image_size, image_size) in [0, 1], anti-aliased."""
    return _draw_mask(
        image_size, lambda d, big: _polygons(d, big, spec.shape, spec.size, spec.centre, spec.rotation)
    )


def _distractor_mask(dis: Distractor, image_size: int) -> np.ndarray:
    def draw(d: ImageDraw.ImageDraw, big: int) -> None:
        if dis.kind == "shape":
            _polygons(d, big, dis.shape, dis.size, dis.points[0], dis.rotation)
        elif dis.kind == "line":
            ends = [(x * big, y * big) for x, y in dis.points]
            d.line(ends, fill=255, width=max(1, round(dis.size * big)))
        else:
            r = dis.size / 2 * big
            for x, y in dis.points:
                d.ellipse([x * big - r, y * big - r, x * big + r, y * big + r], fill=255)

    return _draw_mask(image_size, draw)


# -----------------------------------------------------------------------------
# rendering


def _background(bg: Background, size: int, rng: np.random.Generator) -> np.ndarray:
    c0 = np.array(bg.colours[0], dtype=np.float32) / 255
    if bg.kind == "solid":
        return np.broadcast_to(c0, (size, size, 3)).copy()
    if bg.kind == "gradient":
        c1 = np.array(bg.colours[1], dtype=np.float32) / 255
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1) - 0.5
        t = xx * math.cos(math.radians(bg.angle)) + yy * math.sin(math.radians(bg.angle))
        t = (t - t.min()) / (t.max() - t.min())
        return c0 + t[..., None] * (c1 - c0)
    # "noise": smooth colour blotches, a coarse random grid upsampled bicubically
    k = int(rng.integers(3, 8))
    grid = rng.normal(0, NOISE_TEXTURE_STD, (3, k, k)).astype(np.float32)
    up = [np.asarray(Image.fromarray(g, mode="F").resize((size, size), Image.BICUBIC)) for g in grid]
    return c0 + np.stack(up, axis=-1)


def _paint(image: np.ndarray, mask: np.ndarray, rgb: RGB) -> np.ndarray:
    alpha = mask[..., None]
    return image * (1 - alpha) + (np.array(rgb, dtype=np.float32) / 255) * alpha


def render(scene: Scene, config: SceneConfig = SceneConfig()) -> Image.Image:
    """Pixels of a scene: a pure function of (scene, config)."""
    size = config.image_size
    rng = np.random.default_rng(scene.seed)
    image = _background(scene.background, size, rng)
    if scene.distractor is not None:  # first, so the main shapes are painted over it
        image = _paint(image, _distractor_mask(scene.distractor, size), scene.distractor.rgb)
    for spec in scene.shapes:
        image = _paint(image, shape_mask(spec, size), spec.fill)
    if config.noise_std > 0:
        image = image + rng.normal(0, config.noise_std, image.shape).astype(np.float32)
    return Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8), mode="RGB")


# -----------------------------------------------------------------------------
# captions and labels


def colour_word(rgb: Sequence[int]) -> str:
    """A rough English name for an arbitrary RGB colour (used for backgrounds), e.g. "dark blue"."""
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
    if v < 0.2:
        return "black"
    if s < 0.2:
        return "white" if v > 0.85 else ("light grey" if v > 0.6 else "grey" if v > 0.35 else "dark grey")
    hue = h * 360
    hues = [(15, "red"), (40, "orange"), (70, "yellow"), (160, "green"), (200, "cyan"), (255, "blue"),
            (290, "purple"), (340, "pink"), (361, "red")]
    name = next(name for limit, name in hues if hue < limit)
    if v < 0.45:
        return f"dark {name}"
    if s < 0.45:
        return f"light {name}"
    return name


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _plural(word: str) -> str:
    return word + ("es" if word.endswith(("s", "x")) else "s")


def _position(centre: tuple[float, float]) -> str:
    row = ("top", "", "bottom")[min(int(centre[1] * 3), 2)]
    col = ("left", "", "right")[min(int(centre[0] * 3), 2)]
    return f"{row} {col}".strip() or "centre"


def _size_word(size: float) -> str:
    return "small" if size < 0.43 else "medium" if size < 0.57 else "large"  # thirds of the default range


def caption(scene: Scene) -> str:
    """Deterministic caption of the main shapes, e.g. "a large red star on a dark blue background, top
    left" or "three green circles on a noisy grey background". Clutter is not mentioned."""
    bg = scene.background
    words = [colour_word(c) for c in bg.colours]
    if bg.kind == "gradient":
        where = f"{words[0]} to {words[1]} gradient" if words[0] != words[1] else f"shaded {words[0]}"
    else:
        where = f"noisy {words[0]}" if bg.kind == "noise" else words[0]
    where += " background"
    background = f"on {_article(where)} {where}"
    first = scene.shapes[0]
    if len(scene.shapes) == 1:
        size, where = _size_word(first.size), _position(first.centre)
        return f"a {size} {first.colour} {first.shape} {background}, {where}"
    return f"{NUMBERS[len(scene.shapes) - 1]} {first.colour} {_plural(first.shape)} {background}"


def class_names(task: str, config: SceneConfig = SceneConfig()) -> list[str]:
    _check("task", task, TASKS)
    if task == "shape":
        return list(SHAPES)
    if task == "colour":
        return list(COLOURS)
    return list(NUMBERS[: config.max_count])


def label(scene: Scene, task: str) -> int:
    _check("task", task, TASKS)
    if task == "shape":
        return SHAPES.index(scene.shapes[0].shape)
    if task == "colour":
        return list(COLOURS).index(scene.shapes[0].colour)
    return len(scene.shapes) - 1  # class k means k + 1 shapes


# -----------------------------------------------------------------------------
# torch datasets


def _to_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)  # uint8 (3, H, W)


class ShapesDataset(Dataset):
    """n scenes; item i is drawn from np.random.default_rng([seed, i]) alone."""

    def __init__(
        self, n: int, seed: int, task: str = "shape", config: SceneConfig = SceneConfig(),
        transform: Callable[[Image.Image], Any] | None = None,
    ):
        if not isinstance(n, (int, np.integer)) or n <= 0:
            raise InputError(f"n={n!r}: allowed a positive int")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InputError(f"seed={seed!r}: allowed a non-negative int")
        _check("task", task, TASKS)
        if task == "count" and config.max_count < 2:
            raise InputError(
                f"task='count' with max_count={config.max_count}: allowed max_count in 2..{len(NUMBERS)}"
            )
        self.n, self.seed, self.task, self.config, self.transform = int(n), int(seed), task, config, transform
        self.classes = class_names(task, config)

    def __len__(self) -> int:
        return self.n

    def scene(self, i: int) -> Scene:
        if not -self.n <= i < self.n:
            raise IndexError(f"index {i} out of range for {self.n} items")
        return sample_scene(np.random.default_rng([self.seed, i % self.n]), self.config)

    def pil(self, i: int) -> Image.Image:
        return render(self.scene(i), self.config)

    def caption(self, i: int) -> str:
        return caption(self.scene(i))

    def labels(self) -> list[int]:
        """All labels without rendering a pixel (scene sampling is cheap)."""
        return [label(self.scene(i), self.task) for i in range(self.n)]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        scene = self.scene(i)
        image = render(scene, self.config)
        x = self.transform(image) if self.transform is not None else _to_tensor(image).float() / 255
        return x, label(scene, self.task)


class _Raw(Dataset):
    """uint8 image + labels for all tasks: what materialize() stores (lets DataLoader workers render)."""

    def __init__(self, ds: ShapesDataset):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        scene = self.ds.scene(i)
        labels = [label(scene, t) for t in TASKS]
        return _to_tensor(render(scene, self.ds.config)), torch.tensor(labels)


class MaterializedShapes(TensorDataset):
    """All images rendered once: `.images` uint8 (N, 3, H, W), `.targets` int64 (N,). Items come out as
    float (3, H, W) in [0, 1] like ShapesDataset; for GPU training move `.images` over in one go."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, classes: list[str]):
        super().__init__(images, targets)
        self.images, self.targets, self.classes = images, targets, classes

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i].float() / 255, int(self.targets[i])


def cache_key(ds: ShapesDataset) -> str:
    key = {"version": GENERATOR_VERSION, "config": asdict(ds.config), "seed": ds.seed, "n": ds.n}
    blob = json.dumps(key, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def materialize(
    ds: ShapesDataset, cache_dir: str | Path | None = None, num_workers: int = 0, progress: bool = True
) -> MaterializedShapes:
    """Render every item once into memory. With cache_dir, reuse/save a safetensors file keyed by
    (GENERATOR_VERSION, config, seed, n); the file holds the labels of every task. ds.transform is
    not applied: the cache holds raw pixels."""
    from safetensors.numpy import save_file  # local: only this path needs it

    path = Path(cache_dir).expanduser() / f"shapes-{cache_key(ds)}.safetensors" if cache_dir else None
    arrays = read_cache(path, ["images", "labels"], framework="np") if path is not None else None
    if arrays is None:
        from tqdm import tqdm

        # A private generator: a loader without one draws its workers' base seed from the global RNG, so
        # rendering (a cold cache only) would shift the stream a trainer builds the initial weights from.
        loader = torch.utils.data.DataLoader(_Raw(ds), batch_size=256, num_workers=num_workers,
                                             generator=torch.Generator())
        batches = []
        with tqdm(total=ds.n, desc="rendering shapes", unit="img", disable=not progress) as bar:
            for batch in loader:
                batches.append(batch)
                bar.update(len(batch[0]))
        images, labels = (torch.cat([b[k] for b in batches]).numpy() for k in (0, 1))
        arrays = {"images": images, "labels": labels}
        if path is not None:  # concurrent ranks never read a half-written file
            with written_atomically(path) as tmp:
                save_file(arrays, str(tmp))
    labels = torch.from_numpy(arrays["labels"][:, TASKS.index(ds.task)].astype(np.int64))
    return MaterializedShapes(torch.from_numpy(arrays["images"]), labels, ds.classes)


def save_grid(
    images: Dataset | torch.Tensor | Sequence[torch.Tensor], path: str | Path, nrow: int = 8, n: int = 64,
    scale: int = 1,
) -> None:
    """PNG grid of the first n images (a dataset yielding (image, label), or tensors in [0,1] / uint8).
    For a ShapesDataset the captions go to a .txt next to the PNG, in grid order (row-major)."""
    from torchvision.utils import save_image

    if isinstance(images, Dataset):
        batch = torch.stack([images[i][0] for i in range(min(n, len(images)))])
    else:
        batch = torch.stack(list(images[:n]))
    if batch.dtype == torch.uint8:
        batch = batch.float() / 255
    if scale > 1:  # nearest-neighbour blow-up so 32 px images are inspectable
        batch = batch.repeat_interleave(scale, -1).repeat_interleave(scale, -2)
    save_image(batch, str(path), nrow=nrow, padding=2, pad_value=0.5)
    if isinstance(images, ShapesDataset):
        captions = [images.caption(i) for i in range(len(batch))]
        Path(path).with_suffix(".txt").write_text("\n".join(captions) + "\n")
