"""Refuse, before anything is allocated, a training run that certainly cannot fit in memory.

The estimate is a lower bound from the analytic cost: float32 weights and their gradients
(2 x params x 4 bytes) plus one saved float32 tensor per conv and linear output for every
image of the batch. Optimizer state, BN and activation outputs and the framework come on
top, so a run refused here could never have started; one that passes may still need more.
"""

from __future__ import annotations

import os

import torch

from nas.arch.spec import ArchSpec, SpecError
from nas.cost.analytic import Cost, count
from nas.trainer import runs_on_cuda

BYTES = 4  # float32


def training_bytes(cost: Cost, batch_size: int) -> int:
    return BYTES * (2 * cost.params + batch_size * cost.activations)


def available_bytes(accelerator: str) -> tuple[int, str]:
    """(bytes, what) of the memory a run on `accelerator` trains in: the first GPU's total
    memory, or the host's available memory (MemAvailable; the physical total elsewhere)."""
    if runs_on_cuda(accelerator) and torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory, "the GPU"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "this machine (available)"
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine"


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


def check_fits(spec: ArchSpec, batch_size: int, accelerator: str = "auto", *,
               field: str = "arch", what: str | None = None,
               fix: str = "choose a smaller architecture or data.batch_size") -> None:
    """One-line SpecError, naming the analytic sizes, when training `spec` at `batch_size`
    (per process) needs more memory than there is; `field`, `what` (default: the spec's
    name) and `fix` say which setting made it and how to change it."""
    cost = count(spec)
    need = training_bytes(cost, batch_size)
    have, where = available_bytes(accelerator)
    if need > have:
        raise SpecError(f"{field}: {what or spec.name} cannot be trained here: at batch "
                        f"{batch_size} it needs at least {_gb(need)} ({cost.params:,} params, "
                        f"{cost.activations:,} activations per image), and {where} has "
                        f"{_gb(have)}; {fix}")
