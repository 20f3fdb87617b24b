"""LightNL (AutoNL): a parameter-light non-local block.

Dataflow of the official TF `non_local_op`: theta = first int(r*C) channels at full
resolution, phi = the same channels sub-sampled by `stride`, g = all channels
sub-sampled; y = theta phi^T g / (H*W) evaluated in the cheaper association order;
z = BN(dw3x3(y)) + x with the BN zero-initialised so the block starts as identity.
"""

from __future__ import annotations

import torch
from torch import nn

from nas.ops.layers import Norm


def lightnl_matmul_macs(ch: int, ratio: float, stride: int, h: int, w: int) -> int:
    """MACs of the two matrix products, in the cheaper order (as the block computes them)."""
    c = int(ratio * ch)
    n = h * w
    n_sub = ((h - 1) // stride + 1) * ((w - 1) // stride + 1)
    affinity_first = n * n_sub * c + n * n_sub * ch
    context_first = c * n_sub * ch + n * c * ch
    return min(affinity_first, context_first)


class LightNL(nn.Module):
    def __init__(self, ch: int, ratio: float, stride: int, *, norm: Norm):
        super().__init__()
        self.ratio, self.stride = ratio, stride
        self.keep = int(ratio * ch)
        self.dw = nn.Conv2d(ch, ch, 3, 1, 1, groups=ch, bias=False)
        self.bn = norm(ch)

    def zero_init(self) -> None:
        nn.init.zeros_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, ch, h, w = x.shape
        xs = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        theta = x[:, : self.keep].flatten(2).transpose(1, 2)  # B, N, c
        phi = xs[:, : self.keep].flatten(2)  # B, c, N'
        g = xs.flatten(2).transpose(1, 2)  # B, N', C
        n, n_sub, c = h * w, xs.shape[2] * xs.shape[3], self.keep
        if n * n_sub * (c + ch) < c * n_sub * ch + n * c * ch:
            y = torch.matmul(torch.matmul(theta, phi), g)
        else:
            y = torch.matmul(theta, torch.matmul(phi, g))
        y = (y / n).transpose(1, 2).reshape(b, ch, h, w)
        return self.bn(self.dw(y)) + x

    def extra_repr(self) -> str:
        return f"ratio={self.ratio}, stride={self.stride}"
