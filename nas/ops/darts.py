"""DARTS evaluation network (quark0/darts cnn/operations.py and cnn/model.py, CIFAR variant).

Built from a CellSpec. Submodule names follow the official code (stem, cells.i.preprocess0,
cells.i._ops.j.op, auxiliary_head, classifier, ...) so that the official state_dict keys
line up with ours. BN is affine everywhere, as in the official evaluation networks.
"""

from __future__ import annotations

import torch
from torch import nn

from nas.arch.shapes import cell_plan, ir_op_hidden, reduction_layers, sandglass_hidden
from nas.arch.spec import CellSpec, GenotypeSpec
from nas.ops.blocks import _Residual
from nas.ops.layers import Norm, drop_path, init_weights, make_norm
from nas.ops.network import Network

AUX_WEIGHT = 0.4  # auxiliary-head loss weight (official train.py)


class ReLUConvBN(nn.Module):
    """ReLU -> conv -> BN: the cell input preprocessing (1x1 in every DARTS cell)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int, norm: Norm):
        super().__init__()
        self.op = nn.Sequential(nn.ReLU(),
                                nn.Conv2d(cin, cout, kernel, stride, padding, bias=False),
                                norm(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class DilConv(nn.Module):
    """ReLU -> dilated depthwise kxk (stride s) -> 1x1 -> BN."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int,
                 dilation: int, norm: Norm):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(cin, cin, kernel, stride, padding, dilation=dilation, groups=cin,
                      bias=False),
            nn.Conv2d(cin, cout, 1, bias=False),
            norm(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class SepConv(nn.Module):
    """Two stacked (ReLU -> depthwise kxk -> 1x1 -> BN); only the first depthwise strides.

    The official op repeats the separable conv twice, which is why a DARTS "sep_conv"
    costs twice the params of a dil_conv of the same kernel.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int, norm: Norm):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(cin, cin, kernel, stride, padding, groups=cin, bias=False),
            nn.Conv2d(cin, cin, 1, bias=False),
            norm(cin),
            nn.ReLU(),
            nn.Conv2d(cin, cin, kernel, 1, padding, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1, bias=False),
            norm(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class FactorizedReduce(nn.Module):
    """Halve the resolution without losing every other pixel: ReLU, then two 1x1 stride-2
    convs to cout/2 each, the second on the input shifted by one pixel, concat, BN.

    Needs an even input resolution (the two halves must have equal sizes), as in the
    official code. Each conv reads every other pixel and runs at stride 1, which computes what
    the official stride-2 conv computes with the same weights: oneDNN's channels-last backward
    of a strided 1x1 conv (brgconv_strided, AVX2) corrupts the heap for fewer than 7 input
    channels (torch 2.13; DARTS's smoke scale has 4).
    """

    def __init__(self, cin: int, cout: int, norm: Norm):
        super().__init__()
        if cout % 2:
            raise ValueError(f"FactorizedReduce needs an even output width, got {cout}")
        self.relu = nn.ReLU()
        self.conv_1 = nn.Conv2d(cin, cout // 2, 1, bias=False)
        self.conv_2 = nn.Conv2d(cin, cout // 2, 1, bias=False)
        self.bn = norm(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x[:, :, ::2, ::2]),
                                  self.conv_2(x[:, :, 1::2, 1::2])], dim=1))


class SandglassOp(_Residual):
    """MobileNeXt's sandglass block as a cell edge (c -> c, dw 3x3 only): dw + BN + ReLU6 ->
    1x1 reduce + BN -> 1x1 expand + BN + ReLU6 -> dw (stride) + BN, plus the identity at
    stride 1. No leading ReLU: the block's shortcut and first dw read the linear input."""

    def __init__(self, c: int, stride: int, norm: Norm):
        super().__init__(c if stride == 1 else 0, 0.0, c, c)
        h = sandglass_hidden(c)
        self.op = nn.Sequential(
            nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False), norm(c), nn.ReLU6(),
            nn.Conv2d(c, h, 1, bias=False), norm(h),
            nn.Conv2d(h, c, 1, bias=False), norm(c), nn.ReLU6(),
            nn.Conv2d(c, c, 3, stride, 1, groups=c, bias=False), norm(c))

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class InvertedResidualOp(_Residual):
    """MobileNetV2's inverted residual as a cell edge (c -> c, dw 3x3): 1x1 expand x6 + BN +
    ReLU6 -> dw (stride) + BN + ReLU6 -> 1x1 project + BN, plus the identity at stride 1."""

    def __init__(self, c: int, stride: int, norm: Norm):
        super().__init__(c if stride == 1 else 0, 0.0, c, c)
        h = ir_op_hidden(c)
        self.op = nn.Sequential(
            nn.Conv2d(c, h, 1, bias=False), norm(h), nn.ReLU6(),
            nn.Conv2d(h, h, 3, stride, 1, groups=h, bias=False), norm(h), nn.ReLU6(),
            nn.Conv2d(h, c, 1, bias=False), norm(c))

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


def make_op(name: str, c: int, stride: int, norm: Norm) -> nn.Module:
    """One cell edge (width c -> c) by its spec.CELL_OPS name."""
    if name == "sandglass":
        return SandglassOp(c, stride, norm)
    if name == "inverted_residual":
        return InvertedResidualOp(c, stride, norm)
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, stride, 1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride, 1, count_include_pad=False)
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c, norm)
    if name in ("sep_conv_3x3", "sep_conv_5x5"):
        k = int(name[-1])
        return SepConv(c, c, k, stride, k // 2, norm)
    if name in ("dil_conv_3x3", "dil_conv_5x5"):
        k = int(name[-1])
        return DilConv(c, c, k, stride, k - 1, 2, norm)  # dilation 2: 'same' pad is k - 1
    raise ValueError(f"unknown DARTS cell op {name!r}")


class Cell(nn.Module):
    """A DARTS cell: inputs c_{k-2} (s0) and c_{k-1} (s1), one node per edge pair, output =
    concat of the `concat` nodes.

    In a reduction cell every edge reading input 0 or 1 has stride 2. When the previous
    cell reduced, s0 is twice the size of s1 and is brought down by a FactorizedReduce.
    """

    def __init__(self, genotype: GenotypeSpec, c_pp: int, c_p: int, c: int, reduction: bool,
                 reduction_prev: bool, norm: Norm):
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = (FactorizedReduce(c_pp, c, norm) if reduction_prev
                            else ReLUConvBN(c_pp, c, 1, 1, 0, norm))
        self.preprocess1 = ReLUConvBN(c_p, c, 1, 1, 0, norm)
        edges = genotype.reduce if reduction else genotype.normal
        concat = genotype.reduce_concat if reduction else genotype.normal_concat
        if reduction and any(i < 2 for i in concat):
            # Inputs keep their resolution while every node is halved: the concat cannot work.
            raise ValueError(f"reduce_concat {list(concat)} must not contain the cell inputs "
                             f"0 or 1 (they are not downsampled)")
        self._indices = [int(src) for _, src in edges]
        self._concat = [int(i) for i in concat]
        self.multiplier = len(self._concat)
        self._ops = nn.ModuleList(make_op(op, c, 2 if reduction and src < 2 else 1, norm)
                                  for op, src in edges)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        drop = self.training and drop_prob > 0.0
        for node in range(len(self._ops) // 2):
            total = 0
            for j in (2 * node, 2 * node + 1):
                op = self._ops[j]
                h = op(states[self._indices[j]])
                if drop and not isinstance(op, nn.Identity):
                    h = drop_path(h, drop_prob)  # identity edges are never dropped
                total = total + h
            states.append(total)
        return torch.cat([states[i] for i in self._concat], dim=1)


class AuxiliaryHeadCIFAR(nn.Module):
    """Auxiliary classifier on the 8x8 map after the second reduction (32x32 input):
    ReLU, avg pool 5 / stride 3 -> 2x2, 1x1 -> 128, 2x2 conv -> 768 (1x1), Linear.

    Other input sizes leave a map larger than 1x1 and the Linear fails, as officially.
    """

    def __init__(self, c: int, num_classes: int, norm: Norm):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(),  # the official inplace ReLU gives the same values (all consumers ReLU first)
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),
            nn.Conv2d(c, 128, 1, bias=False),
            norm(128),
            nn.ReLU(),
            nn.Conv2d(128, 768, 2, bias=False),
            norm(768),
            nn.ReLU())
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class CellNet(Network):
    """NetworkCIFAR: stem conv3x3 -> `layers` cells -> GAP -> Linear.

    Reductions (width x2) at layers//3 and 2*layers//3; the auxiliary head (spec.auxiliary)
    reads the output of cell 2*layers//3. `drop_path_prob` starts at spec.drop_path and is
    read at every forward and ramped linearly over training (`start_epoch`, as the official
    train.py assigns it per epoch). forward returns logits, or (logits, aux_logits) in
    training mode with an auxiliary head, whose loss `training_loss` adds.
    """

    def __init__(self, spec: CellSpec):
        super().__init__()
        self.spec = spec
        norm = make_norm(spec.bn.eps, spec.bn.momentum)
        self.drop_path_prob = spec.drop_path
        c_stem = spec.stem_multiplier * spec.init_channels
        self.stem = nn.Sequential(
            nn.Conv2d(spec.in_channels, c_stem, 3, padding=1, bias=False), norm(c_stem))
        self._aux_at = reduction_layers(spec.layers)[1]
        plan = list(cell_plan(spec))
        self.cells = nn.ModuleList(
            Cell(spec.genotype, c_pp, c_p, c, reduction, reduction_prev, norm)
            for _, c_pp, c_p, c, reduction, reduction_prev, _ in plan)
        c_aux = plan[self._aux_at][-1]
        self.auxiliary_head = (AuxiliaryHeadCIFAR(c_aux, spec.num_classes, norm)
                               if spec.auxiliary else None)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(plan[-1][-1], spec.num_classes)
        init_weights(self, "torch_default")

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        s0 = s1 = self.stem(x)
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self._aux_at and self.auxiliary_head is not None and self.training:
                aux = self.auxiliary_head(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        return logits if aux is None else (logits, aux)

    def training_loss(self, output, target: torch.Tensor, criterion: nn.Module) -> torch.Tensor:
        if isinstance(output, tuple):
            logits, aux = output
            return criterion(logits, target) + AUX_WEIGHT * criterion(aux, target)
        return criterion(output, target)

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self.drop_path_prob = self.spec.drop_path * epoch / max(1, epochs)
