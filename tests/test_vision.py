"""Vision: AlexNet (parity with torchvision), ViT on the shared backbone, the data layer, evaluate/classify."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch.utils.data import default_collate

import zoo
from zoo.data.shapes import SHAPES
from zoo.vision.alexnet import AlexNet, AlexNetConfig, LocalResponseNorm
from zoo.vision.data import ImageTensors, VisionDataConfig, classify, evaluate, loss, prepare_data
from zoo.vision.vit import ViT, ViTConfig


def test_models_are_registered():
    assert {"alexnet", "alexnet-2012", "alexnet-mini", "vit-nano"} <= set(zoo.list_models())
    assert zoo.list_models("alexnet*") == ["alexnet", "alexnet-2012", "alexnet-mini"]


# ----------------------------------------------------------------------------------------------------
# AlexNet


def test_alexnet_matches_torchvision_through_the_weight_mapping():
    torch.manual_seed(0)
    reference = torchvision.models.alexnet(weights=None).eval()
    model = zoo.load("alexnet", lrn=False).eval()
    model.load_torchvision_state_dict(reference.state_dict())
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="lrn=False"):
        zoo.load("alexnet").load_torchvision_state_dict(reference.state_dict())


def test_alexnet_parameter_counts():
    # torchvision's single-GPU AlexNet: convs 2,469,696 + fc6..fc8 58,631,144 at 1000 classes.
    with torch.device("meta"):  # shapes only: no 60M-parameter initialisation
        assert zoo.load("alexnet").num_params() == 61_100_840
        assert sum(p.numel() for p in torchvision.models.alexnet(weights=None).parameters()) == 61_100_840
        # The paper's widths 96-256-384-384-256 (ungrouped): the commonly quoted 62,378,344.
        assert zoo.load("alexnet-2012").num_params() == 62_378_344
    assert zoo.load("alexnet-mini", num_classes=9).num_params() == 384_425


def test_alexnet_lrn_switch_and_lrn_equals_pytorch():
    with_lrn, without = zoo.load("alexnet-mini"), zoo.load("alexnet-mini", lrn=False)
    norms = [m for m in with_lrn.modules() if isinstance(m, torch.nn.LocalResponseNorm)]
    assert [name for name, m in with_lrn.features.named_children() if m in norms] == ["norm1", "norm2"]
    assert not any(isinstance(m, torch.nn.LocalResponseNorm) for m in without.modules())
    # The banded-GEMM LRN computes exactly nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2), values and grads.
    x = (torch.randn(2, 12, 5, 5) * 30).requires_grad_()
    ours, reference = LocalResponseNorm(12), torch.nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)
    torch.testing.assert_close(ours(x), reference(x))
    (grad_ours,) = torch.autograd.grad(ours(x).square().sum(), x)
    (grad_ref,) = torch.autograd.grad(reference(x).square().sum(), x)
    torch.testing.assert_close(grad_ours, grad_ref)


def test_alexnet_channels_last_gives_the_same_output():
    torch.manual_seed(0)
    model = zoo.load("alexnet-mini", num_classes=9, channels_last=False).eval()
    fast = zoo.load("alexnet-mini", num_classes=9, channels_last=True).eval()
    fast.load_state_dict(model.state_dict())
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), atol=1e-5, rtol=1e-5)


def test_alexnet_bad_config_and_input_errors():
    with pytest.raises(ValueError, match="image_size=8 is too small.*allowed: image_size >= "):
        AlexNetConfig(image_size=8, kernels=(5, 3, 3, 3, 3), strides=(1,) * 5, paddings=(2, 1, 1, 1, 1))
    with pytest.raises(ValueError, match="widths=.* must have 5 entries"):
        AlexNetConfig(widths=(64, 192))
    with pytest.raises(ValueError, match=r"expects images of shape \(B, 3, H, W\)"):
        zoo.load("alexnet-mini")(torch.randn(2, 1, 32, 32))


# ----------------------------------------------------------------------------------------------------
# ViT


@pytest.mark.parametrize("pool", ["mean", "cls"])
def test_vit_forward_shapes(pool):
    model = zoo.load("vit-nano", num_classes=7, pool=pool)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    assert model(torch.randn(1, 3, 48, 32)).shape == (1, 7)  # RoPE: other grids need no interpolation
    assert len(model.positions(8, 8)) == 64 + (pool == "cls")
    with pytest.raises(ValueError, match="not a multiple of patch_size=4"):
        model(torch.randn(1, 3, 30, 32))
    with pytest.raises(ValueError, match="pool='max'; allowed: mean, cls"):
        ViTConfig(pool="max")
    with pytest.raises(ValueError, match="image_size=30 is not divisible by patch_size=4"):
        ViTConfig(image_size=30, patch_size=4)


def _shuffle_patches(x: torch.Tensor, patch: int, order: torch.Tensor) -> torch.Tensor:
    B, C, H, W = x.shape
    h, w = H // patch, W // patch
    patches = x.reshape(B, C, h, patch, w, patch).permute(0, 2, 4, 1, 3, 5).reshape(B, h * w, C, patch, patch)
    patches = patches[:, order].reshape(B, h, w, C, patch, patch)
    return patches.permute(0, 3, 1, 4, 2, 5).reshape(B, C, H, W)


@pytest.mark.parametrize("pool", ["mean", "cls"])
def test_vit_positions_matter_through_2d_rope(pool):
    torch.manual_seed(0)
    model = zoo.load("vit-nano", num_classes=5, pool=pool).eval()
    torch.nn.init.normal_(model.head.weight)  # the head starts at zero: give the logits something to show
    for block in model.backbone.blocks:  # at init (std 0.02) attention is ~uniform and positions barely show
        torch.nn.init.normal_(block.attn.qkv.weight, std=0.3)
    assert model.backbone.config.positions == "rope2d"
    x = torch.randn(2, 3, 32, 32)
    order = torch.randperm(64)
    with torch.no_grad():
        out, shuffled = model(x), model(_shuffle_patches(x, 4, order))
        # Moving the patches changes the output: only positions can tell the two images apart...
        assert (out - shuffled).abs().max() > 1e-2
        # ... and moving their RoPE positions along with them restores it exactly (2-D RoPE is the only
        # position signal; mean pooling and the class token are permutation invariant).
        tokens = model.patch_embed(_shuffle_patches(x, 4, order)).flatten(2).transpose(1, 2)
        positions = model.positions(8, 8)
        n_cls = int(pool == "cls")
        if n_cls:
            tokens = torch.cat([model.cls_token.expand(2, -1, -1), tokens], dim=1)
        positions = torch.cat([positions[:n_cls], positions[n_cls:][order]])
        hidden = model.backbone(tokens, positions=positions)
        restored = model.head(hidden[:, 0] if n_cls else hidden.mean(dim=1))
        torch.testing.assert_close(restored, out, atol=1e-5, rtol=1e-5)


def test_vit_nano_budget_is_close_to_alexnet_mini():
    alexnet, vit = zoo.load("alexnet-mini", num_classes=9), zoo.load("vit-nano", num_classes=9)
    ratio = vit.num_params() / alexnet.num_params()
    assert 0.4 < ratio < 1.5, ratio


@pytest.mark.parametrize("name", ["alexnet-mini", "vit-nano"])
def test_training_steps_lower_the_loss_on_a_fixed_batch(name):
    torch.manual_seed(0)
    data = prepare_data(zoo.load(name).config, VisionDataConfig(n_train=32, n_val=8), None, None)
    model = zoo.load(name, num_classes=9)
    batch = default_collate([data.train[i] for i in range(32)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.eval()
    with torch.no_grad():
        before = loss(model, batch).item()
    model.train()
    for _ in range(15):
        optimizer.zero_grad()
        loss(model, batch).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        after = loss(model, batch).item()
    assert after < 0.8 * before, (before, after)


# ----------------------------------------------------------------------------------------------------
# Data: built-in shapes and image folders


def test_shapes_data_items_splits_and_cache(tmp_path):
    config = zoo.load("alexnet-mini").config
    data = prepare_data(config, VisionDataConfig(n_train=40, n_val=20, seed=3), None, tmp_path)
    assert data.config.class_names == SHAPES and data.config.num_classes == len(SHAPES)
    assert data.config.image_size == 32
    item = data.train[0]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert item["label"].dtype == torch.long and 0 <= item["label"] < len(SHAPES)
    assert -3 < item["image"].min() < 0 < item["image"].max() < 3  # normalised, not [0, 255] or [0, 1]
    assert len(data.train) == 40 and len(data.val) == 20
    assert len(list(tmp_path.glob("*.safetensors"))) == 2
    # Validation comes from a different random stream: none of its images appears in training.
    train = {bytes(img.numpy()) for img in data.train.images}
    assert not any(bytes(img.numpy()) in train for img in data.val.images)
    again = prepare_data(config, VisionDataConfig(n_train=40, n_val=20, seed=3), None, tmp_path)  # from the cache
    assert torch.equal(again.train.images, data.train.images)
    counted = prepare_data(config, VisionDataConfig(task="count", n_train=8, n_val=4, max_count=4), None, None)
    assert counted.config.class_names == ("one", "two", "three", "four")
    with pytest.raises(ValueError, match="task='size'; allowed: shape, colour, count"):
        VisionDataConfig(task="size")


def _mini_config() -> AlexNetConfig:
    return zoo.load("alexnet-mini").config


def _image_tree(root, split=False):
    """Two classes with every PIL mode we convert: RGB/L JPEG, RGBA, palette (+ transparency), 16-bit PNG."""
    rng = np.random.default_rng(0)
    pixels = lambda h, w, c=3: rng.integers(0, 256, (h, w, c) if c else (h, w), dtype=np.uint8)
    images = {
        "cat": [("a.jpg", Image.fromarray(pixels(40, 60))), ("b.png", Image.fromarray(pixels(30, 30, 0), "L")),
                ("c.png", Image.fromarray(pixels(50, 35, 4), "RGBA")),
                ("d.png", Image.fromarray(pixels(33, 47)).convert("P")),
                ("e.jpg", Image.fromarray(pixels(64, 64, 0), "L"))],
        "dog": [("f.png", Image.fromarray(pixels(20, 80, 0).astype(np.uint16) * 257)),  # 16-bit
                ("g.jpeg", Image.fromarray(pixels(100, 20))), ("h.bmp", Image.fromarray(pixels(16, 16))),
                ("i.png", Image.fromarray(pixels(25, 25, 0), "L").convert("P")),
                ("j.webp", Image.fromarray(pixels(70, 45)))],
    }
    transparent = Image.fromarray(pixels(24, 24)).convert("P")
    transparent.info["transparency"] = 0
    images["dog"].append(("k.png", transparent))
    for cls, files in images.items():
        for i, (name, image) in enumerate(files):
            folder = root / ("val" if split and i == 0 else "train" if split else "") / cls
            folder.mkdir(parents=True, exist_ok=True)
            image.save(folder / name)
    return root


def test_image_folder_split_modes_and_class_names(tmp_path):
    root = _image_tree(tmp_path / "pets")
    (root / "cat" / "README.txt").write_text("not an image")
    config = _mini_config()
    with pytest.warns(UserWarning, match="skipped 1 file.*README.txt"):
        data = prepare_data(config, VisionDataConfig(), root, tmp_path / "cache")
    assert data.config.class_names == ("cat", "dog") and data.config.num_classes == 2
    assert len(data.train) + len(data.val) == 11 and len(data.val) == 1  # round(11 * 0.1)
    assert data.train[0]["image"].shape == (3, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = prepare_data(config, VisionDataConfig(), root, tmp_path / "cache")  # cached, same split
        other = prepare_data(config, VisionDataConfig(seed=1), root, None)
    assert torch.equal(again.val.images, data.val.images) and torch.equal(again.train.labels, data.train.labels)
    assert not torch.equal(other.val.images, data.val.images)
    # With train/ + val/ subfolders those are the split; 24 px models get 24 px images.
    split = _image_tree(tmp_path / "split", split=True)
    data = prepare_data(_mini_config(), VisionDataConfig(image_size=24), split, None)
    assert len(data.train) == 9 and len(data.val) == 2 and data.config.image_size == 24
    assert data.val[0]["image"].shape == (3, 24, 24)
    assert data.val.labels.tolist() == [0, 1]


def test_image_folder_errors_are_clear(tmp_path):
    config, data_config = _mini_config(), VisionDataConfig()
    with pytest.raises(FileNotFoundError, match="image folder .*nope does not exist"):
        prepare_data(config, data_config, tmp_path / "nope", None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty.* is empty"):
        prepare_data(config, data_config, tmp_path / "empty", None)
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (8, 8)).save(flat / "x.png")
    with pytest.raises(ValueError, match="has no class subfolders .*'x.png'.*root/<class>/<image>"):
        prepare_data(config, data_config, flat, None)
    root = _image_tree(tmp_path / "bad")
    (root / "dog" / "broken.png").write_text("this is text, not a PNG")
    with pytest.raises(ValueError, match=r"cannot read image .*dog/broken.png"):
        prepare_data(config, data_config, root, None)
    (root / "dog" / "broken.png").unlink()
    jpeg = (root / "cat" / "a.jpg").read_bytes()
    (root / "cat" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    with pytest.raises(ValueError, match=r"cannot read image .*cat/truncated.jpg"):
        prepare_data(config, data_config, root, None)
    (root / "cat" / "truncated.jpg").unlink()
    (root / "bird").mkdir()
    with pytest.raises(ValueError, match="class folder.* bird .*hold no images"):
        prepare_data(config, data_config, root, None)


def test_prepare_data_reuses_a_trained_models_classes(tmp_path):
    root = _image_tree(tmp_path / "pets")
    model = zoo.load("alexnet-mini", num_classes=3, class_names=("bird", "cat", "dog"))
    data = prepare_data(model.config, VisionDataConfig(), root, None, model=model)
    assert data.config.class_names == ("bird", "cat", "dog")
    assert set(data.train.labels.tolist()) | set(data.val.labels.tolist()) == {1, 2}  # cat, dog in the model's order
    other = zoo.load("alexnet-mini", num_classes=2, class_names=("ant", "bee"))
    with pytest.raises(ValueError, match="classes the model was not trained on: cat, dog; the model knows: ant, bee"):
        prepare_data(other.config, VisionDataConfig(), root, None, model=other)


# ----------------------------------------------------------------------------------------------------
# evaluate, classify, save/load


@pytest.fixture(scope="module")
def shapes_model():
    torch.manual_seed(0)
    data = prepare_data(zoo.load("alexnet-mini").config, VisionDataConfig(n_train=16, n_val=40), None, None)
    return AlexNet(data.config), data


def test_evaluate_metrics_and_confusion_matrix(shapes_model, tmp_path):
    model, data = shapes_model
    model.train()
    metrics = evaluate(model, data, VisionDataConfig(), out_dir=tmp_path)
    assert model.training  # the previous mode is restored
    assert {"top1", "top5", "val_loss"} <= metrics.keys()
    assert 0 <= metrics["top1"] <= metrics["top5"] <= 1 and metrics["val_loss"] > 0
    per_class = {k for k in metrics if k.startswith("acc/")}
    assert per_class and per_class <= {f"acc/{name}" for name in SHAPES}
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 1000
    assert Image.open(tmp_path / "confusion_matrix.png").format == "PNG"
    # top-k with k = min(5, classes): two classes make top5 = 100%
    two = AlexNet(AlexNetConfig(image_size=32, kernels=(5, 3, 3, 3, 3), strides=(1,) * 5,
                                paddings=(2, 1, 1, 1, 1), pooled_size=3, fc_dims=(16, 16), num_classes=2))
    two_classes = ImageTensors(data.val.images, data.val.labels % 2, ["even", "odd"])
    assert evaluate(two, two_classes, quick=True)["top5"] == 1.0


def test_classify_returns_sorted_probabilities(shapes_model, tmp_path):
    model, data = shapes_model
    path = tmp_path / "x.png"
    Image.fromarray(data.val.images[0].permute(1, 2, 0).numpy()).convert("RGBA").save(path)
    top = classify(model, path, top_k=3)
    assert len(top) == 3 and all(name in SHAPES for name, _ in top)
    probs = [p for _, p in top]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
    (tmp_path / "notes.png").write_text("just text")
    with pytest.raises(ValueError, match="cannot read image .*notes.png"):
        classify(model, tmp_path / "notes.png")
    with pytest.raises(FileNotFoundError, match="no image file .*missing.png"):
        classify(model, tmp_path / "missing.png")


@pytest.mark.parametrize("name", ["alexnet-mini", "vit-nano"])
def test_save_load_round_trip_keeps_class_names(name, tmp_path):
    model = zoo.load(name, num_classes=3, class_names=("a", "b", "c")).eval()
    torch.nn.init.normal_(list(model.parameters())[-2])  # ViT's zero head would hide a weight mix-up
    model.save_pretrained(tmp_path / "m")
    loaded = zoo.load(tmp_path / "m").eval()
    assert loaded.config == model.config and loaded.config.class_names == ("a", "b", "c")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert isinstance(loaded, ViT if name.startswith("vit") else AlexNet)


def test_loss_is_cross_entropy():
    model = zoo.load("vit-nano", num_classes=4)
    batch = {"image": torch.randn(3, 3, 32, 32), "label": torch.tensor([0, 3, 1])}
    assert torch.allclose(loss(model, batch), F.cross_entropy(model(batch["image"]), batch["label"]))
    assert abs(loss(model, batch).item() - np.log(4)) < 1e-5  # zero-initialised head
