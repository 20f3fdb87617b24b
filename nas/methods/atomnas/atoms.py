"""AtomNAS atoms: which channels are searched, what each costs, the L1 penalty on their BN
scales, and the rule that decides which dead atoms a shrink removes (specs.md 2.4).

An atom is one hidden channel of a kernel group of an expanded mixed block: its 1x1 expand
output, its depthwise channel and its 1x1 project input. Its importance alpha is the scale of
the BN right after the depthwise conv.

The penalty weights are fixed once from the supernet at the start of the run: the normaliser
is computed then and shrinking does not change it. A per-atom cost depends only on the block's
input/output channels, resolution and kernel, none of which a shrink changes, so
`atom_groups(shrunk_spec)` gives the same per-atom costs as before, and the weights of the
surviving groups stay valid (only the group indices move when a whole group disappears).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nas.arch.shapes import conv_out, iter_blocks
from nas.arch.spec import ChainSpec, MixedKernelSpec

PENALTY_MODES = ("mean", "sum", "equal")


@dataclass(frozen=True)
class AtomGroup:
    block: int     # index into spec.blocks (= model.blocks)
    group: int     # index among the block's NON-EMPTY groups (= index into MixedKernel.dws)
    kernel: int
    channels: int  # atoms in the group
    cost: int      # MACs of ONE atom: C_in*H_in*W_in + k*k*H_out*W_out + C_out*H_out*W_out


def atom_groups(spec: ChainSpec) -> list[AtomGroup]:
    """Every kernel group of every mixed block with expand=True (the unexpanded first block is not
    searched or penalised: official bn_prune_filter expansion_only_skip_expand1)."""
    groups = []
    for i, block, cin, hw in iter_blocks(spec):
        if not isinstance(block, MixedKernelSpec) or not block.expand:
            continue
        hw_out = conv_out(hw, block.stride)
        g = 0
        for k, h in zip(block.kernels, block.hidden):
            if h == 0:
                continue  # pruned groups have no module in MixedKernel.dws
            cost = cin * hw * hw + k * k * hw_out * hw_out + block.out * hw_out * hw_out
            groups.append(AtomGroup(block=i, group=g, kernel=k, channels=h, cost=cost))
            g += 1
    return groups


def _check_mode(mode: str) -> None:
    if mode not in PENALTY_MODES:
        raise ValueError(f"penalty mode: expected one of {list(PENALTY_MODES)}, got {mode!r}")


def penalty_normaliser(groups: list[AtomGroup], mode: str) -> float:
    """'mean' (official code): the mean per-atom cost over all atoms (each atom counted once);
    'sum' (paper Eq. 6): the sum over all atoms; 'equal' (paper Table 2 baseline): 1 with every cost
    taken as 1 (see penalty_weights).

    The published lambdas assume 'mean'; 'sum' makes every weight ~31 k times smaller.
    """
    _check_mode(mode)
    if mode == "equal":
        return 1.0
    total = sum(g.cost * g.channels for g in groups)
    if mode == "sum":
        return float(total)
    atoms = sum(g.channels for g in groups)
    return total / atoms


def penalty_weights(groups: list[AtomGroup], mode: str, normaliser: float) -> list[float]:
    """Per group: the weight c_i of each of its atoms (cost / normaliser; cost 1 in 'equal').

    Pass the normaliser computed from the supernet so the weights do not drift as atoms die.
    """
    _check_mode(mode)
    return [(1.0 if mode == "equal" else g.cost) / normaliser for g in groups]


def _dw_bn(model: nn.Module, g: AtomGroup) -> nn.BatchNorm2d:
    """The BN right after the group's depthwise conv: dws[j] = Sequential(conv, BN, act)."""
    return model.blocks[g.block].dws[g.group][1]


def penalty(model: nn.Module, groups: list[AtomGroup], weights: list[float]) -> torch.Tensor:
    """sum_i c_i * |alpha_i| over all atoms; differentiable w.r.t. the dw BN scales only."""
    terms = [w * _dw_bn(model, g).weight.abs().sum() for g, w in zip(groups, weights)]
    if not terms:
        return torch.zeros(())
    return torch.stack(terms).sum()


def importance(model: nn.Module, groups: list[AtomGroup]) -> list[torch.Tensor]:
    """The alpha tensors, one per group, detached and copied so later optimizer steps or shrinks
    do not change them under the caller."""
    return [_dw_bn(model, g).weight.detach().clone() for g in groups]


def rho(step: int, lam: float, warmup_steps: int) -> float:
    """Penalty strength: linear from 0 at step 0 to lam at warmup_steps, constant after; the
    ramp lets the network learn before the penalty starts pushing scales to zero."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return lam
    return lam * step / warmup_steps


def ema_decay_for_batch(decay: float, batch: int, reference_batch: int = 4096) -> float:
    """decay ** (batch / reference_batch): the official 0.9999 is defined at batch 4096, so the
    EMA averages over the same number of images at any batch size."""
    return decay ** (batch / reference_batch)


def dead_atoms(alpha: list[torch.Tensor] | None, alpha_ema: list[torch.Tensor],
               threshold: float = 1e-3) -> list[torch.Tensor]:
    """Per group, a bool mask of dead atoms: |alpha| <= thr and |alpha_ema| <= thr.

    Requiring both stops a single noisy step from killing an atom; with alpha None only the
    EMA is used (the official last-epoch shrink).
    """
    dead = []
    for j, ema in enumerate(alpha_ema):
        d = ema.abs() <= threshold
        if alpha is not None:
            d = d & (alpha[j].abs() <= threshold)
        dead.append(d)
    return dead


def dead_macs(groups: list[AtomGroup], dead: list[torch.Tensor]) -> int:
    """MACs the dead atoms cost, summed (compared with the shrink threshold, 1e6 officially)."""
    return sum(g.cost * int(d.sum()) for g, d in zip(groups, dead))


def keep_masks(spec: ChainSpec, groups: list[AtomGroup], dead: list[torch.Tensor],
               alpha: list[torch.Tensor]) -> dict[int, list[torch.Tensor]]:
    """Per block with at least one dead atom: one bool keep mask per non-empty group (True = keep).

    A block that cannot become the identity (stride 2 or in != out) keeps at least its atom with
    the largest |alpha|: with no atoms left it would have no path from input to output and the
    chain would break (wrong channel count or resolution for the next block). A stride-1
    in == out block may lose everything and become the identity. `alpha` (current or EMA)
    only picks that survivor.
    """
    shapes = {i: (block, cin) for i, block, cin, _ in iter_blocks(spec)}
    by_block: dict[int, list[int]] = {}
    for j, g in enumerate(groups):
        by_block.setdefault(g.block, []).append(j)
    masks = {}
    for b, idx in by_block.items():
        if not any(bool(dead[j].any()) for j in idx):
            continue
        keep = [~dead[j] for j in idx]
        block, cin = shapes[b]
        can_be_identity = block.stride == 1 and cin == block.out
        if not can_be_identity and not any(bool(k.any()) for k in keep):
            best_j, best_c, best_val = 0, 0, None
            for n, j in enumerate(idx):
                c = int(alpha[j].abs().argmax())
                val = float(alpha[j].abs()[c])
                if best_val is None or val > best_val:
                    best_j, best_c, best_val = n, c, val
            keep[best_j][best_c] = True
        masks[b] = keep
    return masks
