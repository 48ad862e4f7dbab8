"""CPU inference on prepacked weights: every nn.Linear multiplies through oneDNN with its weight reordered once.

Decoding feeds one token per sequence through every weight matrix per step, so the matmuls are matrix-vector
products bound by reading the weights. torch's default CPU path (MKL sgemm on the row-major (out, in)
weight) streams them at about 10 GB/s on the 2-core machines this project targets, a third of what memory
delivers; oneDNN's blocked layout, reordered once, streams them at about 30 GB/s (`python
benchmarks/text.py --only generate` prints both). torch.compile's CPU backend does the same reordering when
it freezes weights; `prepacked_linears` does it for the length of a `with` block, eager or compiled (a
compiled graph calls the packs through an opaque operator).

Inference only: the packed op has no autograd formula, so the block must run under torch.inference_mode()
or no_grad, and the weights must not change inside it (the packs are copies taken on entry, as much memory
again as the packed weights, for as long as the block lasts).

Fewer bytes still: `int8_dynamic(model)`, an inference copy whose linears multiply in int8 (fbgemm).
"""

import contextlib
import copy
import functools
import warnings
import weakref

import torch
from torch import nn

from zoo.errors import InputError


def can_prepack(module: nn.Module) -> bool:
    """A plain nn.Linear with a plain (not sharded) fp32/bf16 weight on the CPU, in a torch built with oneDNN
    (the x86 and Arm wheels)."""
    return (type(module) is nn.Linear and type(module.weight.data) is torch.Tensor
            and module.weight.device.type == "cpu" and module.weight.dtype in (torch.float32, torch.bfloat16)
            and torch.backends.mkldnn.is_available())


def _mkldnn_linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


# The same multiply as an operator that torch.compile leaves opaque: inductor lowers mkldnn's packed linear
# only for weights it has frozen into constants itself, so a compiled decode step (zoo.decoding, compile=True)
# calls these packs through this op, an extern kernel between the ones inductor fuses.
_LIBRARY = torch.library.Library("zoo", "DEF")
_LIBRARY.define("packed_linear(Tensor x, Tensor packed, Tensor? bias) -> Tensor")
_LIBRARY.impl("packed_linear", _mkldnn_linear, "CompositeExplicitAutograd")


@torch.library.register_fake("zoo::packed_linear")
def _packed_linear_shape(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return x.new_empty((*x.shape[:-1], packed.shape[0]))


class _PackedForward:
    """nn.Linear.forward on the packed copy of one module's weight. Each module keeps its own for as long as
    it lives and only the packs inside are renewed: a compiled step that traced it holds on to this object
    (dynamo guards on its identity), so packing again for the next call does not mean compiling again."""

    def __init__(self):
        self.packed: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            return torch.ops.zoo.packed_linear(x, self.packed, self.bias)
        return _mkldnn_linear(x, self.packed, self.bias)  # eager: no trip through the dispatcher's Python op


_FORWARDS: "weakref.WeakKeyDictionary[nn.Module, _PackedForward]" = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def prepacked_linears(model: nn.Module, rows: int = 1):
    """Inside the block, the model's CPU nn.Linear layers multiply by oneDNN-packed copies of their weights.

    rows: the number of rows a call will usually carry (the batch size when decoding), oneDNN's layout hint.
    Modules that cannot be packed (GPU, other dtypes, sharded weights, subclasses such as quantized layers) are
    left as they are, and so is everything under CPU autocast (the packed op does not take part in it).
    """
    autocast = torch.is_autocast_enabled("cpu")
    packed = [module for module in model.modules() if can_prepack(module) and not autocast]
    try:
        with torch.no_grad():
            for module in packed:
                forward = _FORWARDS.setdefault(module, _PackedForward())
                forward.packed = torch.ops.mkldnn._reorder_linear_weight(module.weight.detach(), rows)
                forward.bias = module.bias
                # an instance attribute shadows the class's forward; deleting it restores nn.Linear.forward
                module.forward = forward
        yield model
    finally:
        for module in packed:
            module.__dict__.pop("forward", None)
            _FORWARDS[module].packed = _FORWARDS[module].bias = None  # the packs' memory goes back now


# Dynamic int8 linears reach a compiled graph by number: their packed weights are TorchScript objects, which
# dynamo cannot take as inputs, so the graph calls this opaque op with the module's key and the op looks the
# module up (alive as long as the model: the key is its id, and its forward holds it).
_INT8_MODULES: "weakref.WeakValueDictionary[int, nn.Module]" = weakref.WeakValueDictionary()
_LIBRARY.define("int8_linear(Tensor x, int key, int out_features) -> Tensor")


def _int8_linear(x: torch.Tensor, key: int, out_features: int) -> torch.Tensor:
    return _quantized_linear(_INT8_MODULES[key], x)


@functools.cache
def _linear_dynamic():
    # quantized::linear_dynamic's C++ entry point. Called through torch.ops, an op that takes a TorchScript
    # object first walks its arguments in Python, looking for the fake objects of export and compile; the packed
    # weights here are real ones, and these calls are the hot loop of int8 decoding. Looked up on first use, so
    # importing zoo never depends on the quantized ops.
    return torch.ops.quantized.linear_dynamic.default._op


def _quantized_linear(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What torch.ao's dynamic quantized Linear.forward does for int8 weights (int8_dynamic makes only those):
    the fbgemm multiply, whose input is quantised to 7 bits (reduce_range, as fbgemm's int8 kernels expect)."""
    return _linear_dynamic()(x, module._packed_params._packed_params, True).to(x.dtype)


_LIBRARY.impl("int8_linear", _int8_linear, "CompositeExplicitAutograd")


@torch.library.register_fake("zoo::int8_linear")
def _int8_linear_shape(x: torch.Tensor, key: int, out_features: int) -> torch.Tensor:
    return x.new_empty((*x.shape[:-1], out_features))


class _Int8Forward:
    """The forward of one dynamic int8 linear: eager, the module's multiply; traced by torch.compile, the opaque
    op."""

    def __init__(self, module: nn.Module):
        self.module = module
        self.key, self.out_features = id(module), module.out_features
        _INT8_MODULES[self.key] = module

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            return torch.ops.zoo.int8_linear(x, self.key, self.out_features)
        return _quantized_linear(self.module, x)


def int8_dynamic(model: nn.Module, keep_float: tuple[str, ...] = ()) -> nn.Module:
    """An inference copy of the model whose nn.Linear layers multiply in int8: each weight quantised once, per
    output channel, each input per call from its own range (dynamic quantisation, torch.ao.quantization's
    quantize_dynamic; fbgemm's int8 matrix multiply on x86). A batch-1 decode step, bound by reading the
    weights, reads a quarter of the bytes. Embeddings and norms stay as they were, and so does the original
    model. CPU only; eager or compiled (GenerationOptions(compile=True): an opaque operator in the graph).
    Its quality cost is measured in README's Benchmarks (gpt-nano's validation loss before and after) and
    bounded in tests/test_decoding_levers.py.

    keep_float: linears left in floating point, by name or name suffix (("mlp.down",) keeps every block's MLP
    down projection). The down projection's input, the gated product, carries the outlier features that one
    per-tensor activation scale rounds away (Dettmers et al., 2022, LLM.int8(); Xiao et al., 2023, SmoothQuant).
    """
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    matches = {suffix: {name for name in linears if name == suffix or name.endswith("." + suffix)}
               for suffix in keep_float}
    kept = set().union(*matches.values())
    unmatched = [suffix for suffix, names in matches.items() if not names]
    if unmatched:
        raise InputError(f"keep_float={unmatched} names no nn.Linear of this model; its linears: "
                         f"{', '.join(linears[:8])}{', ...' if len(linears) > 8 else ''}")
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        # torch 2.9 announces the move of torch.ao.quantization to torchao, whose int8 paths measured slower
        # here (README); the range pyproject.toml allows ends before the move (torch < 2.10)
        warnings.filterwarnings("ignore", message="torch.ao.quantization is deprecated")
        spec = {name: per_channel_dynamic_qconfig for name in linears if name not in kept}
        quantized = quantize_dynamic(copy.deepcopy(model), spec, dtype=torch.qint8)
    for module in quantized.modules():
        if isinstance(module, DynamicQuantizedLinear):
            module.forward = _Int8Forward(module)  # an instance attribute shadows the class's forward
    return quantized
