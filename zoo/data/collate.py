"""Batching variable-length items: the `collate` a family passes to its Family when its samples differ in
length (audio features, transcripts, digit strings), instead of torch's default_collate.

    collate = functools.partial(pad_collate, pad={"tokens": 0, "labels": -100})   # labels: the ignore index
"""

import torch
from torch.utils.data import default_collate

from zoo.errors import InputError

MASK_SUFFIX = "_mask"


def pad_collate(items: list[dict], pad: dict[str, float]) -> dict:
    """Dict items -> one batch dict. Every key named in `pad` is variable-length: its tensors are right-padded
    along their first dimension to the longest with pad[key], and `key + "_mask"` is added, (B, T) bool, True
    at real positions (always, even when a batch happens to hold equal lengths, so a family never has to
    guess). Every other key is collated as default_collate does (equal-shaped tensors stacked)."""
    if not items or not all(isinstance(item, dict) for item in items):
        raise InputError(f"pad_collate takes a non-empty list of dicts, got {type(items).__name__} of "
                         f"{sorted({type(item).__name__ for item in items}) if items else 'nothing'}")
    unknown = sorted(set(pad) - set(items[0]))
    if unknown:
        raise InputError(f"pad_collate: pad names {unknown}, which the items do not hold; they hold "
                         f"{sorted(items[0])}")
    batch = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if key not in pad:
            shapes = {tuple(v.shape) for v in values if isinstance(v, torch.Tensor)}
            if len(shapes) > 1:
                raise InputError(f"pad_collate: items of {key!r} differ in shape {sorted(shapes)}; name it in "
                                 f"pad=... to pad it and get {key + MASK_SUFFIX!r}")
            batch[key] = default_collate(values)
            continue
        if not all(isinstance(v, torch.Tensor) and v.dim() >= 1 for v in values) \
                or len({tuple(v.shape[1:]) for v in values}) != 1:
            raise InputError(f"pad_collate pads only the first dimension of tensors: items of {key!r} are "
                             f"{sorted({tuple(getattr(v, 'shape', ())) for v in values})}")
        longest = max(len(v) for v in values)
        padded = values[0].new_full((len(values), longest, *values[0].shape[1:]), pad[key])
        mask = torch.zeros(len(values), longest, dtype=torch.bool)
        for row, value in enumerate(values):
            padded[row, :len(value)] = value
            mask[row, :len(value)] = True
        batch[key], batch[key + MASK_SUFFIX] = padded, mask
    return batch
