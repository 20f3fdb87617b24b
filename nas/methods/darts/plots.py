"""DARTS figures: the final mixture weights per edge, and the derived cells as graphs."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from nas.arch.spec import GenotypeSpec
from nas.files import pyplot, save_figure
from nas.methods.darts.cells import NODES, edge_inputs


def _input_name(src: int) -> str:
    return {0: "c_{k-2}", 1: "c_{k-1}"}.get(src, str(src - 2))


def plot_alphas(normal: torch.Tensor, reduce: torch.Tensor, ops: Sequence[str],
                path: Path) -> Path:
    """Two heat maps (normal, reduction cell): softmax weight of each op on each edge."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(2.2 + 1.3 * len(ops), 6.0), sharey=True)
    labels = [f"{_input_name(src)} -> {node - 2}" for node, src in edge_inputs()]
    for ax, weights, kind in zip(axes, (normal, reduce), ("normal", "reduction")):
        w = weights.detach().cpu().numpy()
        im = ax.imshow(w, cmap="viridis", aspect="auto", vmin=0.0)
        for i in range(w.shape[0]):
            for j in range(w.shape[1]):
                ax.text(j, i, f"{w[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if w[i, j] < 0.6 * w.max() else "black")
        ax.set_xticks(range(len(ops)), list(ops), rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_title(f"{kind} cell")
        fig.colorbar(im, ax=ax, fraction=0.05)
    axes[0].set_ylabel("edge (input -> node)")
    fig.suptitle("DARTS: softmax weights of the operations per edge")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_cells(genotype: GenotypeSpec, path: Path, title: str = "DARTS") -> Path:
    """The two derived cells as graphs: inputs on the left, the nodes in a row, the output
    (concat) on the right, each kept edge labelled with its operation."""
    plt = pyplot()
    from matplotlib.patches import FancyArrowPatch

    fig, axes = plt.subplots(2, 1, figsize=(12.0, 7.5))
    for ax, edges, concat, kind in zip(
            axes, (genotype.normal, genotype.reduce),
            (genotype.normal_concat, genotype.reduce_concat), ("normal", "reduction")):
        pos = {0: (0.0, 1.2), 1: (0.0, -1.2)}
        pos.update({2 + i: (2.4 + 2.2 * i, 0.5 if i % 2 else -0.5) for i in range(NODES)})
        out = (2.4 + 2.2 * NODES, 0.0)
        names = {k: _input_name(k) for k in pos}
        for k, (x, y) in pos.items():
            ax.annotate(names[k], (x, y), ha="center", va="center", fontsize=9,
                        bbox={"boxstyle": "round", "fc": "#cde" if k < 2 else "#eee"})
        ax.annotate("c_{k}", out, ha="center", va="center", fontsize=9,
                    bbox={"boxstyle": "round", "fc": "#fdc"})
        for e, (op, src) in enumerate(edges):
            node = 2 + e // 2
            a, b = pos[int(src)], pos[node]
            rad = 0.25 if e % 2 else -0.25
            ax.add_patch(FancyArrowPatch(a, b, connectionstyle=f"arc3,rad={rad}",
                                         arrowstyle="-|>", mutation_scale=10, lw=1.0,
                                         shrinkA=14, shrinkB=14, color="0.3"))
            # The arc's midpoint (arc3: a quadratic Bezier whose control point sits rad x the
            # chord's normal away from the chord's middle; equal axes keep it in data units).
            dx, dy = b[0] - a[0], b[1] - a[1]
            mx, my = (a[0] + b[0]) / 2 + rad * dy / 2, (a[1] + b[1]) / 2 - rad * dx / 2
            ax.text(mx, my, op, fontsize=7, ha="center", va="center", color="#a30",
                    bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none",
                          "alpha": 0.8})
        for k in concat:
            ax.add_patch(FancyArrowPatch(pos[int(k)], out, arrowstyle="-|>",
                                         mutation_scale=8, lw=0.6, shrinkA=14, shrinkB=14,
                                         color="0.7", linestyle="--"))
        ax.set_xlim(-0.8, out[0] + 0.8)
        ax.set_ylim(-2.0, 2.0)
        ax.set_aspect("equal")
        ax.axis("off")
        ax.set_title(f"{kind} cell")
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)
