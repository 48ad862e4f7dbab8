"""One contract over every registered model: build, forward, a training step lowers the loss on a fixed
batch, exact save/load, bf16 forward, same seed -> same output, bad input -> clear error.

Models are built at their registered config except for a few size fields shrunk so the suite stays fast on a
CPU (`SHRINK`); every registered name is covered, so a new model is tested the day it is registered.
"""

import pytest
import torch
import torch.nn.functional as F

import zoo
from zoo.registry import get_model_entry

# Per family: size overrides for a fast test, and a fixed batch (inputs, targets) for the model.
SHRINK = {
    "gpt": {"n_layers": 2, "dim": 64, "n_heads": 4, "vocab_size": 97, "max_seq_len": 32},
    "alexnet": {"num_classes": 5, "image_size": 64},
    "vit": {"num_classes": 5, "image_size": 32, "patch_size": 8, "n_layers": 2},
}


def batch_for(family: str, generator: torch.Generator):
    if family == "gpt":
        idx = torch.randint(0, 97, (4, 17), generator=generator)
        return idx[:, :-1], idx[:, 1:]
    size = SHRINK[family]["image_size"]
    return torch.rand(4, 3, size, size, generator=generator), torch.randint(0, 5, (4,), generator=generator)


def loss_of(family, model, inputs, targets):
    logits = model(inputs)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten()) if family == "gpt" else \
        F.cross_entropy(logits, targets)


@pytest.fixture(params=zoo.list_models())
def case(request):
    name = request.param
    family = get_model_entry(name).family
    torch.manual_seed(0)
    model = zoo.load(name, **SHRINK[family])
    inputs, targets = batch_for(family, torch.Generator().manual_seed(1))
    return name, family, model, inputs, targets


def test_every_family_is_covered():
    assert {get_model_entry(name).family for name in zoo.list_models()} <= set(SHRINK)


def test_forward_train_save_load_bf16_seed_and_bad_input(case, tmp_path):
    name, family, model, inputs, targets = case
    model.eval()
    with torch.no_grad():
        out = model(inputs)
    assert torch.isfinite(out).all()

    # a few optimizer steps on one batch lower the loss
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    first = loss_of(family, model, inputs, targets)
    for _ in range(8):
        loss = loss_of(family, model, inputs, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        assert loss_of(family, model, inputs, targets) < first.detach() - 0.05, name

    # save/load is exact
    model.save_pretrained(tmp_path / name)
    loaded = zoo.load(tmp_path / name).eval()
    with torch.no_grad():
        assert torch.equal(loaded(inputs), model(inputs)), name

    # bf16 runs and stays close to fp32
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(inputs).float()
    reference = model(inputs).detach()
    assert torch.isfinite(low).all()
    assert (low - reference).abs().max() < 0.1 * reference.abs().max() + 0.1

    # the same seed builds the same model
    torch.manual_seed(5)
    a = zoo.load(name, **SHRINK[family]).eval()
    torch.manual_seed(5)
    b = zoo.load(name, **SHRINK[family]).eval()
    with torch.no_grad():
        assert torch.equal(a(inputs), b(inputs))

    # bad input: a clear error, not a deep traceback
    with pytest.raises((ValueError, RuntimeError), match=r"(?i)expect|shape|channel|must"):
        model(inputs[0] if family == "gpt" else inputs[:, :1])
