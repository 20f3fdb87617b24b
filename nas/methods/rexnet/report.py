"""ReXNet's report of a channel search (paper section 4.3, Table 3, Fig. 2): candidates
ranked by mean accuracy, the top, middle (ranks 50-60 %) and bottom 10 % with the mean and
spread of accuracy, params and MACs, and their widths per block index."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Sequence

import numpy as np

from nas.files import pyplot, save_figure, write_text_atomic

GROUPS = ("top", "middle", "bottom")
COLOURS = {"top": "tab:red", "middle": "tab:blue", "bottom": "tab:green"}  # the paper's


def ranking(accuracies: Sequence[float]) -> list[int]:
    """Candidate indices by accuracy, highest first; ties by index."""
    return sorted(range(len(accuracies)), key=lambda i: (-accuracies[i], i))


def rank_groups(accuracies: Sequence[float], fraction: float) -> dict[str, list[int]]:
    """Indices of the top, middle and bottom `fraction` of candidates in `ranking` order.
    Middle starts at rank floor(n / 2): "the models between top-50 % and 60 %". Each group
    holds max(1, round(n * fraction)) candidates."""
    n = len(accuracies)
    order = ranking(accuracies)
    size = max(1, int(round(n * fraction)))
    mid = n // 2
    return {"top": order[:size], "middle": order[mid:mid + size], "bottom": order[n - size:]}


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "std": float(arr.std())}


def _spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho (ties averaged); None where it is undefined (fewer than 3 values or
    a constant list)."""
    from scipy.stats import spearmanr

    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return float(spearmanr(x, y).statistic)


def summarize(rows: Sequence[dict], fraction: float) -> dict:
    """Per group: size, accuracy / params / MACs / nonlinearity mean and std, widths mean and
    std per block; the best and worst candidates; and over all candidates the Spearman
    correlation of accuracy with the nonlinearity (nas.methods.rexnet.space) and with the
    first / last width. `rows` need `accuracy`, `params`, `macs`, `widths`, `nonlinearity`, `id`."""
    accuracies = [r["accuracy"] for r in rows]
    groups = rank_groups(accuracies, fraction)
    out: dict = {"fraction": fraction, "candidates": len(rows), "groups": {}}
    out["spearman"] = {
        "nonlinearity": _spearman(accuracies, [r["nonlinearity"] for r in rows]),
        "first_over_last": _spearman(accuracies, [r["widths"][0] / r["widths"][-1]
                                                  for r in rows])}
    for name in GROUPS:
        members = [rows[i] for i in groups[name]]
        widths = np.asarray([m["widths"] for m in members], dtype=float)
        out["groups"][name] = {
            "ids": [m["id"] for m in members],
            "accuracy": _mean_std([m["accuracy"] for m in members]),
            "params": _mean_std([m["params"] for m in members]),
            "macs": _mean_std([m["macs"] for m in members]),
            "nonlinearity": _mean_std([m["nonlinearity"] for m in members]),
            "widths_mean": [float(v) for v in widths.mean(axis=0)],
            "widths_std": [float(v) for v in widths.std(axis=0)],
        }
    best, worst = rows[groups["top"][0]], rows[groups["bottom"][-1]]
    out["best"] = {"id": best["id"], "widths": best["widths"], "accuracy": best["accuracy"]}
    out["worst"] = {"id": worst["id"], "widths": worst["widths"], "accuracy": worst["accuracy"]}
    return out


def write_csv(rows: Sequence[dict], columns: Sequence[str], path: Path) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "-".join(map(str, v)) if isinstance(v, list) else v
                         for k, v in row.items()})
    return write_text_atomic(path, buf.getvalue())


def plot_channels(report: dict, path: Path, title: str) -> Path:
    """Fig. 2: mean width per block index with a 1-sigma band, one colour per group."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in GROUPS:
        g = report["groups"][name]
        mean, std = np.asarray(g["widths_mean"]), np.asarray(g["widths_std"])
        x = np.arange(1, len(mean) + 1)
        acc = g["accuracy"]
        ax.plot(x, mean, "-o", color=COLOURS[name], ms=3,
                label=f"{name} {len(g['ids'])}: {100 * acc['mean']:.1f} +- "
                      f"{100 * acc['std']:.1f} %")
        ax.fill_between(x, mean - std, mean + std, color=COLOURS[name], alpha=0.2)
    ax.set_xticks(np.arange(1, len(report["groups"]["top"]["widths_mean"]) + 1))
    ax.set_xlabel("block index")
    ax.set_ylabel("output channels")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
