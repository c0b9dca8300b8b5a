"""The digit models, chosen by name so results compare side by side. All output logits (N, 10).

``mlp`` and ``lenet5`` are the tutorials' baselines (without their sigmoid before softmax).
``default`` is ours: a compact CNN whose width was picked by ONNX Runtime throughput on 2 CPU cores
(``python -m training.archbench``), then by validation accuracy.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class MLP(nn.Module):
    """The tutorials' feed-forward baseline: 784 -> hidden -> 10."""

    def __init__(self, hidden: int = 512):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x):
        return self.net(x)


class LeNet5(nn.Module):
    """LeNet-5 as the tutorials built it: conv5x5->6, pool, conv5x5->16, pool, 120, 84, 10."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10)
        )

    def forward(self, x):
        return self.head(self.features(x))


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class DigitCNN(nn.Module):
    """Three conv stages at 28, 14 and 7 pixels, max-pool between, a small dense head over the 7x7 map.

    Widths 16-32-64: 16 channels at full resolution is where ONNX Runtime's CPU convs stay fast (24 or
    32 there cost 2-3x); 64 at 7x7 and a 64-unit dense layer are nearly free (see training/archbench.py).
    A wider 16-48-64 served ~25% slower and scored no better (99.54% on MNIST test, like this one
    before the polish stage of training/train.py).

    BatchNorm is folded into the convs at export, so serving pays for convs and ReLUs only. Keeping the
    spatial map in the head (not global pooling) keeps where-on-the-digit information cheaply.
    """

    def __init__(self, c1: int = 16, c2: int = 32, c3: int = 64, head: int = 64, dropout: float = 0.1, convs: int = 1):
        super().__init__()
        self.features = nn.Sequential(
            conv_bn(1, c1), *[conv_bn(c1, c1) for _ in range(convs - 1)], nn.MaxPool2d(2),  # 28 -> 14
            conv_bn(c1, c2), *[conv_bn(c2, c2) for _ in range(convs - 1)], nn.MaxPool2d(2),  # 14 -> 7
            conv_bn(c2, c3),
        )  # fmt: skip
        flat = c3 * 7 * 7
        layers: list[nn.Module] = [nn.Flatten(), nn.Dropout(dropout)]
        layers += [nn.Linear(flat, head), nn.ReLU(), nn.Dropout(dropout), nn.Linear(head, 10)] if head else [nn.Linear(flat, 10)]
        self.head = nn.Sequential(*layers)

    def forward(self, x):
        return self.head(self.features(x))


class WideCNN(DigitCNN):
    """``default`` at twice the width (32-64-128, dense 128): about 4x its compute. Too slow to read every
    crop within the 40,000 digits/s budget, so it serves as a second opinion on the crops ``default`` is
    unsure of (``DigitModel.with_second_opinion`` in worker/engine.py)."""

    def __init__(self, c1: int = 32, c2: int = 64, c3: int = 128, head: int = 128, dropout: float = 0.1):
        super().__init__(c1, c2, c3, head, dropout)


class DeepCNN(DigitCNN):
    """Two convs per stage (32-32, 64-64, 128), VGG-style: a different shape from ``default`` and ``wide``,
    so it misreads other crops, which is what an extra second opinion needs (a fifth seed of ``wide``
    added nothing). About 3x ``wide``'s compute."""

    def __init__(self, c1: int = 32, c2: int = 64, c3: int = 128, head: int = 128, dropout: float = 0.2):
        super().__init__(c1, c2, c3, head, dropout, convs=2)


class ResBlock(nn.Module):
    """Two 3x3 conv-BN layers with the input added back before the last ReLU (a ResNet basic block)."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn(c, c), nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return torch.relu(x + self.body(x))


class ResCNN(nn.Module):
    """A small ResNet: residual blocks at 14 and 7 pixels and a global-average-pooled head. Of another
    family again than ``default``, ``wide`` and ``deep`` (whose dense heads read a 7x7 map), so its
    mistakes fall elsewhere, which is what one more second opinion is for."""

    def __init__(self, c1: int = 32, c2: int = 64, c3: int = 128, dropout: float = 0.2):
        super().__init__()
        self.features = nn.Sequential(
            conv_bn(1, c1), conv_bn(c1, c1), nn.MaxPool2d(2),  # 28 -> 14
            conv_bn(c1, c2), ResBlock(c2), nn.MaxPool2d(2),  # 14 -> 7
            conv_bn(c2, c3), ResBlock(c3),
        )  # fmt: skip
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c3, 10))

    def forward(self, x):
        return self.head(self.features(x))


ARCHITECTURES = {"mlp": MLP, "lenet5": LeNet5, "default": DigitCNN, "wide": WideCNN, "deep": DeepCNN, "res": ResCNN}


def build_model(name: str, **hparams) -> nn.Module:
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name](**hparams)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """An eval-mode copy with every Conv2d+BatchNorm2d pair folded into one conv (same outputs, fewer ops)."""
    model = copy.deepcopy(model).eval()
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        mods = list(seq)
        for i in range(len(mods) - 1):
            if isinstance(mods[i], nn.Conv2d) and isinstance(mods[i + 1], nn.BatchNorm2d):
                seq[i] = torch.nn.utils.fusion.fuse_conv_bn_eval(mods[i], mods[i + 1])
                seq[i + 1] = nn.Identity()
    return model
