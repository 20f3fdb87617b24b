"""Params and MACs measured on a built module: the ground truth the analytic model must hit.

params = sum of numel; MACs = torch's flop counter / 2, split into conv/linear ops
(`macs`) and batched matrix products (`extra_macs`, LightNL). Modules registered as
`auxiliary_head` (DARTS) are left out, as the official DARTS count does.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nas.cost.analytic import Cost
from nas.ops.layers import full_kernels

_LAYER_OPS = {"convolution", "addmm", "mm"}
_MATMUL_OPS = {"bmm", "baddbmm"}


def _main_parameters(model: nn.Module):
    aux = getattr(model, "auxiliary_head", None)
    skip = {id(p) for p in aux.parameters()} if aux is not None else set()
    return [(m, p) for m in model.modules() for p in m.parameters(recurse=False)
            if id(p) not in skip]


def measure(model: nn.Module, input_size: int, in_channels: int = 3) -> Cost:
    """Count a module's params and run one batch-1 forward under torch's flop counter."""
    pairs = _main_parameters(model)
    params = sum(p.numel() for _, p in pairs)
    bn = sum(p.numel() for m, p in pairs if isinstance(m, nn.modules.batchnorm._BatchNorm))
    was_training = model.training
    model.eval()
    x = torch.zeros(1, in_channels, input_size, input_size)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), full_kernels(), counter:
        model(x)
    model.train(was_training)
    flops = {str(op).split(".")[1]: n for op, n in counter.get_flop_counts()["Global"].items()}
    unknown = set(flops) - _LAYER_OPS - _MATMUL_OPS
    if unknown:
        raise RuntimeError(f"flop counter saw ops the cost model does not know: {sorted(unknown)}")
    macs = sum(flops.get(op, 0) for op in _LAYER_OPS) // 2
    extra = sum(flops.get(op, 0) for op in _MATMUL_OPS) // 2
    return Cost(params, params - bn, macs, extra)
