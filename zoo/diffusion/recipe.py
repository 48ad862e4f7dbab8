"""Training the denoiser: its data (cached VAE latents of the captioned scenes), loss and evaluation.

    zoo train dit-shapes                          # trains vae-shapes and judge-shapes into the run directory first
    zoo train dit-shapes --set data.vae=DIR       # reuses a trained VAE (its latents are cached once)

The frozen helpers. The denoiser learns in the latent space of a trained VAE (zoo.diffusion.vae) and is graded by
an independent judge classifier (zoo.diffusion.judge) trained on real images only. `data.vae` / `data.judge` name
trained model directories; left empty, prepare_data trains the recipes `data.vae_recipe` / `data.judge_recipe` on
the same scenes into RUN/vae and RUN/judge (once: a resumed or repeated run finds them there). Both are frozen:
passed to loss and evaluation as the trainer's frozen modules, never optimised, checkpointed or sharded. The VAE
is part of the trained model (save_extras copies it to DIR/vae, as a diffusers pipeline folder holds its vae/);
the judge stays beside it in the run directory, the examiner not the exam.

Latents are encoded once per (VAE weights, split) and cached as the posterior's mean and standard deviation
(scaled by the VAE's scaling factor, float16): every training step draws a fresh z ~ q(z|x) from them, as LDM
and diffusers' training scripts sample the posterior, at no encoder cost.

Representation alignment (REPA, Yu et al., 2024), when `data.teacher` names a trained alexnet classifier (e.g.
zoo/weights/alexnet-mini, trained on the vision family's scenes: not the judge): its last convolutional map of
every training image, average-pooled to the denoiser's patch grid, is computed once and cached like the latents,
and the training loss adds align_weight times the negative cosine similarity between those features and the
denoiser's projected block states (zoo.diffusion.dit). Validation stays the plain denoising loss.

The loss (zoo.diffusion.objectives): a random share `caption_dropout` of the captions is replaced by the empty
caption (classifier-free guidance's unconditional model, Ho & Salimans, 2022), the clean latents are corrupted
by the configured process, and the weighted mean squared error of the prediction is the loss.
"""

import dataclasses
import hashlib
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from zoo.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_pretrained
from zoo.diffusion.data import CaptionTokenizer, DiffusionDataConfig, cache_key, load_split
from zoo.diffusion.objectives import corrupt, mean_squared_error_per_sample, training_scheduler
from zoo.errors import InputError, MissingFileError, TrainingError
from zoo.registry import TrainingData
from zoo.utils import eval_mode, model_device, read_cache, sha256_file, unwrapped, written_atomically

QUICK_EVAL_LATENTS = 512  # evaluate(quick=True): the denoising loss on this many validation latents
EVAL_BATCH = 128
EVAL_SEED = 0  # the validation loss's noise, timesteps and posterior samples: the same weights give the same loss
ENCODE_BATCH = 256
LATENTS_VERSION = 1  # bump when the cached latents' layout or meaning changes


@dataclass(frozen=True)
class DiTDataConfig(DiffusionDataConfig):
    vae: str = ""  # a trained VAE directory; "" trains vae_recipe into RUN/vae (once)
    vae_recipe: str = "vae-shapes"
    judge: str = ""  # a trained judge directory; "" trains judge_recipe into RUN/judge (once)
    judge_recipe: str = "judge-shapes"
    teacher: str = ""  # a trained alexnet classifier (directory or name) the denoiser aligns to (REPA); "": none


# -----------------------------------------------------------------------------
# the frozen helpers: given, found in the run directory, or trained there


def helper_data_settings(data_config: DiffusionDataConfig, what: str) -> list[str]:
    """--set lines for a helper recipe: the VAE learns the denoiser's own scenes (same size, seed and held-out
    pairs, so the held-out compositions stay unseen); the judge keeps its recipe's scenes (another seed, no pairs
    held out: an examiner that has seen every composition) at the denoiser's image size and backgrounds."""
    fields = ("image_size", "seed", "heldout_share", "heldout_seed") if what == "vae" else ("image_size",)
    return [f"data.{name}={getattr(data_config, name)}" for name in fields] + [
        f"data.backgrounds={','.join(data_config.backgrounds)}"]


def trained_model_dir(given: str, recipe_name: str, run_dir: Path | None, data_config: DiffusionDataConfig,
                      what: str) -> Path:
    """The directory of a trained helper model: `given`, or run_dir/<what> (trained there by `recipe_name`
    unless a finished one is there already)."""
    if given:
        path = Path(given).expanduser()
        if not (path / CONFIG_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
            raise MissingFileError(f"data.{what}={given!r} is not a trained model directory (no {CONFIG_FILE} "
                                   f"and {WEIGHTS_FILE}); train one with `zoo train {recipe_name} --out DIR`")
        return path
    if run_dir is None:
        raise InputError(f"no {what} model: set data.{what}=DIR (a trained `zoo train {recipe_name}` directory)")
    path = Path(run_dir) / what
    if (path / WEIGHTS_FILE).is_file() and (path / CONFIG_FILE).is_file():
        return path
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_world_size() > 1:
        raise InputError(f"a distributed run cannot train its {what} on the side: train it first with "
                         f"`zoo train {recipe_name} --out DIR`, then pass --set data.{what}=DIR")
    # A process of its own, as a user would run it: no trainer state, random stream or process group is shared.
    command = [sys.executable, "-c", "import sys; from zoo.cli import main; sys.exit(main())",
               "train", recipe_name, "--out", str(path), "--resume"]  # an interrupted helper run continues
    for setting in helper_data_settings(data_config, what):
        command += ["--set", setting]
    print(f"no data.{what} given: training it first: zoo {' '.join(command[3:])}", flush=True)
    if subprocess.run(command).returncode != 0:
        raise TrainingError(f"training the {what} failed (zoo {' '.join(command[3:])}); see its output above")
    return path


# -----------------------------------------------------------------------------
# cached latents


def weights_digest(model_dir: Path) -> str:
    return sha256_file(model_dir / WEIGHTS_FILE)[:16]


@torch.no_grad()
def encode_split(vae, images: torch.Tensor, progress: bool = True) -> dict[str, torch.Tensor]:
    """uint8 images (N, 3, H, W) -> {"mean", "std"}: the scaled posterior, float16 (N, C, h, w)."""
    from tqdm import tqdm

    from zoo.diffusion.vae import to_model_range

    scale, device = vae.scale, model_device(vae)
    means, stds = [], []
    with eval_mode(vae):
        for start in tqdm(range(0, len(images), ENCODE_BATCH), desc="encoding latents", unit="batch",
                          disable=not progress):
            posterior = vae.encode(to_model_range(images[start:start + ENCODE_BATCH]).to(device))
            means.append((posterior.mean * scale).half().cpu())
            stds.append((posterior.std * scale).half().cpu())
    return {"mean": torch.cat(means).contiguous(), "std": torch.cat(stds).contiguous()}


def cached_tensors(cache_dir, name: str, key: str, keys: list[str], compute) -> dict[str, torch.Tensor]:
    """compute() -> {key: tensor}, run once per `key` (a string naming everything the tensors depend on) and kept
    as cache_dir/<name>-<hash of key>.safetensors; without a cache_dir, computed every time."""
    from safetensors.torch import save_file

    if cache_dir is None:
        return compute()
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = Path(cache_dir).expanduser() / f"{name}-{digest}.safetensors"
    cached = read_cache(path, keys)
    if cached is not None:
        return cached
    tensors = compute()
    with written_atomically(path) as tmp:
        save_file(tensors, str(tmp))
    return tensors


def cached_latents(vae, vae_dir: Path, data_config: DiffusionDataConfig, split: str, images: torch.Tensor,
                   cache_dir) -> dict[str, torch.Tensor]:
    return cached_tensors(cache_dir, f"dit-latents-{split}",
                          f"{LATENTS_VERSION}/{weights_digest(vae_dir)}/{cache_key(data_config, split)}",
                          ["mean", "std"], lambda: encode_split(vae, images))


# -----------------------------------------------------------------------------
# the alignment teacher's features (REPA)


@torch.no_grad()
def teacher_features(teacher, images: torch.Tensor, grid: int, progress: bool = True) -> torch.Tensor:
    """uint8 images (N, 3, H, W) -> float16 (N, grid * grid, C): an AlexNet classifier's last convolutional
    map (conv5 after its ReLU, before the last pool: the deepest layer that still has a spatial layout), average-
    pooled to the denoiser's patch grid, one feature vector per patch token (row-major, as DiT patchifies)."""
    from tqdm import tqdm

    from zoo.vision.alexnet import AlexNet
    from zoo.vision.data import normalize

    if not isinstance(teacher, AlexNet):
        raise InputError(f"data.teacher must be a trained alexnet classifier (e.g. zoo/weights/alexnet-mini), got "
                         f"a {type(teacher).__name__}")
    layers = list(teacher.features.children())
    if isinstance(layers[-1], torch.nn.MaxPool2d):
        layers = layers[:-1]
    trunk, out = torch.nn.Sequential(*layers), []
    with eval_mode(teacher):
        for start in tqdm(range(0, len(images), ENCODE_BATCH), desc="teacher features", unit="batch",
                          disable=not progress):
            maps = trunk(normalize(images[start:start + ENCODE_BATCH]).to(model_device(teacher)))
            pooled = torch.nn.functional.adaptive_avg_pool2d(maps, grid)  # (B, C, grid, grid)
            out.append(pooled.flatten(2).transpose(1, 2).half().cpu())
    return torch.cat(out).contiguous()


def cached_teacher_features(teacher_dir: Path, data_config: DiffusionDataConfig, split: str,
                            images: torch.Tensor, grid: int, cache_dir) -> torch.Tensor:
    """teacher_features of a split, cached per (teacher weights, grid, split); the teacher loads only to compute."""
    return cached_tensors(
        cache_dir, f"dit-teacher-{split}",
        f"{LATENTS_VERSION}/{weights_digest(teacher_dir)}/{grid}/{cache_key(data_config, split)}", ["features"],
        lambda: {"features": teacher_features(load_pretrained(teacher_dir), images, grid)})["features"]


class CaptionedLatents(Dataset):
    """Item i: {"mean", "std": float32 (C, h, w) scaled posterior; "tokens": int64 (L,); "mask": bool (L,)}, and
    "features": float32 (tokens, C) when the run aligns to a teacher."""

    def __init__(self, latents: dict[str, torch.Tensor], tokens: torch.Tensor, mask: torch.Tensor,
                 features: torch.Tensor | None = None):
        if len(latents["mean"]) != len(tokens) or (features is not None and len(features) != len(tokens)):
            raise InputError(f"{len(latents['mean'])} latents, {len(tokens)} captions and "
                             f"{'no' if features is None else len(features)} teacher features")
        self.mean, self.std, self.tokens, self.mask = latents["mean"], latents["std"], tokens, mask
        self.features = features

    def __len__(self) -> int:
        return len(self.mean)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {"mean": self.mean[i].float(), "std": self.std[i].float(), "tokens": self.tokens[i],
                "mask": self.mask[i]}
        if self.features is not None:
            item["features"] = self.features[i].float()
        return item


def prepare_data(config, data_config: DiTDataConfig, path=None, cache_dir=None, model=None,
                 run_dir=None) -> TrainingData:
    """The VAE and judge (given, or trained into run_dir first), the train/val scenes encoded into cached latents,
    the caption tokenizer; config completed with the latent shape and vocabulary. A trained `model` brings its
    own VAE (DIR/vae) and tokenizer."""
    if path is not None:
        raise InputError(f"the dit family trains on the built-in captioned scenes (zoo.diffusion.data); --data "
                         f"{path} is not supported: drop --data and set data.* (e.g. --set data.n_train=5000)")
    if model is not None and getattr(model, "vae_dir", None) is not None:  # the VAE it was trained in (DIR/vae)
        vae_dir = Path(model.vae_dir)
    else:
        vae_dir = trained_model_dir(data_config.vae, data_config.vae_recipe, run_dir, data_config, "vae")
    judge_dir = None
    if data_config.judge or run_dir is not None:
        judge_dir = trained_model_dir(data_config.judge, data_config.judge_recipe, run_dir, data_config, "judge")
    elif model is not None and getattr(model, "judge_dir", None) is not None:
        judge_dir = Path(model.judge_dir)
    vae = load_pretrained(vae_dir)
    size, factor = data_config.image_size, vae.factor
    if size % factor or vae.config.image_size != size:
        raise InputError(f"data.image_size={size} does not match the VAE in {vae_dir} (trained at "
                         f"{vae.config.image_size} px, factor {factor}); allowed: image_size={vae.config.image_size}")
    tokenizer = getattr(model, "tokenizer", None) or CaptionTokenizer.build()
    teacher_dir = None
    if data_config.teacher and run_dir is not None:  # features for training only
        from zoo.models import trained_dir  # a directory, or a name with trained weights (`alexnet-mini`)

        teacher_dir = trained_model_dir(str(trained_dir(data_config.teacher)), "alexnet-mini", None, data_config,
                                        "teacher")
    grid = size // factor // config.patch_size
    splits, align_dim = {}, 0
    for split in ("train", "val"):
        images = load_split(data_config, split, cache_dir)
        tokens, mask = tokenizer.encode_batch(images.captions)
        latents = cached_latents(vae, vae_dir, data_config, split, images.images, cache_dir)
        features = None
        if teacher_dir is not None and split == "train":
            features = cached_teacher_features(teacher_dir, data_config, split, images.images, grid, cache_dir)
            align_dim = features.shape[-1]
        splits[split] = CaptionedLatents(latents, tokens, mask, features)
        splits[split].captions, splits[split].attributes = images.captions, images.attributes
    config = dataclasses.replace(config, latent_channels=vae.config.latent_channels, latent_size=size // factor,
                                 vocab_size=tokenizer.vocab_size,
                                 **({"align_dim": align_dim} if teacher_dir is not None else {}))
    frozen = {"vae": vae}
    if judge_dir is not None:
        frozen["judge"] = load_pretrained(judge_dir)
    return TrainingData(train=splits["train"], val=splits["val"], config=config,
                        extras={"tokenizer": tokenizer, "vae_dir": vae_dir, "judge_dir": judge_dir}, frozen=frozen)


def example_batch(model, generator: torch.Generator) -> tuple[dict, dict]:
    """Four random latents with real captions, for the cross-model tests; no frozen modules."""
    c = model.config
    tokenizer = CaptionTokenizer.build()
    captions = ["a small red triangle at the top left on a blue background",
                "a large green ring in the centre on a noisy white background", "", "a medium white heart"]
    tokens, mask = tokenizer.encode_batch(captions)
    latents = torch.randn(len(captions), c.latent_channels, c.latent_size, c.latent_size, generator=generator)
    return {"mean": latents, "std": torch.full_like(latents, 0.1), "tokens": tokens % c.vocab_size,
            "mask": mask}, {}


# -----------------------------------------------------------------------------
# loss


def scheduler_of(config):
    """The training scheduler of a DiTConfig, built once per process (its tables are constants)."""
    return training_scheduler(config.objective, config.num_train_timesteps, config.beta_schedule)


def drop_captions(tokens: torch.Tensor, mask: torch.Tensor, share: float, pad_id: int = 0,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace a random `share` of the captions by the empty caption (all padding)."""
    if share <= 0:
        return tokens, mask
    drop = (torch.rand(len(tokens), generator=generator) < share).to(tokens.device)[:, None]
    return tokens.masked_fill(drop, pad_id), mask & ~drop


def denoising_loss(model, batch: dict, generator: torch.Generator | None = None,
                   align: bool = False) -> tuple[torch.Tensor, dict]:
    """The weighted MSE of the prediction on one draw of posterior samples, captions kept or dropped (training
    mode only), timesteps and noise; align=True adds REPA's term, align_weight times the negative mean cosine
    similarity between the projected block states and the teacher's features of the same patches (batch
    "features"), computed on the same noisy input. Random draws come from `generator` (CPU); without one, from
    torch's global generator in training mode and from a fresh one seeded EVAL_SEED in eval mode, so evaluation is
    deterministic (as the VAE decodes its posterior mean in eval mode)."""
    config = unwrapped(model).config
    if generator is None and not model.training:
        generator = torch.Generator().manual_seed(EVAL_SEED)
    device = model_device(model)
    mean, std = batch["mean"].to(device).float(), batch["std"].to(device).float()
    if mean.dim() != 4 or std.shape != mean.shape or len(batch["tokens"]) != len(mean):
        raise InputError(f"DiT expects a batch of latent means and standard deviations of shape (B, C, h, w) and "
                         f"B captions, got mean {tuple(mean.shape)}, std {tuple(std.shape)}, tokens "
                         f"{tuple(batch['tokens'].shape)}")

    def normal(like: torch.Tensor) -> torch.Tensor:
        return torch.randn(like.shape, generator=generator).to(device)

    latents = mean + std * normal(mean)
    tokens, mask = batch["tokens"].to(device), batch["mask"].to(device)
    if model.training:
        tokens, mask = drop_captions(tokens, mask, config.caption_dropout, generator=generator)
    noisy, timesteps, target, weight = corrupt(config, scheduler_of(config), latents, normal(latents), generator)
    if not align:
        prediction = model(noisy, timesteps, tokens, mask)
    else:
        prediction, projected = model(noisy, timesteps, tokens, mask, align=True)
    error = mean_squared_error_per_sample(prediction, target)
    value, metrics = (weight * error).mean(), {"mse": error.mean().detach()}
    if align:
        similarity = torch.nn.functional.cosine_similarity(projected.float(), batch["features"].to(device).float(),
                                                           dim=-1).mean()
        value = value - config.align_weight * similarity
        metrics["align"] = similarity.detach()
    return value, metrics


def loss(model, batch: dict, **frozen) -> tuple[torch.Tensor, dict]:
    """The trainer's loss; the frozen VAE and judge are not needed (the latents and teacher features are cached).
    A run with a teacher (config.align_dim > 0) adds the alignment term to the training loss only: validation
    stays the plain denoising loss, comparable across runs."""
    return denoising_loss(model, batch, align=bool(unwrapped(model).config.align_dim) and "features" in batch)


# -----------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def validation_loss(model, dataset, n: int) -> float:
    """The denoising loss on the first n validation latents, with seeded draws (deterministic)."""
    from torch.utils.data import default_collate

    generator = torch.Generator().manual_seed(EVAL_SEED)
    total = 0.0
    with eval_mode(model):
        for start in range(0, n, EVAL_BATCH):
            batch = default_collate([dataset[i] for i in range(start, min(start + EVAL_BATCH, n))])
            value, _ = denoising_loss(model, batch, generator)
            total += value.item() * len(batch["mean"])
    return total / n


def evaluate(model, data, data_config=None, out_dir=None, quick: bool = False) -> dict[str, float]:
    """quick: the validation denoising loss (seeded). Full: also draws images for a fixed prompt set and has the
    judge grade them (zoo.diffusion.evaluation)."""
    dataset = data.val if isinstance(data, TrainingData) else data
    n = min(len(dataset), QUICK_EVAL_LATENTS) if quick else len(dataset)
    if n == 0:
        raise InputError("evaluate needs at least one validation latent; the dataset is empty")
    metrics = {"val_loss": validation_loss(model, dataset, n)}
    if not quick and isinstance(data, TrainingData) and "judge" in data.frozen:
        from zoo.diffusion.evaluation import evaluate_generation

        metrics.update(evaluate_generation(model, data.frozen["vae"], data.frozen["judge"], data_config,
                                           out_dir=out_dir))
    return metrics


# -----------------------------------------------------------------------------
# what a trained model carries: its tokenizer and its VAE (and where its judge is)


def save_extras(model, directory) -> None:
    directory = Path(directory)
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is not None:
        tokenizer.save(directory / "tokenizer.json")
    # the VAE it was trained in and the judge it was examined by go beside it, so the directory evaluates alone
    for helper in ("vae", "judge"):
        source = getattr(model, f"{helper}_dir", None)
        if source is None or Path(source).resolve() == (directory / helper).resolve():
            continue
        (directory / helper).mkdir(parents=True, exist_ok=True)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            with written_atomically(directory / helper / name) as tmp:
                shutil.copyfile(Path(source) / name, tmp)


def load_extras(model, directory) -> None:
    directory = Path(directory)
    if (directory / "tokenizer.json").is_file():
        model.tokenizer = CaptionTokenizer.load(directory / "tokenizer.json")
    model.vae_dir = directory / "vae" if (directory / "vae").is_dir() else None
    model.judge_dir = directory / "judge" if (directory / "judge").is_dir() else None
