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


def association_macs(n: int, n_sub: int, c: int, ch: int) -> tuple[int, int]:
    """MACs of theta phi g for theta (N x c), phi (c x N'), g (N' x C) in the two orders:
    (theta phi) g and theta (phi g). The official code takes the first when it is cheaper."""
    return n * n_sub * c + n * n_sub * ch, c * n_sub * ch + n * c * ch


def lightnl_matmul_macs(ch: int, ratio: float, stride: int, h: int, w: int) -> int:
    """MACs of the two matrix products, in the cheaper order (as the block computes them)."""
    n_sub = ((h - 1) // stride + 1) * ((w - 1) // stride + 1)
    return min(association_macs(h * w, n_sub, int(ratio * ch), ch))


def nonlocal_product(theta: torch.Tensor, phi: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """theta phi g for theta (B, N, c), phi (B, c, N'), g (B, N', C), associated as the
    official code does: (theta phi) g when that is cheaper, else theta (phi g)."""
    affinity_first, context_first = association_macs(theta.shape[1], g.shape[1],
                                                     theta.shape[2], g.shape[2])
    if affinity_first < context_first:
        return torch.matmul(torch.matmul(theta, phi), g)
    return torch.matmul(theta, torch.matmul(phi, g))


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
        y = (nonlocal_product(theta, phi, g) / (h * w)).transpose(1, 2).reshape(b, ch, h, w)
        return self.bn(self.dw(y)) + x

    def extra_repr(self) -> str:
        return f"ratio={self.ratio}, stride={self.stride}"


# ----------------------------------------------------------------------------- Table 1
# The non-local variants of AutoNL's ablation (Table 1), each added after the projection of
# a block with C channels on an H x W map: the standard block with 1x1 transforms theta, phi,
# g and W_z (Wang et al.), the same evaluated in the cheaper association order (Levi et
# al.), theta shared by both sides of the affinity (Eq. 3), one shared transform (Eq. 5), no
# transform (Eq. 7), compact features (Eq. 9: the first `ratio` of the channels, keys and
# values sub-sampled by `stride`), and W_z as a depthwise 3x3 (Eq. 8): LightNL.
NL_VARIANTS = ("wang", "levi", "eq3", "eq5", "eq7", "eq9", "lightnl")
_TRANSFORMS = {"wang": 3, "levi": 3, "eq3": 2, "eq5": 1, "eq7": 0, "eq9": 0, "lightnl": 0}


def nonlocal_macs(variant: str, ch: int, h: int, w: int, *, ratio: float = 1.0,
                  stride: int = 1) -> int:
    """MACs a non-local variant adds: its 1x1 transforms, the two matrix products and W_z
    (ratio and stride apply to eq9 and lightnl only)."""
    n = h * w
    transforms = _TRANSFORMS[variant] * ch * ch * n
    if variant == "wang":
        products = 2 * n * n * ch                        # (theta phi^T) g, as written
    elif variant in ("eq9", "lightnl"):
        products = lightnl_matmul_macs(ch, ratio, stride, h, w)
    else:
        products = lightnl_matmul_macs(ch, 1.0, 1, h, w)  # the cheaper order
    w_z = 9 * ch * n if variant == "lightnl" else ch * ch * n
    return transforms + products + w_z


class NonLocalVariant(nn.Module):
    """One of NL_VARIANTS as a module: z = W_z(y) + x with y = theta phi^T g / (H W)."""

    def __init__(self, variant: str, ch: int, *, ratio: float = 1.0, stride: int = 1):
        super().__init__()
        if variant not in NL_VARIANTS:
            raise ValueError(f"variant: expected one of {', '.join(NL_VARIANTS)}, got {variant!r}")
        self.variant = variant
        compact = variant in ("eq9", "lightnl")
        self.keep = int(ratio * ch) if compact else ch
        self.stride = stride if compact else 1
        self.transforms = nn.ModuleList(nn.Conv2d(ch, ch, 1, bias=False)
                                        for _ in range(_TRANSFORMS[variant]))
        self.w_z = (nn.Conv2d(ch, ch, 3, 1, 1, groups=ch, bias=False) if variant == "lightnl"
                    else nn.Conv2d(ch, ch, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, ch, h, w = x.shape
        t = [m(x) for m in self.transforms]
        # theta, phi, g: three transforms (wang, levi); theta shared by both sides (eq3);
        # one transform for all three (eq5); x itself (eq7, eq9, lightnl).
        theta, phi, g = {3: lambda: t, 2: lambda: (t[0], t[0], t[1]),
                         1: lambda: (t[0], t[0], t[0]), 0: lambda: (x, x, x)}[len(t)]()
        s = self.stride
        phi, g = (phi[:, :, ::s, ::s], g[:, :, ::s, ::s]) if s > 1 else (phi, g)
        theta = theta[:, :self.keep].flatten(2).transpose(1, 2)
        phi = phi[:, :self.keep].flatten(2)
        g = g.flatten(2).transpose(1, 2)
        if self.variant == "wang":
            y = torch.matmul(torch.matmul(theta, phi), g)
        else:
            y = nonlocal_product(theta, phi, g)
        y = (y / (h * w)).transpose(1, 2).reshape(b, ch, h, w)
        return self.w_z(y) + x
