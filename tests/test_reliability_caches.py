"""Caches zoo derives from data (token files, rendered shapes, captioned scenes, decoded image folders, log-mels,
DiT latents) survive damage: a cache file cut short or missing a tensor is named in a warning, deleted and built
again, with the same contents as the first build; a damaged speech-corpus manifest is an error that names the
file and line. Tiny data: seconds."""

import json
import warnings

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image
from safetensors.torch import save_file

import zoo
from zoo.checkpoint import save_pretrained
from zoo.data.shapes import ShapesDataset, materialize
from zoo.diffusion.data import DiffusionDataConfig, load_split
from zoo.diffusion.recipe import cached_latents
from zoo.errors import CorruptFileError
from zoo.registry import get_family
from zoo.speech.audio import SAMPLE_RATE
from zoo.speech.data import read_manifest
from zoo.speech.recipe import mel_clips
from zoo.text.data import load_memmap, prepare_text_data
from zoo.utils import read_cache, written_atomically
from zoo.vision.data import decode_folder, scan_folder


def cut_short(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def only_cache_file(directory, pattern="*.safetensors"):
    (path,) = sorted(directory.glob(pattern))
    return path


def rebuilt(build, damage):
    """build() twice around damage(); the second build must warn about the damage and rebuild."""
    first = build()
    damage()
    with pytest.warns(UserWarning, match="damaged cache"):
        second = build()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt cache reads cleanly
        third = build()
    return first, second, third


def test_replacing_a_directory_deletes_the_old_copy_a_killed_process_left_aside(tmp_path):
    final = tmp_path / "gpt-nano"  # as scripts/ship.py publishes zoo/weights/NAME (shipped.py)
    final.mkdir()
    (final / "weights").write_text("second")
    left_aside = tmp_path / ".gpt-nano.old-4242-0badc0de"  # killed between its two renames and the rmtree
    left_aside.mkdir()
    (left_aside / "weights").write_text("first")
    (tmp_path / ".vit-nano.old-4242-0badc0de").mkdir()  # another directory's: not ours to delete
    with written_atomically(final, directory=True) as tmp:
        (tmp / "weights").write_text("third")
    assert (final / "weights").read_text() == "third"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".vit-nano.old-4242-0badc0de", "gpt-nano"]


def test_read_cache_returns_none_for_absent_damaged_or_incomplete_files(tmp_path):
    path = tmp_path / "cache.safetensors"
    assert read_cache(path, ["x"]) is None
    save_file({"x": torch.arange(100.0)}, str(path))
    assert torch.equal(read_cache(path, ["x"])["x"], torch.arange(100.0))
    with pytest.warns(UserWarning, match=r"damaged cache: .*lacks y"):
        assert read_cache(path, ["x", "y"]) is None
    assert not path.exists()
    save_file({"x": torch.arange(100.0)}, str(path))
    cut_short(path)
    with pytest.warns(UserWarning, match=r"damaged cache: .*cache.safetensors is not a valid safetensors file"):
        assert read_cache(path, ["x"]) is None
    assert not path.exists()


@pytest.mark.parametrize("damage", ["tokens cut short", "sidecar not JSON", "sidecar length wrong"])
def test_a_damaged_token_cache_is_rebuilt(tmp_path, damage):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog\n" * 40, encoding="utf-8")

    def build():
        data = prepare_text_data(corpus, "char", vocab_size=300, seq_len=8, cache_dir=tmp_path / "cache")
        return data.train.tokens.tolist(), data.val.tokens.tolist()

    def spoil():
        (directory,) = (tmp_path / "cache").iterdir()
        if damage == "tokens cut short":
            cut_short(directory / "train.bin")
        elif damage == "sidecar not JSON":
            (directory / "val.json").write_text("{not json")
        else:
            (directory / "train.json").write_text(json.dumps({"dtype": "uint16", "length": 10**6}))

    first, second, third = rebuilt(build, spoil)
    assert first == second == third


def test_load_memmap_names_what_is_wrong_with_a_token_file(tmp_path):
    tokens = tmp_path / "train.bin"
    np.arange(10, dtype=np.uint16).tofile(tokens)
    (tmp_path / "train.json").write_text(json.dumps({"dtype": "uint16", "length": 10}))
    assert load_memmap(tokens).tolist() == list(range(10))
    (tmp_path / "train.json").write_text(json.dumps({"dtype": "uint16", "length": 12}))
    with pytest.raises(CorruptFileError, match="holds 20 bytes, its sidecar says 12 uint16 tokens"):
        load_memmap(tokens)
    (tmp_path / "train.json").write_text(json.dumps({"dtype": "float64", "length": 10}))
    with pytest.raises(CorruptFileError, match="uint16"):
        load_memmap(tokens)


def test_a_damaged_shapes_cache_is_rebuilt(tmp_path):
    def build():
        return materialize(ShapesDataset(6, seed=0), tmp_path, progress=False).images

    first, second, third = rebuilt(build, lambda: cut_short(only_cache_file(tmp_path)))
    assert torch.equal(first, second) and torch.equal(second, third)


def test_a_damaged_captioned_scenes_cache_is_rebuilt(tmp_path):
    config = DiffusionDataConfig(n_train=4, n_val=4, n_test=4, n_test_heldout=4)

    def build():
        return load_split(config, "val", cache_dir=tmp_path, num_workers=0, progress=False).images

    first, second, third = rebuilt(build, lambda: cut_short(only_cache_file(tmp_path)))
    assert torch.equal(first, second) and torch.equal(second, third)


def test_a_damaged_image_folder_cache_is_rebuilt(tmp_path):
    root = tmp_path / "images"
    for label in ("circle", "square"):
        (root / label).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((20, 20, 3), 60 * i + (label == "circle") * 100, np.uint8)).save(
                root / label / f"{i}.png")
    _, samples = scan_folder(root)

    def build():
        return decode_folder(root, samples, 16, cache_dir=tmp_path / "cache")

    first, second, third = rebuilt(build, lambda: cut_short(only_cache_file(tmp_path / "cache")))
    for a, b in ((first, second), (second, third)):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def speech_corpus(root):
    (root / "train").mkdir(parents=True)
    rows = []
    for i, seconds in enumerate((0.5, 0.8)):
        soundfile.write(root / "train" / f"{i}.wav", 0.1 * np.sin(np.arange(int(seconds * SAMPLE_RATE)) / 9),
                        SAMPLE_RATE)
        rows.append({"audio": f"train/{i}.wav", "text": "hello"})
    (root / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return root


def test_a_damaged_log_mel_cache_is_rebuilt(tmp_path):
    root = speech_corpus(tmp_path / "corpus")

    def build():
        return mel_clips(root, "train").mel

    first, second, third = rebuilt(build, lambda: cut_short(only_cache_file(root)))
    assert first.shape[0] > 0 and torch.equal(first, second) and torch.equal(second, third)


def test_a_damaged_corpus_manifest_names_the_file_and_line(tmp_path):
    root = speech_corpus(tmp_path / "corpus")
    assert [row["audio"] for row in read_manifest(root, "train")] == ["train/0.wav", "train/1.wav"]
    with open(root / "train.jsonl", "a", encoding="utf-8") as f:
        f.write('{"audio": "train/2.wa')
    with pytest.raises(CorruptFileError, match=r"train.jsonl line 3: .*delete .* to build the corpus again"):
        read_manifest(root, "train")
    (root / "train.jsonl").write_bytes(b'{"text": "no audio"}\n')
    with pytest.raises(CorruptFileError, match="line 1: not a JSON object with an audio path"):
        read_manifest(root, "train")


def test_a_damaged_latent_cache_is_rebuilt(tmp_path):
    vae = zoo.load("vae-shapes", **get_family("vae").tiny)
    vae.set_scaling_factor(1.0)
    vae_dir = tmp_path / "vae"
    save_pretrained(vae, vae_dir)
    images = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    config = DiffusionDataConfig(n_train=3, n_val=4, n_test=4, n_test_heldout=4)

    def build():
        return cached_latents(vae, vae_dir, config, "train", images, tmp_path / "cache")

    first, second, third = rebuilt(build, lambda: cut_short(only_cache_file(tmp_path / "cache")))
    for key in ("mean", "std"):
        assert torch.equal(first[key], second[key]) and torch.equal(second[key], third[key])
