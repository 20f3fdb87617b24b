"""Spec -> nn.Module. The only place that turns an ArchSpec into layers."""

from __future__ import annotations

import torch
from torch import nn

from nas.arch.shapes import iter_blocks, last_channels
from nas.arch.spec import ArchSpec, CellSpec, ChainSpec, ConvSpec, HeadSpec
from nas.ops.blocks import BLOCKS
from nas.ops.layers import ConvBNAct, Norm, init_weights, make_norm
from nas.ops.network import Network


def conv_layer(cin: int, c: ConvSpec, norm: Norm) -> ConvBNAct:
    """A stem or head layer of a chain spec."""
    return ConvBNAct(cin, c.out, c.kernel, c.stride, act=c.act, norm=norm if c.bn else None,
                     bias=c.bias)


class Head(nn.Module):
    """pre-pool 1x1 convs -> global average pool -> post-pool 1x1 convs -> dropout -> classifier."""

    def __init__(self, spec: HeadSpec, cin: int, num_classes: int, norm: Norm):
        super().__init__()
        layers = []
        for c in spec.pre_pool:
            layers.append(conv_layer(cin, c, norm))
            cin = c.out
        self.pre_pool = nn.Sequential(*layers)
        layers = []
        for c in spec.post_pool:
            layers.append(conv_layer(cin, c, norm))
            cin = c.out
        self.post_pool = nn.Sequential(*layers)
        self.dropout = nn.Dropout(spec.dropout)
        self.conv_classifier = spec.classifier == "conv"
        self.classifier = (nn.Conv2d(cin, num_classes, 1, bias=True) if self.conv_classifier
                           else nn.Linear(cin, num_classes))
        if spec.unused_bn:
            # The official MobileNeXt-EffNet code builds this BN and never applies it; it is
            # kept for exact parameter parity and frozen so no optimizer or DDP sees it.
            self.unused_bn = norm(spec.unused_bn).requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre_pool(x).mean((2, 3), keepdim=True)
        x = self.dropout(self.post_pool(x))
        if not self.conv_classifier:
            x = x.flatten(1)
        x = self.classifier(x)
        return x.flatten(1)


def _norm(spec: ChainSpec) -> Norm:
    return make_norm(spec.bn.eps, spec.bn.momentum)


def build_stem(spec: ChainSpec) -> nn.Module:
    """The stem of a chain spec (no weight init: the caller's)."""
    return conv_layer(spec.in_channels, spec.stem, _norm(spec))


def build_block(spec: ChainSpec, block, cin: int, index: int) -> nn.Module:
    """Block `index` of a chain spec at input width `cin`; drop path grows with depth."""
    return BLOCKS[type(block)](block, cin, norm=_norm(spec),
                               drop_path=spec.drop_path * index / len(spec.blocks))


def build_head(spec: ChainSpec, cin: int) -> nn.Module:
    """The head of a chain spec at input width `cin`."""
    return Head(spec.head, cin, spec.num_classes, _norm(spec))


class ChainNet(Network):
    """stem -> blocks -> head; `features(x)` returns the last block's feature map."""

    def __init__(self, spec: ChainSpec):
        super().__init__()
        self.spec = spec
        self.stem = build_stem(spec)
        self.blocks = nn.Sequential(*(build_block(spec, block, cin, i)
                                      for i, block, cin, _ in iter_blocks(spec)))
        self.head = build_head(spec, last_channels(spec))
        init_weights(self, spec.init)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build(spec: ArchSpec) -> nn.Module:
    """Build the network a spec describes, initialised as its family's official code does."""
    if isinstance(spec, ChainSpec):
        return ChainNet(spec)
    if isinstance(spec, CellSpec):
        from nas.ops.darts import CellNet

        return CellNet(spec)
    raise TypeError(f"not an ArchSpec: {type(spec).__name__}")
