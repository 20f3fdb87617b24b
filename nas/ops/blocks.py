"""The chain-network blocks, each built from its spec dataclass and input width."""

from __future__ import annotations

import torch
from torch import nn

from nas.arch.shapes import ir_hidden
from nas.arch.spec import (InvertedResidualSpec, MixedKernelSpec, SandglassSpec, SeparableSpec,
                           SESpec)
from nas.ops.layers import ConvBNAct, DropPath, Norm, SqueezeExcite, depthwise, make_act
from nas.ops.lightnl import LightNL


def _se(se: SESpec | None, ch: int, norm: Norm) -> nn.Module:
    if se is None:
        return nn.Identity()
    return SqueezeExcite(ch, se.reduce, act=se.act, gate=se.gate, norm=norm if se.bn else None)


class _Residual(nn.Module):
    """Body plus an optional shortcut over the first `shortcut` channels, with drop path.

    A shortcut covering every channel of input and output is a plain add; otherwise the
    input's first `shortcut` channels are added to the output's (ReXNet's partial
    shortcut, MobileNeXt's identity tensor multiplier).
    """

    def __init__(self, shortcut: int, drop_path: float, cin: int, cout: int):
        super().__init__()
        self.shortcut = shortcut
        self.full_shortcut = shortcut == cin == cout
        self.drop_path = DropPath(drop_path) if shortcut else nn.Identity()

    def body(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.add_shortcut(self.body(x), x)

    def add_shortcut(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The block's output from its body's output `out` and its input `x`."""
        if not self.shortcut:
            return out
        out = self.drop_path(out)
        if self.full_shortcut:
            return out + x
        c = self.shortcut
        return torch.cat([out[:, :c] + x[:, :c], out[:, c:]], dim=1)


class InvertedResidual(_Residual):
    """[1x1 expand] -> dw -> [SE] -> act_post -> 1x1 project + BN -> [LightNL] -> residual."""

    def __init__(self, spec: InvertedResidualSpec, cin: int, *, norm: Norm, drop_path: float = 0.0):
        super().__init__(0 if spec.residual == "none" else cin, drop_path, cin, spec.out)
        hidden = ir_hidden(spec, cin)
        self.expand = (ConvBNAct(cin, hidden, act=spec.act_expand, norm=norm)
                       if spec.expand else nn.Identity())
        self.dw = depthwise(hidden, spec.kernel, spec.stride, act=spec.act_dw, norm=norm)
        self.se = _se(spec.se, hidden, norm)
        self.post = make_act(spec.act_post)
        self.project = ConvBNAct(hidden, spec.out, act="none", norm=norm)
        self.lightnl = (LightNL(spec.out, spec.lightnl.ratio, spec.lightnl.stride, norm=norm)
                        if spec.lightnl else nn.Identity())

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.lightnl(self.project(self.post(self.se(self.dw(self.expand(x))))))


class MixedKernel(_Residual):
    """AtomNAS block in its fused form: one 1x1 expand to sum(hidden) channels, split into
    kernel groups (dw k x k + BN + act each), concat, [SE], one 1x1 project + BN.

    The official unfused form (per-group projections summed, then one BN) computes the
    same function with the same parameters; empty groups are dropped.
    """

    def __init__(self, spec: MixedKernelSpec, cin: int, *, norm: Norm, drop_path: float = 0.0):
        super().__init__(cin if spec.residual == "identity" else 0, drop_path, cin, spec.out)
        groups = [(k, h) for k, h in zip(spec.kernels, spec.hidden) if h > 0]
        self.splits = [h for _, h in groups]
        total = sum(self.splits)
        self.is_identity = total == 0
        if self.is_identity:
            self.shortcut = 0  # the whole block is x -> x
            return
        self.expand = ConvBNAct(cin, total, act=spec.act, norm=norm) if spec.expand else nn.Identity()
        self.dws = nn.ModuleList(depthwise(h, k, spec.stride, act=spec.act, norm=norm)
                                 for k, h in groups)
        self.se = _se(spec.se, total, norm)
        self.project = ConvBNAct(total, spec.out, act="none", norm=norm)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_identity:
            return x
        parts = self.expand(x).split(self.splits, dim=1)
        h = torch.cat([dw(p) for dw, p in zip(self.dws, parts)], dim=1)
        return self.project(self.se(h))


class Sandglass(_Residual):
    """MobileNeXt sandglass block: [dw + BN + act] -> 1x1 reduce + BN -> 1x1 expand + BN + act
    -> [dw (stride) + BN] -> [SE]; identity on the first out // identity_div channels."""

    def __init__(self, spec: SandglassSpec, cin: int, *, norm: Norm, drop_path: float = 0.0):
        shortcut = spec.out // spec.identity_div if spec.residual == "identity" else 0
        super().__init__(shortcut, drop_path, cin, spec.out)
        full = spec.form == "full"
        self.dw1 = depthwise(cin, spec.kernel, 1, act=spec.act, norm=norm) if full else nn.Identity()
        self.reduce = ConvBNAct(cin, spec.reduced, act="none", norm=norm, groups=spec.groups)
        self.expand = ConvBNAct(spec.reduced, spec.out, act=spec.act, norm=norm, groups=spec.groups)
        self.dw2 = (depthwise(spec.out, spec.kernel, spec.stride, act="none", norm=norm)
                    if spec.form != "pw_pw" else nn.Identity())
        self.se = _se(spec.se, spec.out, norm)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(self.dw2(self.expand(self.reduce(self.dw1(x)))))


class Separable(nn.Sequential):
    """MobileNetV1 block: dw k x k + BN + act_dw -> 1x1 + BN + act_pw."""

    def __init__(self, spec: SeparableSpec, cin: int, *, norm: Norm, drop_path: float = 0.0):
        super().__init__(depthwise(cin, spec.kernel, spec.stride, act=spec.act_dw, norm=norm),
                         ConvBNAct(cin, spec.out, act=spec.act_pw, norm=norm))


BLOCKS: dict[type, type] = {
    InvertedResidualSpec: InvertedResidual,
    MixedKernelSpec: MixedKernel,
    SandglassSpec: Sandglass,
    SeparableSpec: Separable,
}
