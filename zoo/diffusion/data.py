"""Captioned-shapes data for the text-to-image diffusion family: scenes, captions, splits, tensors, tokenizer.

    config = DiffusionDataConfig(n_train=20_000)
    data = load_splits(config, cache_dir="~/.cache/zoo")     # {"train": CaptionedImages, "val": ..., ...}
    data["train"].images          # uint8 (N, 3, H, W), rendered once and cached as safetensors
    data["train"].captions[0]     # "a small red triangle at the top left on a blue background"
    data["train"].labels["shape"] # int64 (N,): the attribute labels, for evaluation
    tokenizer = CaptionTokenizer.build()
    tokenizer.encode("a large green ring in the centre on a noisy white background")  # [ids], no padding
    tokenizer.unknown_words("a huge red triangle")   # ["huge"]: those encode to <unk>

Scenes. Each image is one `zoo.data.shapes` scene drawn with SceneConfig(max_count=1, distractor_prob=0): exactly
one shape and no clutter, so the caption describes everything the generator drew on top of the background and a
generated image can be judged attribute by attribute. Sizes, rotation, colour jitter, background kinds and pixel
noise are the generator's defaults (the vision family's data differs only by its clutter), so a shape or colour
classifier trained there can judge generated images here.

Captions: "a {size} {colour} {shape} {position} on a(n) {background} background", e.g.
    "a small red triangle at the top left on a blue background"
    "a large orange ring in the centre on a noisy dark grey background"
    "a medium white heart on the right on a light purple to dark green gradient background"
- size: SIZE_WORDS by thirds of the generator's size range (diameter as a fraction of the image side);
- colour: the COLOURS name of the paint (the label; the pixels are that colour jittered by +-20 per channel);
- position: the 3x3 grid cell of the shape's centre (POSITIONS), phrased as in POSITION_PHRASES;
- background: solid -> its colour's name (shapes.colour_word: one of BACKGROUND_COLOURS, e.g. "dark blue");
  noise (a solid colour with faint blotches) -> "noisy <colour>"; gradient -> "<start> to <end> gradient" (the
  direction is not captioned: it is uniform over all angles), or "<colour> gradient" when both ends share a name.
Rotation, the exact jittered RGB and the pixel noise are not captioned. `Attributes` holds the caption's content,
`parse_caption` reads a caption (or a user's prompt in the same grammar) back into it.

Splits (SPLITS) and held-out compositions. `heldout_pairs` fixes a set of (shape, colour) pairs, a `heldout_share`
of the 72 (9 for the default 0.125), chosen by a hash seeded with `heldout_seed` (not the data seed: models trained
on different data seeds face the same held-out test) and spread out: at most ceil(k / 9) per shape and ceil(k / 8)
per colour, so every shape and every colour keeps at least 4 of its pairs in training (with 9 pairs, each shape has
exactly one held-out colour and no colour more than two). train, val and test draw only seen pairs; test_heldout
only held-out pairs, so it measures compositional generalisation: a shape and a colour each seen in training, never
together. test differs from val only in its random stream (fresh scenes of seen pairs, never used for model
selection).

Determinism: item `index` of `split` is drawn by rejection sampling from its own generator,
np.random.default_rng([seed, STREAM, split number, index]) (sample_scene until the pair belongs to the split),
so it is a pure function of (config, split, index): independent of the split's size, the worker count, and the
image size (the 32 px and 64 px data show the same scenes). Scenes of different splits come from different
streams; captions of train and test may coincide (the caption set is finite), their images do not.

Tensors: a split renders once into uint8 (N, 3, H, W) plus int64 label columns (LABELS) and float32 geometry
(size, centre, rotation), cached as cache_dir/diffusion-<hash>.safetensors; the hash covers what the split's
pixels depend on (split, size, seed, held-out pairs, backgrounds, image size) plus shapes.GENERATOR_VERSION and
DATA_VERSION, so a second call loads the file and changing one split's count re-renders only that split.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
import reprlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from zoo.data.shapes import (
    BACKGROUNDS,
    COLOURS,
    GENERATOR_VERSION,
    SHAPES,
    Scene,
    SceneConfig,
    colour_word,
    render,
    sample_scene,
)
from zoo.errors import CorruptFileError, InputError, MissingFileError
from zoo.text.tokenizer import check_batch, check_text, read_hf_tokenizer
from zoo.utils import read_cache, written_atomically

# Bump whenever the scenes, captions or labels a given (config, split, index) produces change (the generator's own
# changes bump shapes.GENERATOR_VERSION); both are part of the cache key.
DATA_VERSION = 1
SPLITS: tuple[str, ...] = ("train", "val", "test", "test_heldout")
STREAM = 0xD1F  # tags the diffusion streams so they never coincide with other users of the generator
MAX_DRAWS = 10_000  # rejection sampling of a split's pair: test_heldout needs ~8 draws on average
PROGRESS_MIN = 1000  # splits at least this big show a progress bar (progress=None)

COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
SIZE_WORDS: tuple[str, ...] = ("small", "medium", "large")
POSITIONS: tuple[str, ...] = (
    "top left", "top", "top right", "left", "centre", "right", "bottom left", "bottom", "bottom right",
)  # cell = 3 * row + column of the 3x3 grid, row 0 at the top
POSITION_PHRASES: dict[str, str] = {
    p: "in the centre" if p == "centre" else f"on the {p}" if p in ("left", "right") else f"at the {p}"
    for p in POSITIONS
}
# Every name shapes.colour_word can return (tests/test_diffusion_data.py checks it over an RGB grid); the index
# is the background colour label.
_HUES = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink")
BACKGROUND_COLOURS: tuple[str, ...] = (
    "black", "white", "light grey", "grey", "dark grey",
    *(f"{tone}{hue}" for hue in _HUES for tone in ("", "dark ", "light ")),
)
# The int64 label columns of a split, in this order; background_colour2 is the gradient's end colour (-1 else).
LABELS: tuple[str, ...] = ("shape", "colour", "size", "cell", "background", "background_colour", "background_colour2")
ALIASES = {"center": "centre", "gray": "grey"}  # American spellings in users' prompts
PAD, UNK = "<pad>", "<unk>"
_SHORT = reprlib.Repr()  # quotes a caption in an error message, shortened: a caption may be megabytes long
_SHORT.maxstring = 200


def _check(what: str, value: object, allowed: Sequence[object]) -> None:
    if value not in allowed:
        raise InputError(f"unknown {what} {value!r}; allowed: {', '.join(map(str, allowed))}")


def check_split(split: str) -> str:
    _check("split", split, SPLITS)
    return split


# -----------------------------------------------------------------------------
# config


@dataclass(frozen=True)
class DiffusionDataConfig:
    image_size: int = 32
    n_train: int = 20_000
    n_val: int = 1_000
    n_test: int = 1_000  # seen (shape, colour) pairs, fresh scenes
    n_test_heldout: int = 1_000  # held-out pairs only
    seed: int = 0  # the scenes of every split
    heldout_share: float = 0.125  # of the 72 (shape, colour) pairs, held out of train/val/test
    heldout_seed: int = 0  # which pairs (independent of `seed`)
    backgrounds: tuple[str, ...] = BACKGROUNDS  # background kinds, drawn uniformly

    def __post_init__(self):
        def fail(name: str, allowed: str) -> None:
            raise InputError(f"DiffusionDataConfig.{name}={getattr(self, name)!r}; allowed: {allowed}")

        for name, low in (("image_size", 16), ("n_train", 1), ("n_val", 1), ("n_test", 0), ("n_test_heldout", 0),
                          ("seed", 0), ("heldout_seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                fail(name, f"an integer >= {low}")
        share = self.heldout_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 <= share <= 0.5:
            fail("heldout_share", "a number in [0, 0.5] (the share of the 72 shape-colour pairs held out)")
        if self.n_test_heldout > 0 and n_heldout(share) == 0:
            raise InputError(f"DiffusionDataConfig.heldout_share={share!r} holds out no (shape, colour) pair, but "
                             f"n_test_heldout={self.n_test_heldout}; allowed: heldout_share >= "
                             f"1/{len(all_pairs())} (one pair), or n_test_heldout=0")
        if isinstance(self.backgrounds, str):
            fail("backgrounds", f"a tuple of kinds, e.g. ({self.backgrounds!r},), from {', '.join(BACKGROUNDS)}")
        object.__setattr__(self, "backgrounds", tuple(self.backgrounds))
        if not self.backgrounds or any(kind not in BACKGROUNDS for kind in self.backgrounds):
            fail("backgrounds", f"a non-empty tuple of {', '.join(BACKGROUNDS)}")

    @property
    def scene_config(self) -> SceneConfig:
        """One shape, no clutter; everything else as the generator's defaults."""
        return SceneConfig(image_size=self.image_size, backgrounds=self.backgrounds, distractor_prob=0.0,
                           max_count=1)

    def count(self, split: str) -> int:
        return getattr(self, f"n_{check_split(split)}")


# -----------------------------------------------------------------------------
# held-out (shape, colour) pairs


def all_pairs() -> list[tuple[str, str]]:
    return [(shape, colour) for shape in SHAPES for colour in COLOUR_NAMES]


def n_heldout(share: float) -> int:
    """How many pairs a share holds out: share * 72, rounded half up."""
    return int(share * len(all_pairs()) + 0.5)


def heldout_pairs(share: float = 0.125, seed: int = 0) -> frozenset[tuple[str, str]]:
    """round(share * 72) (shape, colour) pairs: taken in the order of a hash seeded with `seed`, skipping a pair
    whose shape already has ceil(k / 9) or whose colour has ceil(k / 8) held-out pairs. For share <= 0.5 every
    shape keeps at least 4 of its 8 colours and every colour 4 of its 9 shapes in training."""
    if not 0.0 <= share <= 0.5:
        raise InputError(f"heldout share {share!r}; allowed: a number in [0, 0.5]")
    k = n_heldout(share)
    per_shape, per_colour = math.ceil(k / len(SHAPES)), math.ceil(k / len(COLOUR_NAMES))
    order = sorted(all_pairs(), key=lambda p: hashlib.sha256(f"heldout/{seed}/{p[0]}/{p[1]}".encode()).digest())
    chosen: list[tuple[str, str]] = []
    for shape, colour in order:
        if len(chosen) == k:
            break
        if (sum(s == shape for s, _ in chosen) < per_shape
                and sum(c == colour for _, c in chosen) < per_colour):
            chosen.append((shape, colour))
    if len(chosen) != k:  # pragma: no cover - the caps leave room for every k <= 36 (tested)
        raise RuntimeError(f"could only hold out {len(chosen)} of {k} pairs under the per-shape/colour caps")
    return frozenset(chosen)


def split_pairs(config: DiffusionDataConfig, split: str) -> frozenset[tuple[str, str]]:
    """The (shape, colour) pairs `split` draws from: the held-out ones for test_heldout, the others otherwise."""
    held = heldout_pairs(config.heldout_share, config.heldout_seed)
    return held if check_split(split) == "test_heldout" else frozenset(all_pairs()) - held


# -----------------------------------------------------------------------------
# attributes and captions


@dataclass(frozen=True)
class Attributes:
    """What a caption says: names from SHAPES, COLOURS, SIZE_WORDS, POSITIONS, BACKGROUNDS, BACKGROUND_COLOURS.
    background_colours holds 1 name (solid, noise) or 2 (gradient: start, end)."""

    shape: str
    colour: str
    size: str
    position: str
    background: str
    background_colours: tuple[str, ...]

    def __post_init__(self):
        _check("shape", self.shape, SHAPES)
        _check("colour", self.colour, COLOUR_NAMES)
        _check("size", self.size, SIZE_WORDS)
        _check("position", self.position, POSITIONS)
        _check("background", self.background, BACKGROUNDS)
        object.__setattr__(self, "background_colours", tuple(self.background_colours))
        n = 2 if self.background == "gradient" else 1
        if len(self.background_colours) != n:
            raise InputError(f"a {self.background} background has {n} colour name(s), got {self.background_colours}")
        for name in self.background_colours:
            _check("background colour", name, BACKGROUND_COLOURS)

    @property
    def cell(self) -> int:
        return POSITIONS.index(self.position)

    def caption(self) -> str:
        phrase = background_phrase(self.background, self.background_colours)
        return (f"a {self.size} {self.colour} {self.shape} {POSITION_PHRASES[self.position]} "
                f"on {_article(phrase)} {phrase} background")

    def indices(self) -> list[int]:
        """The LABELS columns."""
        colours = [BACKGROUND_COLOURS.index(c) for c in self.background_colours]
        return [SHAPES.index(self.shape), COLOUR_NAMES.index(self.colour), SIZE_WORDS.index(self.size), self.cell,
                BACKGROUNDS.index(self.background), colours[0], colours[1] if len(colours) > 1 else -1]

    @classmethod
    def from_indices(cls, row: Sequence[int]) -> Attributes:
        shape, colour, size, cell, background, bg0, bg1 = (int(v) for v in row)
        colours = (BACKGROUND_COLOURS[bg0],) + ((BACKGROUND_COLOURS[bg1],) if bg1 >= 0 else ())
        return cls(SHAPES[shape], COLOUR_NAMES[colour], SIZE_WORDS[size], POSITIONS[cell], BACKGROUNDS[background],
                   colours)


def _article(phrase: str) -> str:
    return "an" if phrase[0] in "aeiou" else "a"


def background_phrase(kind: str, colours: Sequence[str]) -> str:
    if kind == "gradient":
        return f"{colours[0]} gradient" if colours[0] == colours[1] else f"{colours[0]} to {colours[1]} gradient"
    return f"noisy {colours[0]}" if kind == "noise" else colours[0]


def size_word(size: float, config: SceneConfig = SceneConfig()) -> str:
    """small / medium / large: thirds of the generator's diameter range [min_size, max_size]."""
    t = (size - config.min_size) / (config.max_size - config.min_size)
    return SIZE_WORDS[min(max(int(t * len(SIZE_WORDS)), 0), len(SIZE_WORDS) - 1)]


def grid_cell(centre: Sequence[float]) -> int:
    """3x3 grid cell of a centre (x, y) in [0, 1]^2, y down: 3 * row + column."""
    col, row = (min(max(int(v * 3), 0), 2) for v in centre)
    return 3 * row + col


def scene_attributes(scene: Scene) -> Attributes:
    """The captioned attributes of a one-shape scene."""
    if len(scene.shapes) != 1:
        raise InputError(f"diffusion scenes hold one shape, this one holds {len(scene.shapes)}")
    spec = scene.shapes[0]
    return Attributes(spec.shape, spec.colour, size_word(spec.size), POSITIONS[grid_cell(spec.centre)],
                      scene.background.kind, tuple(colour_word(c) for c in scene.background.colours))


def caption(scene: Scene) -> str:
    return scene_attributes(scene).caption()


def _caption_pattern() -> re.Pattern:
    def alt(words: Iterable[str]) -> str:
        return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))  # longest first

    colour = alt(BACKGROUND_COLOURS)
    position = alt(POSITION_PHRASES.values())
    return re.compile(
        rf"a (?P<size>{alt(SIZE_WORDS)}) (?P<colour>{alt(COLOUR_NAMES)}) (?P<shape>{alt(SHAPES)}) "
        rf"(?P<position>{position}) on an? (?:(?P<noisy>noisy )?(?P<c0>{colour})"
        rf"(?: to (?P<c1>{colour}))?(?P<gradient> gradient)?) background")


_CAPTION = _caption_pattern()
_PHRASE_POSITION = {phrase: p for p, phrase in POSITION_PHRASES.items()}


def parse_caption(text: str) -> Attributes:
    """The attributes a caption in this module's grammar states (extra spaces and case are ignored); a ValueError
    for anything else. Use it to score generated images against a prompt."""
    clean = " ".join(check_text(text, "a caption").lower().split())
    m = _CAPTION.fullmatch(clean)
    if m is None or (m["c1"] and not m["gradient"]) or (m["noisy"] and m["gradient"]):
        raise InputError(f"not a caption of the form 'a <size> <colour> <shape> <position> on a <background> "
                         f"background': {_SHORT.repr(text)}")
    kind = "gradient" if m["gradient"] else "noise" if m["noisy"] else "solid"
    colours = (m["c0"], m["c1"] or m["c0"]) if kind == "gradient" else (m["c0"],)
    phrase = background_phrase(kind, colours)
    if not clean.endswith(f" on {_article(phrase)} {phrase} background"):
        raise InputError(f"wrong article before {phrase!r} in {_SHORT.repr(text)}: 'on {_article(phrase)} {phrase}'")
    return Attributes(m["shape"], m["colour"], m["size"], _PHRASE_POSITION[m["position"]], kind, colours)


def _background_phrases() -> list[str]:
    solid = list(BACKGROUND_COLOURS)
    noisy = [background_phrase("noise", (c,)) for c in BACKGROUND_COLOURS]
    gradient = [background_phrase("gradient", p) for p in itertools.product(BACKGROUND_COLOURS, repeat=2)]
    return solid + noisy + gradient


def caption_words() -> list[str]:
    """Every word a caption can hold, sorted."""
    phrases = [*SIZE_WORDS, *COLOUR_NAMES, *SHAPES, *POSITION_PHRASES.values(), *_background_phrases(),
               "a an on background"]
    return sorted({w for phrase in phrases for w in phrase.split()})


def max_caption_words() -> int:
    """Words in the longest caption the grammar can produce."""
    fixed = len("a on a background".split()) + 3  # + size, colour, shape (one word each)
    return (fixed + max(len(p.split()) for p in POSITION_PHRASES.values())
            + max(len(p.split()) for p in _background_phrases()))


# -----------------------------------------------------------------------------
# scenes of a split


def draw_scene(config: DiffusionDataConfig, split: str, index: int,
               pairs: frozenset[tuple[str, str]] | None = None) -> Scene:
    """Scene `index` of `split`: a pure function of (config, split, index); see the module docstring.
    pairs: split_pairs(config, split), if the caller has it already."""
    if index < 0:
        raise IndexError(f"index {index} is negative")
    pairs = split_pairs(config, split) if pairs is None else pairs
    rng = np.random.default_rng([config.seed, STREAM, SPLITS.index(split), index])
    scene_config = config.scene_config
    for _ in range(MAX_DRAWS):
        scene = sample_scene(rng, scene_config)
        if (scene.shapes[0].shape, scene.shapes[0].colour) in pairs:
            return scene
    raise RuntimeError(f"no {split} scene in {MAX_DRAWS} draws")  # pragma: no cover


class DiffusionScenes(Dataset):
    """A split drawn on the fly: item i is (uint8 image (3, H, W), int64 LABELS (7,), float32 geometry (4,):
    size, centre x, centre y, rotation). What load_split renders, with DataLoader workers if asked."""

    def __init__(self, config: DiffusionDataConfig, split: str):
        self.config, self.split, self.n = config, check_split(split), config.count(split)
        self.pairs = split_pairs(config, split)  # computed once, not per item

    def __len__(self) -> int:
        return self.n

    def scene(self, i: int) -> Scene:
        if not 0 <= i < self.n:
            raise IndexError(f"index {i} out of range for the {self.n} {self.split} items")
        return draw_scene(self.config, self.split, i, self.pairs)

    def attributes(self, i: int) -> Attributes:
        return scene_attributes(self.scene(i))

    def caption(self, i: int) -> str:
        return caption(self.scene(i))

    def pil(self, i: int) -> Image.Image:
        return render(self.scene(i), self.config.scene_config)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scene = self.scene(i)
        image = render(scene, self.config.scene_config)
        spec = scene.shapes[0]
        labels = torch.tensor(scene_attributes(scene).indices(), dtype=torch.int64)
        geometry = torch.tensor([spec.size, *spec.centre, spec.rotation], dtype=torch.float32)
        return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1), labels, geometry


# -----------------------------------------------------------------------------
# rendered splits and their cache


class CaptionedImages(Dataset):
    """A rendered split in memory. `.images` uint8 (N, 3, H, W); `.labels` {LABELS name: int64 (N,)};
    `.geometry` float32 (N, 4) (size, centre x, centre y, rotation); `.captions` list of N strings.

    Item i: {"image": float (3, H, W) in [-1, 1], "caption": str}, plus "tokens" (int64, max_length, padded) and
    "mask" (bool, True at words) when a tokenizer is given."""

    def __init__(self, images: torch.Tensor, labels: dict[str, torch.Tensor], geometry: torch.Tensor,
                 tokenizer: CaptionTokenizer | None = None):
        self.images, self.labels, self.geometry = images, labels, geometry
        rows = torch.stack([labels[name] for name in LABELS], dim=1).tolist() if len(images) else []
        self.captions = [Attributes.from_indices(row).caption() for row in rows]
        self.tokenizer = tokenizer
        self.tokens = self.mask = None
        if tokenizer is not None:
            self.tokens, self.mask = tokenizer.encode_batch(self.captions)

    def __len__(self) -> int:
        return len(self.images)

    def attributes(self, i: int) -> Attributes:
        return Attributes.from_indices([int(self.labels[name][i]) for name in LABELS])

    def __getitem__(self, i: int) -> dict:
        item = {"image": self.images[i].float() / 127.5 - 1.0, "caption": self.captions[i]}
        if self.tokens is not None:
            item["tokens"], item["mask"] = self.tokens[i], self.mask[i]
        return item


def cache_key(config: DiffusionDataConfig, split: str) -> str:
    """What the split's tensors depend on: not the other splits' counts."""
    key = {"data_version": DATA_VERSION, "generator": GENERATOR_VERSION, "split": check_split(split),
           "n": config.count(split), "seed": config.seed, "image_size": config.image_size,
           "backgrounds": list(config.backgrounds), "scene_config": asdict(config.scene_config),
           "pairs": sorted(map(list, split_pairs(config, split)))}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def cache_path(config: DiffusionDataConfig, split: str, cache_dir: str | os.PathLike) -> Path:
    return Path(cache_dir).expanduser() / f"diffusion-{split}-{cache_key(config, split)}.safetensors"


def _render(config: DiffusionDataConfig, split: str, num_workers: int, progress: bool) -> dict[str, torch.Tensor]:
    from tqdm import tqdm

    scenes = DiffusionScenes(config, split)
    size = config.image_size
    images = torch.empty(len(scenes), 3, size, size, dtype=torch.uint8)
    labels = torch.empty(len(scenes), len(LABELS), dtype=torch.int64)
    geometry = torch.empty(len(scenes), 4, dtype=torch.float32)
    # A private generator: a loader without one draws its workers' base seed from the global RNG, so rendering
    # (a cold cache only) would shift the stream the trainer then builds the model's initial weights from.
    loader = DataLoader(scenes, batch_size=256, num_workers=num_workers, generator=torch.Generator())
    done = 0
    with tqdm(total=len(scenes), desc=f"rendering diffusion {split}", unit="img", disable=not progress) as bar:
        for image, label, geo in loader:
            images[done:done + len(image)], labels[done:done + len(image)] = image, label
            geometry[done:done + len(image)] = geo
            done += len(image)
            bar.update(len(image))
    return {"images": images, "labels": labels, "geometry": geometry}


def load_split(config: DiffusionDataConfig, split: str, cache_dir: str | os.PathLike | None = None,
               num_workers: int | None = None, progress: bool | None = None,
               tokenizer: CaptionTokenizer | None = None) -> CaptionedImages:
    """Render `split` once (or load it from cache_dir). num_workers None: a few DataLoader workers for splits of
    5000+ images, none below (the result does not depend on it). progress None: a bar for PROGRESS_MIN+ images."""
    from safetensors.torch import save_file  # local: only this path needs it

    n = config.count(split)
    path = cache_path(config, split, cache_dir) if cache_dir is not None else None
    tensors = read_cache(path, ["images", "labels", "geometry"]) if path is not None else None
    if tensors is None:
        if num_workers is None:
            num_workers = min(4, os.cpu_count() or 1) if n >= 5000 else 0
        tensors = _render(config, split, num_workers, n >= PROGRESS_MIN if progress is None else progress)
        if path is not None:  # concurrent ranks never read a half-written file
            with written_atomically(path) as tmp:
                save_file(tensors, str(tmp), metadata={"config": json.dumps(asdict(config)), "split": split})
    labels = {name: tensors["labels"][:, j].contiguous() for j, name in enumerate(LABELS)}
    return CaptionedImages(tensors["images"], labels, tensors["geometry"], tokenizer)


def load_splits(config: DiffusionDataConfig, cache_dir: str | os.PathLike | None = None,
                splits: Sequence[str] = SPLITS, **kwargs) -> dict[str, CaptionedImages]:
    """{split: load_split(config, split, cache_dir, **kwargs)} for the named splits."""
    return {split: load_split(config, split, cache_dir, **kwargs) for split in splits}


# -----------------------------------------------------------------------------
# caption tokenizer


class CaptionTokenizer:
    """Word-level tokenizer over the closed caption vocabulary (a `tokenizers` WordLevel model): <pad> = 0,
    <unk> = 1, then caption_words() in sorted order. Text is NFKC-normalised, lower-cased, American spellings
    mapped (center, gray), punctuation turned into spaces ("top-left," -> "top left"), then split on whitespace.
    So "<unk>" typed by a user is the unknown word "unk": only ids make special tokens.

    max_length (default: the longest caption the grammar produces) is kept as the tokenizer's truncation length
    in the saved tokenizer.json (standard `tokenizers` format); encode raises rather than truncate."""

    def __init__(self, tokenizer):
        self.hf = tokenizer
        if tokenizer.truncation is None:
            raise InputError("a caption tokenizer stores max_length as its truncation length; this one has none")
        self.max_length = int(tokenizer.truncation["max_length"])
        self.pad_id, self.unk_id = tokenizer.token_to_id(PAD), tokenizer.token_to_id(UNK)
        if self.pad_id is None or self.unk_id is None:
            raise InputError(f"a caption tokenizer needs the tokens {PAD} and {UNK}")

    @classmethod
    def build(cls, max_length: int | None = None, words: Iterable[str] | None = None) -> CaptionTokenizer:
        from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers

        max_length = max_caption_words() if max_length is None else max_length
        if max_length < 1:
            raise InputError(f"max_length={max_length}; allowed: an integer >= 1")
        vocab = {PAD: 0, UNK: 1}
        for word in sorted(set(caption_words() if words is None else words) - {PAD, UNK}):
            vocab[word] = len(vocab)
        tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
        tok.normalizer = normalizers.Sequence(
            [normalizers.NFKC(), normalizers.Lowercase()]
            + [normalizers.Replace(Regex(rf"\b{a}\b"), b) for a, b in ALIASES.items()]
            + [normalizers.Replace(Regex(r"[^\w\s]+"), " ")])
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        tok.enable_truncation(max_length)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    def words(self, text: str) -> list[str]:
        """The normalised words of `text`, as encode sees them."""
        text = check_text(text, "a caption")
        return [w for w, _ in self.hf.pre_tokenizer.pre_tokenize_str(self.hf.normalizer.normalize_str(text))]

    def unknown_words(self, text: str) -> list[str]:
        """The words of `text` outside the vocabulary (each encodes to <unk>), in order, repeats kept."""
        vocab = self.hf.get_vocab()
        return [w for w in self.words(text) if w not in vocab]

    def encode(self, text: str) -> list[int]:
        """Token ids of the words, unpadded; a ValueError beyond max_length words (never a silent truncation)."""
        encoding = self.hf.encode(check_text(text, "a caption"))
        if encoding.overflowing:
            n = len(encoding.ids) + sum(len(o.ids) for o in encoding.overflowing)
            raise InputError(f"the caption has {n} words; this tokenizer takes at most {self.max_length}: "
                             f"{_SHORT.repr(text)}")
        return list(encoding.ids)

    def encode_batch(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids int64 (B, max_length) padded with pad_id, mask bool (B, max_length) True at words)."""
        texts = check_batch(texts)
        ids = torch.full((len(texts), self.max_length), self.pad_id, dtype=torch.int64)
        for i, text in enumerate(texts):
            row = self.encode(text)
            ids[i, :len(row)] = torch.tensor(row, dtype=torch.int64)
        return ids, ids != self.pad_id

    def decode(self, ids: Iterable[int]) -> str:
        """Words joined by spaces; padding dropped, unknown words shown as <unk>."""
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise InputError(f"token id(s) {bad} out of range for a vocabulary of {self.vocab_size}")
        return " ".join(self.hf.id_to_token(i) for i in ids if i != self.pad_id)

    def save(self, path: str | os.PathLike) -> Path:
        """Write tokenizer.json (`tokenizers` format) to `path` (a file, or a directory to hold tokenizer.json)."""
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        with written_atomically(path) as tmp:
            self.hf.save(str(tmp))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> CaptionTokenizer:
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise MissingFileError(f"no caption tokenizer file {path}")
        hf = read_hf_tokenizer(path)
        try:
            return cls(hf)
        except (KeyError, TypeError, ValueError) as error:  # its own checks: max_length, <pad> and <unk> present
            raise CorruptFileError(f"{path} is not a caption tokenizer ({error})") from None
