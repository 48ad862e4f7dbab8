"""AlexNet: the 2012 CNN baseline (Krizhevsky, Sutskever & Hinton, 2012, "ImageNet Classification with
Deep Convolutional Neural Networks"), deliberately without zoo.nn: the contrast to the Transformer models.

    image -> conv1 -> ReLU -> LRN -> maxpool -> conv2 -> ReLU -> LRN -> maxpool
          -> conv3 -> ReLU -> conv4 -> ReLU -> conv5 -> ReLU -> maxpool -> avgpool(6x6)
          -> dropout -> fc6 -> ReLU -> dropout -> fc7 -> ReLU -> fc8 (classes)

As in the paper (sec. 3): ReLU nonlinearities (3.1), local response normalisation after conv1 and conv2
(3.3, k=2, n=5, alpha=1e-4, beta=0.75), overlapping max-pooling, 3x3 windows at stride 2 (3.4), and dropout
0.5 before the first two fully connected layers (4.2). Layers are named conv1..conv5, fc6..fc8 as in the
paper and in Caffe's reference model.

Two deliberate differences, both from torchvision's single-GPU `alexnet` (Krizhevsky, 2014, "One weird
trick"), so its weights load with `lrn=False` (see `load_torchvision_state_dict`):
- widths 64-192-384-256-256 rather than 96-256-384-384-256 (the paper's two GPUs; `alexnet-2012` keeps
  those widths, without the split of conv2/4/5 into two groups, hence 62.4M parameters not ~60M),
- an adaptive average pool to 6x6 before fc6, so any input size >= the minimum works.
Initialisation is He et al. (2015) rather than the paper's N(0, 0.01) with unit biases, which only trains
with the paper's hand-tuned SGD schedule.
"""

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from zoo.checkpoint import PretrainedMixin
from zoo.errors import InputError
from zoo.registry import Family, register_family, register_model
from zoo.vision.commands import CLASSIFY
from zoo.vision.data import VisionDataConfig, evaluate, example_batch, loss, prepare_data

N_CONVS = 5
LRN_AFTER = (1, 2)  # conv1 and conv2 (sec. 3.3)
POOL_AFTER = (1, 2, 5)  # after both LRNs and after conv5 (sec. 3.5)


class LocalResponseNorm(nn.LocalResponseNorm):
    """nn.LocalResponseNorm computed with the channel-window sum as a 1x1 convolution by a banded 0/1 matrix.

    b_c = a_c / (k + alpha/n * sum_{|c'-c| <= n/2} a_c'^2)^beta (sec. 3.3; PyTorch divides alpha by n as
    Caffe does, the paper's formula does not). The same numbers as PyTorch's module (tests check values and
    gradients), ~6x faster forward+backward on CPU: one small GEMM instead of a padded 3-D average pool, and
    a hand-written backward that reuses the forward's denominators instead of recomputing powers.
    """

    def __init__(self, channels: int, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0):
        super().__init__(size, alpha, beta, k)
        offset = torch.arange(channels)[None, :] - torch.arange(channels)[:, None]  # c' - c
        window = (offset >= -(size // 2)) & (offset <= (size - 1) // 2)  # PyTorch's window (asymmetric if n even)
        self.register_buffer("window", window.float()[:, :, None, None] * (alpha / size), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H, W)
        return _LocalResponseNorm.apply(x, self.window.to(x.dtype), self.k, self.beta)


class _LocalResponseNorm(torch.autograd.Function):
    """y = x * d^-beta with d = k + W (x*x) (W the scaled window, applied over channels).
    dL/dx = g * d^-beta - 2 * beta * x * W^T (g * y / d)."""

    @staticmethod
    def forward(ctx, x, window, k, beta):
        d = F.conv2d(x * x, window).add_(k)  # (B, C, H, W)
        scale = d.pow(-beta)
        ctx.save_for_backward(x, d, scale, window)
        ctx.beta = beta
        return x * scale

    @staticmethod
    def backward(ctx, grad):
        x, d, scale, window = ctx.saved_tensors
        grad_scaled = grad * scale
        # in place where the temporaries are ours: this layer is memory-bound, every pass over it counts
        through_window = F.conv2d(grad_scaled.mul(x).div_(d), window.transpose(0, 1))  # W^T (g * y / d)
        return grad_scaled.sub_(through_window.mul_(x).mul_(2 * ctx.beta)), None, None, None


@dataclass
class AlexNetConfig:
    num_classes: int = 1000
    image_size: int = 224  # what the data layer renders/resizes to; the model itself accepts any size
    in_channels: int = 3
    widths: tuple[int, ...] = (64, 192, 384, 256, 256)  # conv1..conv5 output channels
    kernels: tuple[int, ...] = (11, 5, 3, 3, 3)
    strides: tuple[int, ...] = (4, 1, 1, 1, 1)
    paddings: tuple[int, ...] = (2, 2, 1, 1, 1)
    pool_size: int = 3  # overlapping max-pooling: z=3 > s=2 (sec. 3.4)
    pool_stride: int = 2
    pooled_size: int = 6  # adaptive average pool to (6, 6) before fc6
    fc_dims: tuple[int, ...] = (4096, 4096)  # fc6, fc7
    dropout: float = 0.5
    lrn: bool = True  # False = torchvision's layout (its weights load then)
    # NHWC activations and weights: faster convolutions with oneDNN on CPU (1.1x torchvision's AlexNet at 224 px,
    # 1.4x for alexnet-mini; benchmarks/vision.py) and with cuDNN on GPU. The weights and outputs are the same.
    channels_last: bool = True
    class_names: tuple[str, ...] = ()  # filled from the training data, so a saved model knows its labels

    def __post_init__(self):
        for name in ("widths", "kernels", "strides", "paddings"):
            if len(getattr(self, name)) != N_CONVS:
                raise InputError(f"AlexNetConfig.{name}={getattr(self, name)} must have {N_CONVS} entries "
                                 f"(conv1..conv5)")
        if len(self.fc_dims) != 2:
            raise InputError(f"AlexNetConfig.fc_dims={self.fc_dims} must have 2 entries (fc6, fc7)")
        for name in ("num_classes", "image_size", "in_channels", "pool_size", "pool_stride", "pooled_size"):
            if getattr(self, name) < 1:
                raise InputError(f"AlexNetConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"AlexNetConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise InputError(f"AlexNetConfig has {len(self.class_names)} class_names but num_classes="
                             f"{self.num_classes}")
        if self.feature_size() < 1:
            raise InputError(f"AlexNetConfig.image_size={self.image_size} is too small for these kernels, strides "
                             f"and pools (the feature map vanishes); allowed: image_size >= {self.min_image_size()}")

    def feature_size(self, image_size: int | None = None) -> int:
        """Side of conv5's pooled feature map for a square input (before the adaptive average pool)."""
        size = self.image_size if image_size is None else image_size
        for i in range(N_CONVS):
            size = (size + 2 * self.paddings[i] - self.kernels[i]) // self.strides[i] + 1
            if i + 1 in POOL_AFTER:
                size = (size - self.pool_size) // self.pool_stride + 1
            if size < 1:
                return 0
        return size

    def min_image_size(self) -> int:
        return next(s for s in range(1, 4096) if self.feature_size(s) >= 1)


class AlexNet(nn.Module, PretrainedMixin):
    def __init__(self, config: AlexNetConfig):
        super().__init__()
        self.config = c = config
        layers, channels = OrderedDict(), c.in_channels
        for i in range(1, N_CONVS + 1):
            layers[f"conv{i}"] = nn.Conv2d(channels, c.widths[i - 1], c.kernels[i - 1], c.strides[i - 1],
                                           c.paddings[i - 1])
            layers[f"relu{i}"] = nn.ReLU(inplace=True)
            if c.lrn and i in LRN_AFTER:
                layers[f"norm{i}"] = LocalResponseNorm(c.widths[i - 1], size=5, alpha=1e-4, beta=0.75, k=2.0)
            if i in POOL_AFTER:
                layers[f"pool{i}"] = nn.MaxPool2d(c.pool_size, c.pool_stride)
            channels = c.widths[i - 1]
        self.features = nn.Sequential(layers)
        self.avgpool = nn.AdaptiveAvgPool2d(c.pooled_size)
        self.classifier = nn.Sequential(OrderedDict([
            ("drop6", nn.Dropout(c.dropout)),
            ("fc6", nn.Linear(channels * c.pooled_size ** 2, c.fc_dims[0])),
            ("relu6", nn.ReLU(inplace=True)),
            ("drop7", nn.Dropout(c.dropout)),
            ("fc7", nn.Linear(c.fc_dims[0], c.fc_dims[1])),
            ("relu7", nn.ReLU(inplace=True)),
            ("fc8", nn.Linear(c.fc_dims[1], c.num_classes)),
        ]))
        self.init_weights()
        if c.channels_last:
            self.to(memory_format=torch.channels_last)

    def init_weights(self):
        """He et al. (2015) normal init for the ReLU layers, zero biases; a small-std classifier output so the
        first loss is ~log(classes)."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.classifier.fc8.weight, std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) normalised images -> logits (B, num_classes)."""
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise InputError(f"AlexNet expects images of shape (B, {self.config.in_channels}, H, W), "
                             f"got {tuple(x.shape)}")
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.features(x)  # (B, 256, 6, 6) at 224 px for `alexnet`
        x = self.avgpool(x)  # (B, 256, 6, 6) whatever the input size
        x = torch.flatten(x, 1)  # (B, 256 * 6 * 6)
        return self.classifier(x)  # (B, num_classes)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def load_torchvision_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load `torchvision.models.alexnet().state_dict()` (e.g. its ImageNet weights) into a `lrn=False`
        model with torchvision's widths; `strict`: every tensor must be used and every parameter set."""
        if self.config.lrn:
            raise InputError("torchvision's AlexNet has no local response normalisation: build the model with "
                             "lrn=False, e.g. zoo.load('alexnet', lrn=False)")
        mapped = {}
        for key, value in state_dict.items():
            module, _, name = key.rpartition(".")
            if module not in TORCHVISION_NAMES:
                raise InputError(f"unexpected key {key!r} in the torchvision state dict; known modules: "
                                 f"{', '.join(TORCHVISION_NAMES)}")
            mapped[f"{TORCHVISION_NAMES[module]}.{name}"] = value
        self.load_state_dict(mapped, strict=True)


# torchvision.models.alexnet's Sequential indices -> our names (features.0 is conv1, classifier.1 is fc6, ...)
TORCHVISION_NAMES = {
    "features.0": "features.conv1", "features.3": "features.conv2", "features.6": "features.conv3",
    "features.8": "features.conv4", "features.10": "features.conv5",
    "classifier.1": "classifier.fc6", "classifier.4": "classifier.fc7", "classifier.6": "classifier.fc8",
}


# ----------------------------------------------------------------------------------------------------
# Registration: the family contract (zoo/registry.py) and the named sizes.

register_family(Family(
    name="alexnet", config_class=AlexNetConfig, build=AlexNet, data_config=VisionDataConfig,
    prepare_data=prepare_data, loss=loss, evaluate=evaluate, example_batch=example_batch,
    # Not a stack of repeated blocks: FSDP shards the whole model as one unit, no activation checkpointing.
    blocks=lambda model: [],
    commands=(CLASSIFY,),  # serves every classifier (ViT too): it needs only config.image_size and class_names
    tiny={"num_classes": 5, "image_size": 64},
))


@register_model("alexnet", family="alexnet")
def alexnet() -> AlexNetConfig:
    """AlexNet at 224 px with torchvision's widths (61.1M parameters at 1000 classes); lrn=False loads
    torchvision's weights."""
    return AlexNetConfig()


@register_model("alexnet-2012", family="alexnet")
def alexnet_2012() -> AlexNetConfig:
    """The paper's widths 96-256-384-384-256 on one device (62.4M parameters at 1000 classes)."""
    return AlexNetConfig(widths=(96, 256, 384, 384, 256), paddings=(2, 2, 1, 1, 1))


@register_model("alexnet-mini", family="alexnet",
                train=dict(steps=3000, batch_size=128, lr=2e-3, min_lr=2e-5, warmup=100, weight_decay=0.05,
                           grad_clip=1.0, eval_every=250, log_every=50, checkpoint_every=1000),
                data=dict(task="shape", n_train=20000, n_val=2000, augment=True))
def alexnet_mini() -> AlexNetConfig:
    """AlexNet's structure for 32 px images (0.38M parameters at 9 classes): 5x5/3x3 kernels at stride 1,
    widths 32-64-96-64-64, fc 256-256, LRN and dropout 0.5 kept; >= 99% on the shapes in minutes on 2 cores."""
    return AlexNetConfig(image_size=32, widths=(32, 64, 96, 64, 64), kernels=(5, 3, 3, 3, 3),
                         strides=(1, 1, 1, 1, 1), paddings=(2, 1, 1, 1, 1), pooled_size=3, fc_dims=(256, 256))
