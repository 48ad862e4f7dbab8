"""One contract over every registered model: build, forward, a training step lowers the loss on a fixed
batch, exact save/load, bf16 forward, same seed -> same output, bad input -> zoo's own clear error.

Each family says how to make a test-sized model (`Family.tiny`) and a valid batch (`Family.example_batch`),
and the loss is the family's own (`Family.loss`), so a new family is tested the day it is registered,
with no edit here.
"""

import pytest
import torch

import zoo
from zoo.registry import get_family, get_model_entry
from zoo.train.trainer import split_loss


def family_of(name: str):
    return get_family(get_model_entry(name).family)


@pytest.fixture(params=zoo.list_models())
def case(request):
    name = request.param
    family = family_of(name)
    torch.manual_seed(0)
    model = zoo.load(name, **family.tiny)
    batch, frozen = family.example_batch(model, torch.Generator().manual_seed(1))
    return name, family, model, batch, frozen


def test_every_family_gives_an_example_batch():
    missing = sorted({family_of(name).name for name in zoo.list_models() if family_of(name).example_batch is None})
    assert not missing, f"families without example_batch: {missing}"


def first_tensor(batch: dict) -> str:
    return next(key for key, value in batch.items() if isinstance(value, torch.Tensor))


def test_forward_train_save_load_bf16_seed_and_bad_input(case, tmp_path):
    name, family, model, batch, frozen = case

    def loss_of(m):
        return split_loss(family.loss(m, batch, **frozen), family.name)[0]

    with torch.no_grad():
        assert torch.isfinite(loss_of(model.eval()))

    # a few optimizer steps on one batch lower the loss (measured in eval mode, which every family makes
    # deterministic: no dropout, and a diffusion loss draws its noise from a fixed seed)
    with torch.no_grad():
        first = loss_of(model.eval())
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    for _ in range(8):
        loss = loss_of(model)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        trained = loss_of(model)
    assert trained < first - 0.05, name

    # save/load is exact: same weights, same loss, bit for bit
    model.save_pretrained(tmp_path / name)
    loaded = zoo.load(tmp_path / name).eval()
    assert loaded.config == model.config
    with torch.no_grad():
        assert torch.equal(loss_of(loaded), trained), name

    # bf16 runs and stays close to fp32
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = loss_of(model).float()
    assert torch.isfinite(low) and abs(low - trained) < 0.1 * abs(trained) + 0.1

    # the same seed builds the same model
    torch.manual_seed(5)
    a = zoo.load(name, **family.tiny).eval()
    torch.manual_seed(5)
    b = zoo.load(name, **family.tiny).eval()
    with torch.no_grad():
        assert torch.equal(loss_of(a), loss_of(b))

    # bad input (the batch dimension dropped from the first input): the model's own error, naming it
    key = first_tensor(batch)
    bad = {**batch, key: batch[key][0]}
    with pytest.raises(ValueError, match=rf"{type(model).__name__} expects"):
        family.loss(model, bad, **frozen)
