"""zoo.data.collate.pad_collate: variable-length items padded with masks, the rest as default_collate."""

import pytest
import torch

from zoo.data.collate import pad_collate


def test_pads_the_named_keys_and_masks_the_padding():
    items = [{"ids": torch.tensor([1, 2, 3]), "feats": torch.ones(2, 4), "label": 0},
             {"ids": torch.tensor([4]), "feats": torch.ones(5, 4), "label": 1}]
    batch = pad_collate(items, pad={"ids": -100, "feats": 0.0})
    assert batch["ids"].tolist() == [[1, 2, 3], [4, -100, -100]]
    assert batch["ids_mask"].tolist() == [[True, True, True], [True, False, False]]
    assert batch["feats"].shape == (2, 5, 4) and batch["feats"][0, 2:].abs().sum() == 0
    assert batch["feats_mask"].sum(dim=1).tolist() == [2, 5]
    assert batch["label"].tolist() == [0, 1] and "label_mask" not in batch


def test_a_named_key_gets_its_mask_even_when_lengths_agree():
    batch = pad_collate([{"x": torch.arange(3)}, {"x": torch.arange(3)}], pad={"x": 0})
    assert batch["x"].shape == (2, 3) and batch["x_mask"].all()


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="pads only the first dimension"):
        pad_collate([{"x": torch.ones(2, 3)}, {"x": torch.ones(3, 4)}], pad={"x": 0})
    with pytest.raises(ValueError, match=r"items of 'x' differ in shape.*name it in pad"):
        pad_collate([{"x": torch.ones(2)}, {"x": torch.ones(3)}], pad={})
    with pytest.raises(ValueError, match=r"pad names \['y'\]"):
        pad_collate([{"x": torch.ones(2)}], pad={"y": 0})
    with pytest.raises(ValueError, match="non-empty list of dicts"):
        pad_collate([], pad={})
