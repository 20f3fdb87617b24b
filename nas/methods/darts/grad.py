"""DARTS architecture gradients: first order, and second order through one unrolled step.

Second order (DARTS Eq. 7-8, quark0/darts cnn/architect.py): the virtual weights
w' = w - xi (mu m + grad_w L_train(w, a) + wd w), with m the SGD momentum buffer and xi
the current weight lr; the gradient is grad_a L_val(w', a) - xi H v with the
Hessian-vector product approximated by finite differences,
H v = (grad_a L_train(w+, a) - grad_a L_train(w-, a)) / (2 eps),
w+- = w +- eps v, v = grad_w' L_val(w', a), eps = 0.01 / ||v||.

The virtual and shifted networks are evaluated with torch.func.functional_call on copies
of the BN buffers, so only real steps move the running statistics.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

HVP_EPS = 0.01  # eps = HVP_EPS / ||v||, as officially


def first_order(net: nn.Module, alphas: Sequence[torch.Tensor], x: torch.Tensor,
                y: torch.Tensor) -> list[torch.Tensor]:
    """grad_a L_val(w, a) on the batch (x, y)."""
    loss = F.cross_entropy(net(x), y)
    return list(torch.autograd.grad(loss, list(alphas)))


class _Functional:
    """Loss of `net` with its weights replaced (alphas and BN buffers kept as given)."""

    def __init__(self, net: nn.Module, names: Sequence[str]):
        self.net = net
        self.names = list(names)
        self.buffers = {k: b.clone() for k, b in net.named_buffers()}

    def loss(self, weights: Sequence[torch.Tensor], x: torch.Tensor,
             y: torch.Tensor) -> torch.Tensor:
        tensors = {**dict(zip(self.names, weights)), **self.buffers}
        return F.cross_entropy(functional_call(self.net, tensors, (x,), strict=False), y)


def _grads(loss: torch.Tensor, inputs: Sequence[torch.Tensor],
           create_graph: bool = False) -> list[torch.Tensor]:
    grads = torch.autograd.grad(loss, list(inputs), allow_unused=True, create_graph=create_graph)
    return [torch.zeros_like(t) if g is None else g for g, t in zip(grads, inputs)]


def virtual_weights(weights: Sequence[torch.Tensor], grads: Sequence[torch.Tensor],
                    momentum_buffers: Sequence[Optional[torch.Tensor]], *, lr: float,
                    momentum: float, weight_decay: float) -> list[torch.Tensor]:
    """One SGD step as the weight optimizer would take it (momentum and L2 included)."""
    out = []
    for w, g, m in zip(weights, grads, momentum_buffers):
        step = g + weight_decay * w
        if m is not None:
            step = step + momentum * m
        out.append(w - lr * step)
    return out


def _unrolled(net: nn.Module, named_weights: Sequence[tuple[str, torch.Tensor]],
              train: tuple[torch.Tensor, torch.Tensor], momentum_buffer, *, lr: float,
              momentum: float, weight_decay: float, create_graph: bool):
    """(the functional loss, the weights, the virtual weights w') shared by both second-order
    gradients; with `create_graph` w' stays a function of the alphas (for double backward),
    otherwise it is a fresh leaf that requires grad."""
    f = _Functional(net, [k for k, _ in named_weights])
    weights = [w for _, w in named_weights]
    g_train = _grads(f.loss(weights, *train), weights, create_graph=create_graph)
    with torch.set_grad_enabled(create_graph):
        virtual = virtual_weights([w.detach() for w in weights], g_train,
                                  [momentum_buffer(w) for w in weights], lr=lr,
                                  momentum=momentum, weight_decay=weight_decay)
    if not create_graph:
        virtual = [v.requires_grad_() for v in virtual]
    return f, weights, virtual


def second_order(net: nn.Module, named_weights: Sequence[tuple[str, torch.Tensor]],
                 alphas: Sequence[torch.Tensor], train: tuple[torch.Tensor, torch.Tensor],
                 val: tuple[torch.Tensor, torch.Tensor], *, lr: float, momentum: float,
                 weight_decay: float,
                 momentum_buffer: Callable[[torch.Tensor], Optional[torch.Tensor]],
                 hvp_eps: float = HVP_EPS) -> list[torch.Tensor]:
    """The unrolled architecture gradient (module docstring); `momentum_buffer(w)` is the
    weight optimizer's buffer of w (None before its first step); the finite difference
    steps by hvp_eps / ||v||."""
    f, weights, virtual = _unrolled(net, named_weights, train, momentum_buffer, lr=lr,
                                    momentum=momentum, weight_decay=weight_decay,
                                    create_graph=False)
    grads = _grads(f.loss(virtual, *val), list(alphas) + virtual)
    d_alpha, v = grads[:len(alphas)], grads[len(alphas):]
    norm = torch.cat([g.flatten() for g in v]).norm()
    if not torch.isfinite(norm) or norm == 0:
        return d_alpha  # nothing to correct (a flat validation loss)
    eps = hvp_eps / norm

    def arch_grad(sign: float) -> list[torch.Tensor]:
        with torch.no_grad():
            shifted = [w.detach() + sign * eps * d for w, d in zip(weights, v)]
        return _grads(f.loss(shifted, *train), alphas)

    plus, minus = arch_grad(1.0), arch_grad(-1.0)
    return [d - lr * (p - m) / (2 * eps) for d, p, m in zip(d_alpha, plus, minus)]


def exact_second_order(net: nn.Module, named_weights: Sequence[tuple[str, torch.Tensor]],
                       alphas: Sequence[torch.Tensor], train: tuple[torch.Tensor, torch.Tensor],
                       val: tuple[torch.Tensor, torch.Tensor], *, lr: float, momentum: float,
                       weight_decay: float,
                       momentum_buffer: Callable[[torch.Tensor], Optional[torch.Tensor]]
                       ) -> list[torch.Tensor]:
    """d/da L_val(w'(a), a) by autograd through the virtual step (double backward): the
    quantity `second_order` approximates; slow, for checking it."""
    f, _, virtual = _unrolled(net, named_weights, train, momentum_buffer, lr=lr,
                              momentum=momentum, weight_decay=weight_decay, create_graph=True)
    return _grads(f.loss(virtual, *val), alphas)
