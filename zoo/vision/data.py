"""Vision data and the family functions shared by AlexNet and ViT: prepare_data, loss, evaluate, classify.

    data = prepare_data(config, VisionDataConfig(task="shape"), path=None, cache_dir="~/.cache/zoo")
    data.train[0]            # {"image": float (3, H, W) normalised, "label": long}
    loss(model, batch)       # cross-entropy, mean over the batch
    evaluate(model, data, data_config, out_dir="runs/x")   # top1, top5, val_loss, acc/<class>; confusion matrix
    classify(model, "cat.jpg")                              # [("cat", 0.93), ("dog", 0.05), ...]

Built-in data: zoo.data.shapes scenes, rendered once into uint8 tensors (cached as safetensors) so an epoch
costs no drawing. Train and validation draw from disjoint random streams: ShapesDataset seeds 2*seed and
2*seed+1, so no choice of `seed` makes a validation scene reappear in training.

A folder (`--data PATH`) is a torchvision ImageFolder tree, root/<class>/<image>. If root holds both
`train/` and `val/`, those are the split; otherwise a seeded permutation holds out `val_fraction` (10%).
Every image is decoded once, converted to RGB (EXIF rotation applied; transparency composited on white),
and resized like ImageNet evaluation: the shorter side to image_size, then a centre square crop, so the
aspect ratio is kept and nothing is squashed. Files without an image extension (README.txt, .DS_Store)
are skipped and counted in a warning; a file with an image extension that does not decode is an error
naming it (silently training on fewer images hides data bugs).
"""

import dataclasses
import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import nn
from torch.utils.data import Dataset, default_collate

from zoo.data.shapes import TASKS, SceneConfig, ShapesDataset, materialize
from zoo.errors import InputError, InputTypeError, MissingFileError
from zoo.plots import save_confusion_matrix
from zoo.registry import TrainingData
from zoo.utils import eval_mode, model_device, read_cache, written_atomically

# Every model in the family sees inputs normalised with the ImageNet statistics, so torchvision's
# ImageNet weights work unchanged and our own runs use the same convention.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
QUICK_EVAL_IMAGES = 512  # evaluate(quick=True), the trainer's periodic evaluation
EVAL_BATCH = 256
FOLDER_CACHE_VERSION = 2  # bump when decoding/resizing of folder images changes (part of the cache key)


@dataclass
class VisionDataConfig:
    task: str = "shape"  # built-in shapes: shape | colour | count (ignored for --data folders)
    image_size: int | None = None  # None: the model config's image_size
    n_train: int = 20_000  # built-in shapes
    n_val: int = 2_000
    max_count: int = 5  # count task: 1..max_count copies of the shape per image
    seed: int = 0  # shapes streams and the folder split
    val_fraction: float = 0.1  # folders without train/ + val/
    # Label-preserving augmentation of the training images. Shapes: a random symmetry of the square (flips and
    # 90-degree turns), exact (no resampling) and free: the generator draws every rotation, position and gradient
    # direction uniformly, so a turned or mirrored scene is another sample of the same distribution and each
    # class maps to itself (a mirrored arrow is an arrow, the heart is symmetric). Folders (photos): random
    # resized crop (scale 0.8-1) + horizontal flip, since upside-down photos are not.
    augment: bool = True

    def __post_init__(self):
        if self.task not in TASKS:
            raise InputError(f"VisionDataConfig.task={self.task!r}; allowed: {', '.join(TASKS)}")
        for name in ("n_train", "n_val", "max_count"):
            if getattr(self, name) < 1:
                raise InputError(f"VisionDataConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.image_size is not None and self.image_size < 16:
            raise InputError(f"VisionDataConfig.image_size must be >= 16 (or None), got {self.image_size}")
        if not 0.0 < self.val_fraction < 1.0:
            raise InputError(f"VisionDataConfig.val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.seed < 0:
            raise InputError(f"VisionDataConfig.seed must be >= 0, got {self.seed}")


class ImageTensors(Dataset):
    """uint8 images (N, 3, H, W) + int64 labels (N,) in memory -> {"image": normalised float, "label": long}.

    transform: applied to the uint8 image before normalisation (training augmentation)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: list[str], transform=None):
        self.images, self.labels, self.classes, self.transform = images, labels, list(classes), transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        image = self.images[i]  # (3, H, W) uint8
        if self.transform is not None:
            image = self.transform(image)
        return {"image": normalize(image), "label": self.labels[i]}


class RandomSquareSymmetry(nn.Module):
    """One of the 8 symmetries of the square (4 turns x optional mirror), uniformly: exact, no resampling."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:  # (..., H, W) with H == W
        image = image.rot90(int(torch.randint(4, ())), dims=(-2, -1))
        return image.flip(-1) if torch.rand(()) < 0.5 else image


def train_transform(data_config: VisionDataConfig, builtin: bool, image_size: int):
    """The augmentation of the training split (see VisionDataConfig.augment), or None."""
    if not data_config.augment:
        return None
    if builtin:
        return RandomSquareSymmetry()
    from torchvision.transforms import v2  # imported where used: torchvision costs a text run 1 s at start-up

    return v2.Compose([v2.RandomResizedCrop(image_size, scale=(0.8, 1.0), antialias=True), v2.RandomHorizontalFlip()])


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float, standardised with MEAN/STD."""
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    return (images.float() / 255 - mean) / std


# ----------------------------------------------------------------------------------------------------
# Built-in data: the shapes generator


def shapes_data(data_config: VisionDataConfig, image_size: int, cache_dir=None):
    """(train_images, train_labels, val_images, val_labels, classes) of the shapes task, rendered once."""
    count = data_config.max_count if data_config.task == "count" else 1
    scene = SceneConfig(image_size=image_size, max_count=count)
    splits = []
    for n, stream in ((data_config.n_train, 2 * data_config.seed), (data_config.n_val, 2 * data_config.seed + 1)):
        shapes = ShapesDataset(n, seed=stream, task=data_config.task, config=scene)
        workers = min(4, os.cpu_count() or 1) if n >= 5000 else 0  # worker start-up only pays off for many
        splits.append(materialize(shapes, cache_dir=cache_dir, num_workers=workers))
    train, val = splits
    return train.images, train.targets, val.images, val.targets, list(train.classes)


# ----------------------------------------------------------------------------------------------------
# Folders of images (torchvision ImageFolder layout)


def load_image(path: str | Path) -> Image.Image:
    """Decode any image file to RGB; a file that is not a (complete) image is a ValueError naming it, and so is
    one of more than PIL's Image.MAX_IMAGE_PIXELS pixels (a decompression bomb: a few kilobytes of PNG can
    declare 100000 x 100000 pixels). PIL only warns up to twice that limit; here the warning is an error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()  # decode now: a truncated file fails here, not somewhere in training
                image = ImageOps.exif_transpose(image)  # phone photos store their rotation in EXIF
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise InputError(f"refusing image {path}: {error} Allowed: at most PIL.Image.MAX_IMAGE_PIXELS "
                         f"({Image.MAX_IMAGE_PIXELS} pixels)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        from torchvision.datasets.folder import IMG_EXTENSIONS

        raise InputError(f"cannot read image {path}: {error}. Remove or replace the file "
                         f"(supported: {', '.join(IMG_EXTENSIONS)})") from None
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """Grayscale, palette, CMYK, ... -> RGB; transparent pixels become white, as a viewer shows them."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit / float grayscale: rescale, don't clip
        array = np.nan_to_num(np.asarray(image, dtype=np.float32))  # a float TIFF may hold NaN
        if image.mode == "F" and array.max() <= 1.0:
            array = array * 255  # float images in [0, 1]
        elif array.max() > 255:
            array = array / 257  # 16-bit: 65535 -> 255
        image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), mode="L")
    return image.convert("RGB")


def image_to_tensor(image: Image.Image, image_size: int) -> torch.Tensor:
    """RGB PIL image -> uint8 (3, S, S): shorter side resized to S (antialiased bilinear), then the centre crop,
    with torchvision's sizes (resize's int(S * long / short), center_crop's rounded offsets).

    One PIL resize of just the region the crop keeps (Image.resize's box; the filter still reads the pixels
    around it): resizing the whole image first would turn a 1 x 2,000,000 strip into 32 x 64,000,000 pixels."""
    from torchvision.transforms import v2

    width, height = image.size
    long_side = int(image_size * max(width, height) / min(width, height))
    resized_w, resized_h = (image_size, long_side) if width <= height else (long_side, image_size)
    left, top = round((resized_w - image_size) / 2), round((resized_h - image_size) / 2)
    x_scale, y_scale = width / resized_w, height / resized_h  # source pixels per resized pixel
    box = (left * x_scale, top * y_scale, (left + image_size) * x_scale, (top + image_size) * y_scale)
    return v2.functional.pil_to_tensor(image.resize((image_size, image_size), Image.Resampling.BILINEAR, box=box))


def scan_folder(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names and (file, label) samples of an ImageFolder tree, in ImageFolder's order (hidden folders
    such as .ipynb_checkpoints are not classes). Non-image files are skipped with one warning."""
    if not root.exists():
        raise MissingFileError(f"image folder {root} does not exist (expected root/<class>/<image>)")
    if not root.is_dir():
        raise InputError(f"--data {root} is a file; expected a folder laid out as root/<class>/<image> "
                         f"(torchvision ImageFolder)")
    entries = [e for e in os.scandir(root) if not e.name.startswith(".")]
    if not entries:
        raise InputError(f"image folder {root} is empty; expected root/<class>/<image> (torchvision ImageFolder)")
    classes = sorted(e.name for e in entries if e.is_dir())
    if not classes:
        raise InputError(f"image folder {root} has no class subfolders (found only files such as "
                         f"{sorted(e.name for e in entries)[0]!r}); expected root/<class>/<image>, one folder "
                         f"per class (torchvision ImageFolder)")
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    skipped = []

    def is_image(name: str) -> bool:
        ok = name.lower().endswith(IMG_EXTENSIONS) and not Path(name).name.startswith(".")
        if not ok:
            skipped.append(name)
        return ok

    samples = make_dataset(str(root), {c: i for i, c in enumerate(classes)}, is_valid_file=is_image,
                           allow_empty=True)
    if skipped:
        warnings.warn(f"skipped {len(skipped)} file(s) without an image extension in {root}, e.g. {skipped[0]} "
                      f"(image extensions: {', '.join(IMG_EXTENSIONS)})", stacklevel=2)
    counts = np.bincount([label for _, label in samples], minlength=len(classes))
    empty = [c for c, n in zip(classes, counts) if n == 0]
    if empty:
        raise InputError(f"class folder(s) {', '.join(empty)} in {root} hold no images "
                         f"(image extensions: {', '.join(IMG_EXTENSIONS)})")
    return classes, samples


def decode_folder(root: Path, samples: list[tuple[str, int]], image_size: int, cache_dir=None):
    """Decode + resize every sample once -> uint8 (N, 3, S, S), labels (N,); cached by file stats and size."""
    from safetensors.torch import save_file

    path = None
    if cache_dir is not None:
        stats = [(os.path.relpath(f, root), os.stat(f).st_size, os.stat(f).st_mtime_ns, y) for f, y in samples]
        key = json.dumps([FOLDER_CACHE_VERSION, str(root.resolve()), image_size, stats])
        path = Path(cache_dir).expanduser() / f"folder-{hashlib.sha256(key.encode()).hexdigest()[:16]}.safetensors"
        tensors = read_cache(path, ["images", "labels"])
        if tensors is not None:
            return tensors["images"], tensors["labels"]
    from tqdm import tqdm

    images = torch.empty(len(samples), 3, image_size, image_size, dtype=torch.uint8)
    for i, (file, _) in enumerate(tqdm(samples, desc=f"decoding {root.name}", unit="img",
                                       disable=len(samples) < 1000)):
        images[i] = image_to_tensor(load_image(file), image_size)
    labels = torch.tensor([y for _, y in samples], dtype=torch.long)
    if path is not None:  # concurrent ranks never read a half-written file
        with written_atomically(path) as tmp:
            save_file({"images": images, "labels": labels}, str(tmp))
    return images, labels


def folder_data(root: Path, data_config: VisionDataConfig, image_size: int, cache_dir=None):
    """(train_images, train_labels, val_images, val_labels, classes) of an ImageFolder tree: its train/ + val/
    subfolders, or a seeded permutation holding out val_fraction (the split is the same on every machine)."""
    root = Path(root).expanduser()
    if (root / "train").is_dir() and (root / "val").is_dir():
        (classes, train_samples), (val_classes, val_samples) = scan_folder(root / "train"), scan_folder(root / "val")
        if val_classes != classes:
            raise InputError(f"{root}/train and {root}/val hold different classes: only in train: "
                             f"{sorted(set(classes) - set(val_classes))}, only in val: "
                             f"{sorted(set(val_classes) - set(classes))}")
        train_images, train_labels = decode_folder(root / "train", train_samples, image_size, cache_dir)
        val_images, val_labels = decode_folder(root / "val", val_samples, image_size, cache_dir)
    else:
        classes, samples = scan_folder(root)
        if len(samples) < 2:
            raise InputError(f"image folder {root} holds {len(samples)} image(s); a train/val split needs >= 2")
        images, labels = decode_folder(root, samples, image_size, cache_dir)
        order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(data_config.seed))
        n_val = min(max(1, round(len(samples) * data_config.val_fraction)), len(samples) - 1)
        val_idx, train_idx = order[:n_val].sort().values, order[n_val:].sort().values
        train_images, train_labels, val_images, val_labels = (images[train_idx], labels[train_idx],
                                                              images[val_idx], labels[val_idx])
    return train_images, train_labels, val_images, val_labels, classes


# ----------------------------------------------------------------------------------------------------
# The family functions (zoo/registry.py Family)


def prepare_data(config, data_config: VisionDataConfig, path=None, cache_dir=None, model=None,
                 run_dir=None) -> TrainingData:
    """Built-in shapes (path None) or an ImageFolder tree -> TrainingData with num_classes, class_names and
    image_size filled into the model config. With a trained `model`, its class list indexes the labels
    (a folder may hold a subset of its classes; a class it does not know is an error)."""
    image_size = data_config.image_size or config.image_size
    if path is None:
        train_images, train_labels, val_images, val_labels, classes = shapes_data(data_config, image_size, cache_dir)
    else:
        train_images, train_labels, val_images, val_labels, classes = folder_data(Path(path), data_config,
                                                                                  image_size, cache_dir)
    if model is not None and model.config.class_names:
        known = list(model.config.class_names)
        unknown = [c for c in classes if c not in known]
        if unknown:
            raise InputError(f"the data holds classes the model was not trained on: {', '.join(unknown)}; "
                             f"the model knows: {', '.join(known)}")
        remap = torch.tensor([known.index(c) for c in classes], dtype=torch.long)
        train_labels, val_labels, classes = remap[train_labels], remap[val_labels], known
    elif model is not None and model.config.num_classes != len(classes):
        raise InputError(f"the model has {model.config.num_classes} classes (and no class names) but the data "
                         f"has {len(classes)}: {', '.join(classes)}")
    config = dataclasses.replace(config, num_classes=len(classes), class_names=tuple(classes), image_size=image_size)
    augment = train_transform(data_config, builtin=path is None, image_size=image_size)
    return TrainingData(train=ImageTensors(train_images, train_labels, classes, augment),
                        val=ImageTensors(val_images, val_labels, classes), config=config)


def loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy of the logits against the labels, the mean over the batch."""
    device = model_device(model)
    logits = model(batch["image"].to(device, non_blocking=True))  # (B, classes)
    return F.cross_entropy(logits.float(), batch["label"].to(device, non_blocking=True))


def example_batch(model: nn.Module, generator: torch.Generator) -> tuple[dict, dict]:
    """Four random images at the model's size with random labels, for the cross-model tests."""
    c = model.config
    return {"image": torch.rand(4, c.in_channels, c.image_size, c.image_size, generator=generator),
            "label": torch.randint(0, c.num_classes, (4,), generator=generator)}, {}


@torch.no_grad()
def evaluate(model: nn.Module, data, data_config: VisionDataConfig | None = None, out_dir=None,
             quick: bool = False) -> dict[str, float]:
    """top1, top5 (top-k with k = min(5, classes)), val_loss and per-class accuracy `acc/<class>` (classes
    present in the evaluated images) on `data.val` (or a dataset); with out_dir, confusion_matrix.png.
    quick: the first QUICK_EVAL_IMAGES images only (the trainer's periodic evaluation)."""
    dataset = data.val if isinstance(data, TrainingData) else data
    n = min(len(dataset), QUICK_EVAL_IMAGES) if quick else len(dataset)
    if n == 0:
        raise InputError("evaluate needs at least one validation image; the dataset is empty")
    num_classes = model.config.num_classes
    names = list(model.config.class_names) or list(getattr(dataset, "classes", [])) or [
        str(i) for i in range(num_classes)]
    device = model_device(model)
    k = min(5, num_classes)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    total_loss = topk_correct = 0.0
    with eval_mode(model):
        for start in range(0, n, EVAL_BATCH):
            batch = default_collate([dataset[i] for i in range(start, min(start + EVAL_BATCH, n))])
            logits = model(batch["image"].to(device)).float()  # (B, classes)
            labels = batch["label"].to(device)
            total_loss += F.cross_entropy(logits, labels, reduction="sum").item()
            topk_correct += (logits.topk(k, dim=-1).indices == labels[:, None]).any(dim=-1).sum().item()
            confusion += torch.bincount((labels * num_classes + logits.argmax(-1)).cpu(),
                                        minlength=num_classes ** 2).view(num_classes, num_classes)
    metrics = {"top1": confusion.diag().sum().item() / n, "top5": topk_correct / n, "val_loss": total_loss / n}
    per_class = confusion.sum(dim=1)
    for i, name in enumerate(names):
        if per_class[i] > 0:
            metrics[f"acc/{name}"] = confusion[i, i].item() / per_class[i].item()
    if out_dir is not None:
        save_confusion_matrix(confusion, names, Path(out_dir) / "confusion_matrix.png")
    return metrics


def check_classifier(model: nn.Module):
    """Any image classifier whose config names its input size and classes (AlexNet, ViT), judged by its config
    rather than its family, as `zoo classify` serves them all."""
    config = getattr(model, "config", None)
    if not (hasattr(config, "image_size") and hasattr(config, "class_names")):
        name = getattr(model, "zoo_name", None) or type(model).__name__
        raise InputError(f"classify() takes an image classifier (a config with image_size and class_names, e.g. "
                         f"alexnet-mini or vit-nano); {name} is not one")


@torch.no_grad()
def classify(model: nn.Module, image_path: str | Path, top_k: int = 5) -> list[tuple[str, float]]:
    """The top_k (class name, probability) pairs for one image file, most likely first. The image is prepared
    as in training: RGB, shorter side to the model's image_size, centre crop, ImageNet normalisation."""
    check_classifier(model)
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise InputError(f"top_k must be an integer >= 1, got {top_k!r}")
    if not isinstance(image_path, (str, os.PathLike)):
        raise InputTypeError(f"classify() takes the path of an image file, got {type(image_path).__name__}")
    path = Path(image_path)
    if not path.is_file():
        raise MissingFileError(f"no image file {path}" + (" (it is a directory)" if path.is_dir() else ""))
    x = normalize(image_to_tensor(load_image(path), model.config.image_size))[None]  # (1, 3, S, S)
    with eval_mode(model):
        probs = model(x.to(model_device(model))).float().softmax(dim=-1)[0]  # (classes,)
    names = list(model.config.class_names) or [str(i) for i in range(len(probs))]
    values, indices = probs.topk(min(top_k, len(probs)))
    return [(names[i], p) for p, i in zip(values.tolist(), indices.tolist())]
