"""Semantic checks of a typed spec: every network it describes can be built.

Each failure raises SpecError naming the field path (e.g. ``blocks[3].residual``) and
what was expected.
"""

from __future__ import annotations

from nas.arch.shapes import ir_hidden, iter_blocks
from nas.arch.spec import (ACTIVATIONS, CELL_OPS, CLASSIFIERS, GATES, INIT_SCHEMES, RESIDUALS,
                           SANDGLASS_FORMS, CellSpec, ChainSpec, ConvSpec, InvertedResidualSpec,
                           MixedKernelSpec, SandglassSpec, SeparableSpec, SESpec, SpecError)


def _fail(where: str, expected: str, got: object) -> None:
    raise SpecError(f"{where}: expected {expected}, got {got!r}")


def _positive(where: str, value: int) -> None:
    if value < 1:
        _fail(where, "a positive integer", value)


def _kernel(where: str, k: int) -> None:
    if k < 1 or k % 2 == 0:
        _fail(where, "an odd kernel size >= 1", k)


def _stride(where: str, s: int) -> None:
    if s not in (1, 2):
        _fail(where, "stride 1 or 2", s)


def _act(where: str, act: str) -> None:
    if act not in ACTIVATIONS:
        _fail(where, f"one of {list(ACTIVATIONS)}", act)


def _rate(where: str, p: float) -> None:
    if not 0.0 <= p < 1.0:
        _fail(where, "a rate in [0, 1)", p)


def _choice(where: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        _fail(where, f"one of {list(options)}", value)


def _conv(where: str, c: ConvSpec, pointwise: bool = False) -> None:
    _positive(f"{where}.out", c.out)
    if pointwise and c.kernel != 1:
        _fail(f"{where}.kernel", "1 (head layers are 1x1 convs)", c.kernel)
    _kernel(f"{where}.kernel", c.kernel)
    _stride(f"{where}.stride", c.stride)
    _act(f"{where}.act", c.act)


def _se(where: str, se: SESpec | None) -> None:
    if se is None:
        return
    _positive(f"{where}.reduce", se.reduce)
    _act(f"{where}.act", se.act)
    _choice(f"{where}.gate", se.gate, GATES)


def _residual(where: str, rule: str, in_ch: int, out: int, stride: int,
              allowed: tuple[str, ...] = RESIDUALS) -> None:
    _choice(where, rule, allowed)
    shape = f"(got in={in_ch}, out={out}, stride={stride})"
    if rule == "identity" and (stride != 1 or in_ch != out):
        raise SpecError(f"{where}: 'identity' needs stride 1 and in == out {shape}")
    if rule == "partial" and (stride != 1 or in_ch > out):
        raise SpecError(f"{where}: 'partial' needs stride 1 and in <= out {shape}")


def _groups(where: str, groups: int, *channels: int) -> None:
    _positive(where, groups)
    bad = [c for c in channels if c % groups]
    if bad:
        _fail(where, f"a divisor of the 1x1 conv widths {list(channels)}", groups)


def _ir(w: str, b: InvertedResidualSpec, in_ch: int) -> None:
    if (b.expansion is None) == (b.hidden is None):
        raise SpecError(f"{w}: expected exactly one of 'expansion' or 'hidden', "
                        f"got expansion={b.expansion!r}, hidden={b.hidden!r}")
    if b.expansion is not None and b.expansion <= 0:
        _fail(f"{w}.expansion", "a positive number", b.expansion)
    hidden = ir_hidden(b, in_ch)
    _positive(f"{w}.hidden", hidden)
    if not b.expand and hidden != in_ch:
        raise SpecError(f"{w}.hidden: without an expand conv the hidden width must equal the "
                        f"input width {in_ch}, got {hidden}")
    _kernel(f"{w}.kernel", b.kernel)
    for pos in ("act_expand", "act_dw", "act_post"):
        _act(f"{w}.{pos}", getattr(b, pos))
    _se(f"{w}.se", b.se)
    _residual(f"{w}.residual", b.residual, in_ch, b.out, b.stride)
    if b.lightnl is not None:
        nl = b.lightnl
        if not 0.0 < nl.ratio <= 1.0 or int(nl.ratio * b.out) < 1:
            raise SpecError(f"{w}.lightnl.ratio: expected a ratio in (0, 1] keeping at least one "
                            f"of {b.out} channels, got {nl.ratio!r}")
        _stride(f"{w}.lightnl.stride", nl.stride)


def _mixed(w: str, b: MixedKernelSpec, in_ch: int) -> None:
    if len(b.kernels) != len(b.hidden) or not b.kernels:
        raise SpecError(f"{w}.hidden: expected one channel count per kernel "
                        f"({len(b.kernels)} kernels), got {b.hidden!r}")
    for j, k in enumerate(b.kernels):
        _kernel(f"{w}.kernels[{j}]", k)
    if len(set(b.kernels)) != len(b.kernels):
        _fail(f"{w}.kernels", "distinct kernel sizes", b.kernels)
    for j, h in enumerate(b.hidden):
        if h < 0:
            _fail(f"{w}.hidden[{j}]", "a channel count >= 0", h)
    _act(f"{w}.act", b.act)
    _se(f"{w}.se", b.se)
    if sum(b.hidden) == 0:
        if b.stride != 1 or in_ch != b.out:
            raise SpecError(f"{w}.hidden: all groups are empty, so the block is the identity, "
                            f"which needs stride 1 and in == out (got in={in_ch}, out={b.out}, "
                            f"stride={b.stride})")
    elif not b.expand and sum(b.hidden) != in_ch:
        raise SpecError(f"{w}.hidden: without an expand conv the groups must cover the "
                        f"{in_ch} input channels, got {b.hidden!r}")
    _residual(f"{w}.residual", b.residual, in_ch, b.out, b.stride, ("none", "identity"))


def _sandglass(w: str, b: SandglassSpec, in_ch: int) -> None:
    _positive(f"{w}.reduced", b.reduced)
    _kernel(f"{w}.kernel", b.kernel)
    _choice(f"{w}.form", b.form, SANDGLASS_FORMS)
    if b.form == "pw_pw" and b.stride != 1:
        raise SpecError(f"{w}.stride: form 'pw_pw' has no depthwise conv to carry stride "
                        f"{b.stride}; expected stride 1 or form 'full'/'pw_pw_dw'")
    _act(f"{w}.act", b.act)
    _groups(f"{w}.groups", b.groups, in_ch, b.reduced, b.out)
    _se(f"{w}.se", b.se)
    _residual(f"{w}.residual", b.residual, in_ch, b.out, b.stride, ("none", "identity"))
    _positive(f"{w}.identity_div", b.identity_div)
    if b.out // b.identity_div < 1:
        _fail(f"{w}.identity_div", f"at most the block width {b.out}", b.identity_div)


def _dwsep(w: str, b: SeparableSpec, in_ch: int) -> None:
    _kernel(f"{w}.kernel", b.kernel)
    _act(f"{w}.act_dw", b.act_dw)
    _act(f"{w}.act_pw", b.act_pw)


_BLOCK_CHECKS = {InvertedResidualSpec: _ir, MixedKernelSpec: _mixed, SandglassSpec: _sandglass,
                 SeparableSpec: _dwsep}


def _common(spec: ChainSpec | CellSpec) -> None:
    if not spec.name:
        _fail("name", "a non-empty name", spec.name)
    _positive("num_classes", spec.num_classes)
    _positive("input_size", spec.input_size)
    _positive("in_channels", spec.in_channels)
    if spec.bn.eps <= 0:
        _fail("bn.eps", "a positive number", spec.bn.eps)
    if not 0.0 <= spec.bn.momentum <= 1.0:
        _fail("bn.momentum", "a momentum in [0, 1] (PyTorch convention)", spec.bn.momentum)
    _rate("drop_path", spec.drop_path)


def validate_chain(spec: ChainSpec) -> None:
    _common(spec)
    _choice("init", spec.init, INIT_SCHEMES)
    _conv("stem", spec.stem)
    if not spec.blocks:
        _fail("blocks", "at least one block", spec.blocks)
    for i, block, in_ch, _ in iter_blocks(spec):
        w = f"blocks[{i}]"
        _positive(f"{w}.out", block.out)
        _stride(f"{w}.stride", block.stride)
        _BLOCK_CHECKS[type(block)](w, block, in_ch)
    for name in ("pre_pool", "post_pool"):
        for j, c in enumerate(getattr(spec.head, name)):
            _conv(f"head.{name}[{j}]", c, pointwise=True)
    _rate("head.dropout", spec.head.dropout)
    _choice("head.classifier", spec.head.classifier, CLASSIFIERS)
    if spec.head.unused_bn < 0:
        _fail("head.unused_bn", "a channel count >= 0", spec.head.unused_bn)


def _cell_edges(where: str, edges: list, concat: list[int]) -> None:
    if not edges or len(edges) % 2:
        _fail(where, "two (op, input) edges per intermediate node", len(edges))
    for j, (op, src) in enumerate(edges):
        node = j // 2
        if op not in CELL_OPS:
            _fail(f"{where}[{j}][0]", f"one of {list(CELL_OPS)}", op)
        if not 0 <= src < node + 2:
            _fail(f"{where}[{j}][1]", f"an input index in [0, {node + 1}] for node {node + 2}",
                  src)
    n_states = len(edges) // 2 + 2
    if not concat or any(not 0 <= c < n_states for c in concat):
        _fail(f"{where}_concat", f"node indices in [0, {n_states - 1}]", concat)


def validate_cell(spec: CellSpec) -> None:
    _common(spec)
    _cell_edges("genotype.normal", spec.genotype.normal, spec.genotype.normal_concat)
    _cell_edges("genotype.reduce", spec.genotype.reduce, spec.genotype.reduce_concat)
    if any(c < 2 for c in spec.genotype.reduce_concat):
        _fail("genotype.reduce_concat", "intermediate nodes only (>= 2): the cell inputs keep "
              "their resolution in a reduction cell", spec.genotype.reduce_concat)
    if spec.input_size % 4:
        _fail("input_size", "a multiple of 4 (each reduction cell halves an even map)",
              spec.input_size)
    if spec.auxiliary and spec.input_size != 32:
        _fail("auxiliary", "false unless input_size is 32 (the CIFAR auxiliary head needs the "
              "8x8 map after two reductions)", spec.auxiliary)
    _positive("init_channels", spec.init_channels)
    if spec.init_channels % 2:
        _fail("init_channels", "an even width (factorized reduce halves it)", spec.init_channels)
    _positive("layers", spec.layers)
    _positive("stem_multiplier", spec.stem_multiplier)


def validate(spec: ChainSpec | CellSpec) -> None:
    (validate_chain if isinstance(spec, ChainSpec) else validate_cell)(spec)
