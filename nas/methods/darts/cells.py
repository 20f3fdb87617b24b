"""DARTS's relaxed cell search network (quark0/darts cnn/model_search.py) on the supernet protocol.

Every edge of a cell's DAG (2 inputs, 4 intermediate nodes, 2 + 3 + 4 + 5 = 14 edges) is a
softmax-weighted mixture of all operations; two architecture tensors (normal, reduction),
each 14 x |ops|, are shared by all cells of their kind. BN in the cells has no affine
parameters and pooling is followed by such a BN, as officially (the stem's BN is affine,
as in the official search network). The genotype keeps, per node, the two incoming edges
with the largest non-`none` weight and the arg-max non-`none` operation on each.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Iterable, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from nas.arch.shapes import cell_plan
from nas.arch.spec import CELL_OPS, CellSpec, GenotypeSpec
from nas.ops.darts import FactorizedReduce, ReLUConvBN, make_op
from nas.supernet.base import Exported, resolve_choice
from nas.supernet.bn import recalibrate_bn
from nas.supernet.space import Decision, SearchSpace

# DARTS's PRIMITIVES, in the official order (the columns of the architecture tensors).
DARTS_OPS = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
             "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
OP_SETS = {"darts": DARTS_OPS}
# MobileNeXt's two readings of "+IR" (its supplementary B): the inverted-residual block added
# as one more candidate (Table 9: 8 operators), or taking the place of the depthwise-separable
# candidate. The footnote keeps both blocks at dw 3x3 and Table 11 counts 7 operators beside
# none for every space, so it replaces sep_conv_3x3 (in its column) and sep_conv_5x5 stays.
PRESETS = {
    "darts": DARTS_OPS,
    "darts+sandglass": (*DARTS_OPS, "sandglass"),
    "darts+ir_added": (*DARTS_OPS, "inverted_residual"),
    "darts+ir_replacing": tuple("inverted_residual" if op == "sep_conv_3x3" else op
                                for op in DARTS_OPS),
}
NODES = 4                      # intermediate nodes per cell
EDGES = sum(2 + i for i in range(NODES))  # 14
PARAMETER_FREE = ("max_pool_3x3", "avg_pool_3x3", "skip_connect")


def parse_ops(value: Union[str, Sequence[str]]) -> tuple[str, ...]:
    """The candidate operations: a preset (`darts`, `darts+sandglass`, `darts+ir_added`,
    `darts+ir_replacing`), op sets and op names joined by '+' (`none+sep_conv_3x3+sandglass`),
    or a list of op names (Hydra's `'method.ops=[none,skip_connect,sandglass]'`); in order,
    each once. ValueError names what is wrong."""
    if isinstance(value, str):
        if value in PRESETS:
            return PRESETS[value]
        tokens = [t.strip() for t in value.split("+")]
    elif isinstance(value, Sequence) and all(isinstance(t, str) for t in value):
        tokens = list(value)
    else:
        raise ValueError(f"expected a preset ({', '.join(PRESETS)}), op names joined by '+', "
                         f"or a list of op names, got {value!r}")
    ops: list[str] = []
    for token in tokens:
        names = OP_SETS.get(token, (token,))
        for name in names:
            if name != "none" and name not in CELL_OPS:
                raise ValueError(f"unknown operation {name!r}: expected a preset "
                                 f"({', '.join(PRESETS)}), an op set ({', '.join(OP_SETS)}) "
                                 f"or one of none, {', '.join(CELL_OPS)}")
            if name in ops:
                raise ValueError(f"operation {name!r} given twice")
            ops.append(name)
    if not any(op != "none" for op in ops):
        raise ValueError("the operations need at least one besides none")
    return tuple(ops)


def ops_label(value: Union[str, Sequence[str]]) -> str:
    """`method.ops` as one name: a preset or '+'-joined text as given, a list joined by '+'."""
    return value if isinstance(value, str) else "+".join(value)


def edge_inputs() -> list[tuple[int, int]]:
    """(node, input) of the 14 edges in the official order: node 2 reads 0, 1; node 3 reads
    0, 1, 2; ..."""
    return [(2 + i, j) for i in range(NODES) for j in range(2 + i)]


class CellSearchSpace(SearchSpace):
    """Genotypes of `ops`: per cell kind, intermediate node and kept edge, one (op, input).

    `template` is the evaluation network the genotype is placed in (cells, channels,
    auxiliary head, drop path); its genotype is replaced.
    """

    KINDS = ("normal", "reduce")

    def __init__(self, ops: Sequence[str], template: CellSpec):
        self.ops = tuple(ops)
        self.template = template
        decisions = []
        for kind in self.KINDS:
            for node in range(2, 2 + NODES):
                cands = tuple((op, src) for src in range(node) for op in self.ops if op != "none")
                decisions += [Decision(f"{kind}.node{node}.{k}", cands) for k in range(2)]
        super().__init__(decisions)

    def genotype(self, vector: Sequence[int]) -> GenotypeSpec:
        chosen = list(self.decode(vector).values())
        half = len(chosen) // 2
        concat = list(range(2, 2 + NODES))
        return GenotypeSpec(normal=[tuple(e) for e in chosen[:half]], normal_concat=concat,
                            reduce=[tuple(e) for e in chosen[half:]], reduce_concat=list(concat))

    def to_spec(self, vector: Sequence[int], name: Optional[str] = None) -> CellSpec:
        return replace(self.template, genotype=self.genotype(vector),
                       name=name or self.template.name)

    def vector(self, genotype: GenotypeSpec) -> list[int]:
        edges = list(genotype.normal) + list(genotype.reduce)
        return self.encode({d.name: tuple(e) for d, e in zip(self.decisions, edges)})


def derive(weights: torch.Tensor, ops: Sequence[str]) -> list[tuple[str, int]]:
    """The genotype edges of one cell kind from its (14, |ops|) softmax weights: per node the
    two inputs whose strongest non-`none` weight is largest (ties: the earlier input), each
    with its arg-max non-`none` operation (ties: the earlier op)."""
    w = weights.detach().cpu().double()
    keep = [k for k, op in enumerate(ops) if op != "none"]
    edges, start = [], 0
    for i in range(NODES):
        rows = w[start:start + 2 + i][:, keep]
        strength = rows.max(dim=1).values.tolist()
        inputs = sorted(range(2 + i), key=lambda j: -strength[j])[:2]
        for j in inputs:
            row = rows[j].tolist()
            best = max(range(len(keep)), key=lambda k: (row[k], -k))
            edges.append((ops[keep[best]], j))
        start += 2 + i
    return edges


class _Zero(nn.Module):
    """`none`: zeros at the edge's output size (never run by MixedOp; kept for completeness
    of the op list so op k is column k of the architecture tensor)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, ::self.stride, ::self.stride].mul(0.0)


class MixedOp(nn.Module):
    """Sum over the ops of softmax weight x op(x). `none` contributes exactly zero to the
    output, so it is skipped; its weight still takes its share of the softmax."""

    def __init__(self, ops: Sequence[str], c: int, stride: int, norm):
        super().__init__()
        mods = []
        for name in ops:
            if name == "none":
                mods.append(_Zero(stride))
                continue
            op = make_op(name, c, stride, norm)
            if "pool" in name:
                op = nn.Sequential(op, norm(c))
            mods.append(op)
        self._ops = nn.ModuleList(mods)
        self._run = [k for k, name in enumerate(ops) if name != "none"]

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return sum(weights[k] * self._ops[k](x) for k in self._run)


class SearchCell(nn.Module):
    def __init__(self, ops: Sequence[str], c_pp: int, c_p: int, c: int, reduction: bool,
                 reduction_prev: bool, norm):
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = (FactorizedReduce(c_pp, c, norm) if reduction_prev
                            else ReLUConvBN(c_pp, c, 1, 1, 0, norm))
        self.preprocess1 = ReLUConvBN(c_p, c, 1, 1, 0, norm)
        self._ops = nn.ModuleList(MixedOp(ops, c, 2 if reduction and src < 2 else 1, norm)
                                  for _, src in edge_inputs())

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for i in range(NODES):
            states.append(sum(self._ops[offset + j](h, weights[offset + j])
                              for j, h in enumerate(states)))
            offset += len(states) - 1
        return torch.cat(states[-NODES:], dim=1)


class CellSupernet(nn.Module):
    """The DARTS search network: stem conv 3x3 -> `layers` search cells (reductions at
    layers // 3 and 2 layers // 3) -> GAP -> Linear, and the two architecture tensors."""

    def __init__(self, space: CellSearchSpace, *, channels: int = 16, layers: int = 8,
                 stem_multiplier: int = 3):
        super().__init__()
        self.space = space
        self.ops = space.ops
        spec = space.template
        norm = partial(nn.BatchNorm2d, affine=False)
        c_stem = stem_multiplier * channels
        self.stem = nn.Sequential(nn.Conv2d(spec.in_channels, c_stem, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(c_stem))
        # The evaluation network's plan at the search width and depth (every search cell
        # concatenates its NODES nodes, as the template's genotype does).
        plan = list(cell_plan(replace(spec, init_channels=channels, layers=layers,
                                      stem_multiplier=stem_multiplier)))
        self.cells = nn.ModuleList(
            SearchCell(self.ops, c_pp, c_p, c, reduction, reduction_prev, norm)
            for _, c_pp, c_p, c, reduction, reduction_prev, _ in plan)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(plan[-1][-1], spec.num_classes)
        n = len(self.ops)
        self.alphas_normal = nn.Parameter(1e-3 * torch.randn(EDGES, n))
        self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(EDGES, n))

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alphas_normal, self.alphas_reduce]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def named_weight_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(k, p) for k, p in self.named_parameters() if not k.startswith("alphas_")]

    def mixture_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Softmax over the ops of each edge: (normal, reduce), each (14, |ops|)."""
        return F.softmax(self.alphas_normal, dim=-1), F.softmax(self.alphas_reduce, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normal, reduce = self.mixture_weights()
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, reduce if cell.reduction else normal)
        return self.classifier(self.global_pooling(s1).flatten(1))

    def genotype(self) -> GenotypeSpec:
        normal, reduce = self.mixture_weights()
        concat = list(range(2, 2 + NODES))
        return GenotypeSpec(normal=derive(normal, self.ops), normal_concat=concat,
                            reduce=derive(reduce, self.ops), reduce_concat=list(concat))

    def choice(self) -> list[int]:
        """The derived genotype as a decision vector of `space`."""
        return self.space.vector(self.genotype())

    def export(self, choice: Optional[Sequence[int]] = None,
               name: Optional[str] = None) -> Exported:
        """The derived genotype (or `choice`) in the evaluation network; weights are not
        inherited (DARTS trains the evaluation network from scratch)."""
        vector = resolve_choice(self, choice, any_choice=True)
        return Exported(self.space.to_spec(vector, name), None)

    def recalibrate(self, batches: Iterable, steps: int,
                    choice: Optional[Sequence[int]] = None,
                    device: torch.device | str | None = None) -> int:
        """Re-estimate the mixture network's BN statistics: the whole relaxed network runs,
        whose pick is its derived genotype (another genotype is not a path of it)."""
        resolve_choice(self, choice, any_choice=False)
        return recalibrate_bn(self, batches, steps, device)
