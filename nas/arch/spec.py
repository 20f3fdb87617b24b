"""ArchSpec: the plain-data contract between searches, training and cost models.

A spec holds everything needed to build a network and nothing that refers to code.
Every field that differs between papers (activations, BN constants, init scheme,
residual rule, SE form) is an explicit field; defaults exist only where one value
serves every paper (no SE, no LightNL, no drop path).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

class SpecError(ValueError):
    """A spec that cannot describe a network; the message is one line."""


ACTIVATIONS = ("none", "relu", "relu6", "hswish", "swish")
GATES = ("sigmoid", "hsigmoid")
INIT_SCHEMES = ("torch_default", "torchvision", "tf_mnas")
RESIDUALS = ("none", "identity", "partial")
SANDGLASS_FORMS = ("full", "pw_pw", "pw_pw_dw")
CLASSIFIERS = ("linear", "conv")
# Operations of DARTS evaluation cells ("none" exists only in the search space), with the
# MobileNeXt comparison's two blocks (nas.ops.darts: their widths and why).
CELL_OPS = ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
            "dil_conv_3x3", "dil_conv_5x5", "sandglass", "inverted_residual")


@dataclass(kw_only=True)
class BatchNormSpec:
    """BatchNorm constants in PyTorch convention (momentum = 1 - TF decay)."""

    eps: float
    momentum: float


@dataclass(kw_only=True)
class ConvSpec:
    """A conv [+ BN] [+ activation] layer, used by stems and heads."""

    out: int
    kernel: int = 1
    stride: int = 1
    act: str
    bn: bool = True
    bias: bool = False


@dataclass(kw_only=True)
class SESpec:
    """Squeeze-and-excitation: GAP -> 1x1 (bias) [-> BN] -> act -> 1x1 (bias) -> gate."""

    reduce: int
    act: str
    gate: str
    bn: bool = False


@dataclass(kw_only=True)
class LightNLSpec:
    """LightNL (AutoNL): first int(ratio*C) channels, key/value maps sub-sampled by stride."""

    ratio: float
    stride: int


@dataclass(kw_only=True)
class InvertedResidualSpec:
    """[1x1 expand] -> dw kxk -> [SE] -> act_post -> 1x1 project -> [LightNL] -> residual.

    Exactly one of `expansion` (hidden = int(round(in * expansion))) or `hidden` is set.
    residual: "none", "identity" (needs stride 1 and in == out) or "partial"
    (ReXNet: input added to the first `in` output channels; needs stride 1, in <= out).
    """

    type: Literal["ir"] = "ir"
    out: int
    kernel: int
    stride: int
    expand: bool
    expansion: float | None = None
    hidden: int | None = None
    act_expand: str
    act_dw: str
    act_post: str
    se: SESpec | None = None
    residual: str
    lightnl: LightNLSpec | None = None


@dataclass(kw_only=True)
class MixedKernelSpec:
    """AtomNAS block: per-kernel groups of hidden channels, summed projections, one BN.

    hidden[i] channels use kernels[i]; a group with 0 channels is absent and a block
    whose groups are all 0 is the identity (stride 1, in == out). With expand false the
    depthwise convs act on the input directly (sum(hidden) must equal in).
    """

    type: Literal["mixed"] = "mixed"
    out: int
    stride: int
    kernels: list[int]
    hidden: list[int]
    expand: bool
    act: str
    se: SESpec | None = None
    residual: str


@dataclass(kw_only=True)
class SandglassSpec:
    """MobileNeXt sandglass block.

    form: "full" (dw -> 1x1 reduce -> 1x1 expand -> dw), "pw_pw" (the two 1x1 only) or
    "pw_pw_dw"; the stride sits on the last depthwise conv. `groups` applies to the
    1x1 convs. residual "identity" adds the first out // identity_div input channels
    (the identity tensor multiplier is 1 / identity_div). An SE, when present, acts on
    the block output before the shortcut (MobileNeXt on EfficientNet).
    """

    type: Literal["sandglass"] = "sandglass"
    out: int
    reduced: int
    stride: int
    kernel: int
    form: str
    act: str
    groups: int = 1
    se: SESpec | None = None
    residual: str
    identity_div: int = 1


@dataclass(kw_only=True)
class SeparableSpec:
    """MobileNetV1 depthwise-separable block: dw kxk + BN + act_dw -> 1x1 + BN + act_pw."""

    type: Literal["dwsep"] = "dwsep"
    out: int
    kernel: int
    stride: int
    act_dw: str
    act_pw: str


BlockSpec = Union[InvertedResidualSpec, MixedKernelSpec, SandglassSpec, SeparableSpec]
BLOCK_TYPES: dict[str, type] = {
    "ir": InvertedResidualSpec,
    "mixed": MixedKernelSpec,
    "sandglass": SandglassSpec,
    "dwsep": SeparableSpec,
}


@dataclass(kw_only=True)
class HeadSpec:
    """Layers after the last block.

    pre_pool: 1x1 conv layers on the feature map; post_pool: 1x1 conv layers on the
    pooled 1x1 map (MoGA, ReXNet-lite); then dropout and the classifier, a Linear or a
    biased 1x1 conv. unused_bn > 0 records a BatchNorm of that width that the official
    code constructs but never applies (MobileNeXt on EfficientNet); it only adds params.
    """

    pre_pool: list[ConvSpec] = field(default_factory=list)
    post_pool: list[ConvSpec] = field(default_factory=list)
    dropout: float
    classifier: str
    unused_bn: int = 0


@dataclass(kw_only=True)
class ChainSpec:
    """A stand-alone chain network: stem conv, blocks, head.

    drop_path is the largest stochastic-depth rate; block i of n uses drop_path * i / n
    on its residual branch (EfficientNet's drop-connect).
    """

    family: Literal["chain"] = "chain"
    name: str
    num_classes: int
    input_size: int
    in_channels: int = 3
    bn: BatchNormSpec
    init: str
    stem: ConvSpec
    blocks: list[BlockSpec]
    head: HeadSpec
    drop_path: float = 0.0


@dataclass(kw_only=True)
class GenotypeSpec:
    """DARTS genotype: two (op, input) edges per intermediate node, in node order."""

    normal: list[tuple[str, int]]
    normal_concat: list[int]
    reduce: list[tuple[str, int]]
    reduce_concat: list[int]


@dataclass(kw_only=True)
class CellSpec:
    """A DARTS evaluation network of `layers` cells; reductions at layers//3, 2*layers//3."""

    family: Literal["cell"] = "cell"
    name: str
    num_classes: int
    input_size: int
    in_channels: int = 3
    bn: BatchNormSpec
    genotype: GenotypeSpec
    init_channels: int
    layers: int
    stem_multiplier: int = 3
    auxiliary: bool
    drop_path: float = 0.0


ArchSpec = Union[ChainSpec, CellSpec]
FAMILIES: dict[str, type] = {"chain": ChainSpec, "cell": CellSpec}
