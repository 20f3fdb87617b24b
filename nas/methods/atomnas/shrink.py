"""AtomNAS dynamic shrinkage: physically remove dead atoms from MixedKernel blocks.

An atom is one hidden channel of one kernel group: its expand-conv output channel (conv row
and expand-BN entries), its depthwise channel (dw conv and dw-BN entries) and its column of
the projection conv. Removing atoms makes the network (and its optimizer state) smaller, so
the search trains and measures the network it will return (specs.md 2.4).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from nas.arch.shapes import iter_blocks
from nas.arch.spec import ChainSpec, MixedKernelSpec
from nas.ops.blocks import BLOCKS, MixedKernel
from nas.ops.layers import make_norm

Slice = Callable[[torch.Tensor], torch.Tensor]


def _copy(t: torch.Tensor) -> torch.Tensor:
    return t.clone()


def _select(dim: int, index: torch.Tensor) -> Slice:
    """Keep the entries `index` along `dim` (index moved to the tensor's device)."""
    def fn(t: torch.Tensor) -> torch.Tensor:
        return t.index_select(dim, index.to(t.device))
    return fn


@dataclasses.dataclass
class _Plan:
    """What happens to one block: the new spec and the kept atoms, checked before any change."""

    index: int
    spec: MixedKernelSpec
    masks: list[torch.Tensor]   # one per old non-empty group, on the CPU


def _check_block(i: int, block: nn.Module, bspec: object, cin: int,
                 masks: object) -> _Plan:
    """Validate one block's keep list and work out its new spec (one-line ValueErrors)."""
    where = f"shrink_chain: block {i}"
    if not isinstance(bspec, MixedKernelSpec) or not isinstance(block, MixedKernel):
        raise ValueError(f"{where}: expected a MixedKernel block, got spec "
                         f"{type(bspec).__name__} / module {type(block).__name__}")
    if not bspec.expand:
        raise ValueError(f"{where}: has no expand conv (the fixed first block), "
                         f"its atoms are never removed")
    groups = [j for j, h in enumerate(bspec.hidden) if h > 0]
    sizes = [bspec.hidden[j] for j in groups]
    if block.splits != sizes:
        raise ValueError(f"{where}: the module's groups {block.splits} do not "
                         f"match the spec's hidden {bspec.hidden}")
    if not isinstance(masks, (list, tuple)) or len(masks) != len(groups):
        got = len(masks) if isinstance(masks, (list, tuple)) else type(masks).__name__
        raise ValueError(f"{where}: expected a list of {len(groups)} masks (one per non-empty "
                         f"group, sizes {sizes}), got {got}")
    checked = []
    for n, (m, size) in enumerate(zip(masks, sizes)):
        if not (isinstance(m, torch.Tensor) and m.dtype == torch.bool and m.dim() == 1
                and m.numel() == size):
            got = (f"{m.dtype} tensor of shape {tuple(m.shape)}" if isinstance(m, torch.Tensor)
                   else type(m).__name__)
            raise ValueError(f"{where}, group {n}: expected a 1-D bool mask of {size} entries, "
                             f"got {got}")
        checked.append(m.detach().cpu())
    hidden = [0] * len(bspec.hidden)
    for j, m in zip(groups, checked):
        hidden[j] = int(m.sum())
    if groups and sum(hidden) == 0 and not (bspec.stride == 1 and cin == bspec.out
                                            and bspec.residual == "identity"):
        raise ValueError(f"{where}: every atom removed but the block cannot become the identity "
                         f"(needs stride 1, in == out and a residual; got stride {bspec.stride}, "
                         f"in {cin}, out {bspec.out}, residual {bspec.residual!r}); keep one atom")
    new_spec = dataclasses.replace(bspec, kernels=list(bspec.kernels), hidden=hidden)
    return _Plan(i, new_spec, checked)


def _norm_of(block: MixedKernel):
    """The norm factory the block was built with (eps and momentum of its BNs)."""
    bn = block.expand[1]
    return make_norm(bn.eps, bn.momentum)


def _slicers(plan: _Plan) -> Callable[[str], tuple[str, Slice]]:
    """Map a new-module tensor name to (old name, function slicing the old tensor)."""
    keep_all = torch.cat(plan.masks)
    kept = keep_all.nonzero().squeeze(1)
    # new dws[n] is old dws[survivors[n]] (groups left empty disappear from dws)
    survivors = [n for n, m in enumerate(plan.masks) if bool(m.any())]

    def rule(name: str) -> tuple[str, Slice]:
        if name.endswith("num_batches_tracked"):
            old = name
            if name.startswith("dws."):
                _, n, rest = name.split(".", 2)
                old = f"dws.{survivors[int(n)]}.{rest}"
            return old, _copy
        if name.startswith("expand."):
            return name, _select(0, kept)
        if name.startswith("dws."):
            _, n, rest = name.split(".", 2)
            old_n = survivors[int(n)]
            return f"dws.{old_n}.{rest}", _select(0, plan.masks[old_n].nonzero().squeeze(1))
        if name == "se.reduce.0.weight":
            return name, _select(1, kept)
        if name in ("se.expand.weight", "se.expand.bias"):
            return name, _select(0, kept)
        if name == "project.0.weight":
            return name, _select(1, kept)
        if name.startswith(("project.", "se.reduce.")):
            return name, _copy
        raise ValueError(f"shrink_chain: block {plan.index}: no slicing rule for {name!r}")

    return rule


@torch.no_grad()
def _fold_shift(block: MixedKernel, plan: _Plan) -> torch.Tensor:
    """W_proj[:, removed] @ act(dw_bn.bias[removed]): what removed atoms add to the projection
    conv output in eval mode when their dw-BN gamma is 0 (the dw-BN output is then beta)."""
    w = block.project[0].weight[:, :, 0, 0]
    shift = torch.zeros_like(block.project[1].running_mean)
    offset = 0
    for n, m in enumerate(plan.masks):
        removed = (~m).nonzero().squeeze(1).to(w.device)
        if removed.numel():
            dw = block.dws[n]
            const = dw[2](dw[1].bias.index_select(0, removed))
            shift += (w.index_select(1, removed + offset) @ const).to(shift.dtype)
        offset += m.numel()
    return shift


def _rebuild(block: MixedKernel, plan: _Plan, cin: int, fold: bool,
             memory_format: torch.memory_format
             ) -> tuple[nn.Module, list[tuple[nn.Parameter, nn.Parameter, Slice]]]:
    """New block from the new spec, loaded with the sliced tensors of the old one; also returns
    (old param, new param, slice) for every parameter, for the optimizer states."""
    p = block.drop_path.p if hasattr(block.drop_path, "p") else 0.0
    new = BLOCKS[MixedKernelSpec](plan.spec, cin, norm=_norm_of(block), drop_path=p)
    ref = next(block.parameters())
    new.to(device=ref.device, dtype=ref.dtype, memory_format=memory_format)
    new.train(block.training)
    if new.is_identity:
        return new, []
    rule = _slicers(plan)
    old_state = block.state_dict()
    state = {}
    for name in new.state_dict():
        old_name, fn = rule(name)
        state[name] = fn(old_state[old_name])
    if fold and isinstance(block.se, nn.Identity):
        state["project.1.running_mean"] = state["project.1.running_mean"] - _fold_shift(block, plan)
    new.load_state_dict(state, strict=True)
    old_params = dict(block.named_parameters())
    pairs = []
    for name, new_p in new.named_parameters():
        old_name, fn = rule(name)
        new_p.requires_grad_(old_params[old_name].requires_grad)
        pairs.append((old_params[old_name], new_p, fn))
    return new, pairs


def _move_optimizer_state(opt: torch.optim.Optimizer, old_params: list[nn.Parameter],
                          pairs: list[tuple[nn.Parameter, nn.Parameter, Slice]]) -> None:
    """Swap old params for new ones in the param groups and slice their state tensors (laid out
    like the new param); old params without a new counterpart (removed groups, identity
    blocks) leave the optimizer."""
    by_id = {id(old): (new, fn) for old, new, fn in pairs}
    gone = {id(old) for old in old_params}
    for group in opt.param_groups:
        group["params"] = [by_id[id(q)][0] if id(q) in by_id else q for q in group["params"]
                           if id(q) in by_id or id(q) not in gone]
    for old, new, fn in pairs:
        if old not in opt.state:
            continue
        state = opt.state.pop(old)
        opt.state[new] = {k: torch.empty_like(new).copy_(fn(v))
                          if isinstance(v, torch.Tensor) and v.shape == old.shape
                          else v for k, v in state.items()}
    for old in old_params:
        opt.state.pop(old, None)


def shrink_chain(model: nn.Module, spec: ChainSpec, keep: Mapping[int, Sequence[torch.Tensor]],
                 *, optimizers: Iterable[torch.optim.Optimizer] = (), fold: bool = True,
                 memory_format: torch.memory_format = torch.contiguous_format) -> ChainSpec:
    """Remove atoms physically; returns the new spec (the input spec is not modified).

    keep maps a block index (into spec.blocks / model.blocks) to one 1-D bool tensor per
    non-empty group of that block (the order of block.dws), True = keep. Blocks not in keep
    are untouched. Every keep list is checked before anything changes; a bad one raises a
    one-line ValueError (wrong block type, a block without expand conv, wrong number or shape
    of masks, or every atom removed from a block that cannot become the identity).

    A group left without atoms gets hidden 0 (later groups shift down in dws); a block left
    without atoms gets all-zero hidden and becomes the identity. Each changed block is
    rebuilt from its new spec (same BN eps/momentum and drop-path rate, same device, dtype
    and train/eval mode; weights laid out in `memory_format`, see nas.memory_format) and
    loaded with the kept rows/columns of the expand conv and BN, dw convs and BNs,
    projection conv inputs, and SE input/output channels. `model.spec` is updated when the
    model has one.

    fold subtracts the removed atoms' constant contribution, W_proj[:, r] @ act(dw_bn.bias[r]),
    from the projection BN's running_mean (official AtomNAS): exact in eval mode for atoms
    whose dw-BN gamma is 0, approximate for |gamma| small (train mode needs no fold: the
    batch mean absorbs the constant). Not done for blocks with an SE,
    whose gate makes the contribution data dependent. A block that becomes the identity
    has no projection BN left: its residual branch, constant project_bn(W_proj @ act(beta))
    in eval mode, is dropped, so its output changes from x + that constant to x (the
    official code does the same; recalibrate BN afterwards).

    For each optimizer the old Parameters of rebuilt blocks are replaced by the new ones in
    param_groups (those of removed groups and identity blocks are dropped), and every state
    tensor shaped like its parameter (momentum buffers, square averages, Adam moments) is
    sliced the same way; other entries (e.g. 'step') are carried over. Parameters of
    untouched modules keep their identity and state.

    For a weight-EMA copy of the model (a deep copy with the same structure), call
    shrink_chain(ema_model, spec, keep) with the same keep and no optimizers: the same masks
    give the same structure and the same returned spec.
    """
    blocks = list(spec.blocks)
    if len(model.blocks) != len(blocks):
        raise ValueError(f"shrink_chain: the model has {len(model.blocks)} blocks but the spec "
                         f"has {len(blocks)}")
    cins = {i: cin for i, _, cin, _ in iter_blocks(spec)}
    for i in keep:
        if not isinstance(i, int) or not 0 <= i < len(blocks):
            raise ValueError(f"shrink_chain: block index {i!r} is not in range(0, {len(blocks)})")
    plans = []
    for i in sorted(keep):
        plan = _check_block(i, model.blocks[i], blocks[i], cins[i], keep[i])
        if plan.masks:  # an identity block has no atoms: nothing to do
            plans.append(plan)

    old_params, pairs = [], []
    for plan in plans:
        old_params.extend(model.blocks[plan.index].parameters())
        new, block_pairs = _rebuild(model.blocks[plan.index], plan, cins[plan.index], fold,
                                     memory_format)
        model.blocks[plan.index] = new
        blocks[plan.index] = plan.spec
        pairs.extend(block_pairs)
    for opt in optimizers:
        _move_optimizer_state(opt, old_params, pairs)
    new_spec = dataclasses.replace(spec, blocks=blocks)
    if hasattr(model, "spec"):
        model.spec = new_spec
    return new_spec
