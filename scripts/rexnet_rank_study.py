"""ReXNet rank study (Han et al., sec. 3.2, Fig. 1): how far a nonlinearity expands the rank of
a layer's output above its input dimension, against the dimension ratio d_in / d_out.

    python scripts/rexnet_rank_study.py [--networks 50] [--seed 0] [--out runs/rexnet_rank]

Four layer kinds (panels a-d): a single 1x1 conv, a single 3x3 conv (each conv -> BN -> f),
and an inverted bottleneck with a full or a depthwise 3x3 conv. Input: the layer's (the first
1x1's); output: after f (after the shortcut's addition in a bottleneck). Metric:
rank(output as a C x N matrix) / d_out, mean and std over --networks random-sized networks,
for each nonlinearity and "none" (f = identity).

Inverted bottleneck: the paper says the x-axis, d_in / d_out, "denotes the reciprocal of the
expansion ratio"; our reading is that in a bottleneck the varied ratio is that of its first
1x1 conv, i.e. the hidden width is d_out: 1x1 expand d_in -> d_out (expansion ratio
d_out / d_in = 1 / ratio) -> BN -> f -> 3x3 conv (full, or depthwise: groups = d_out) on
d_out channels -> BN -> f -> 1x1 project d_out -> d_out -> BN, plus the input added to the
first d_in output channels (ReXNet's partial shortcut).

Values the paper leaves open, chosen here (also written to the JSON):
* d_out uniform in [32, 128] per network; d_in = max(1, round(ratio * d_out)); ratios
  0.1, 0.2, ..., 1.0. One network = one d_out; every kind, ratio and nonlinearity of it gets
  its own seeded torch.Generator, the same one for every nonlinearity (paired comparison).
* Inputs: Gaussian, batch 8 at 8x8, so N = 512 > 4 * d_out; 3x3 convs pad by 1.
* Convs have no bias (BN follows); weights: PyTorch's default init,
  U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn from the generator. BN: batch statistics
  (training mode, eps 1e-5, affine 1/0), i.e. per-channel standardisation.
* Rank: singular values in float64 of the float32 features, counted above a tolerance times
  sigma_max. "default" is max(C, N) * eps(float32): torch.linalg.matrix_rank's rule for the
  dtype the features were computed in; anything smaller is indistinguishable from float32
  rounding (with float64's eps that rounding counts as rank and the linear case reads full
  rank). In exact arithmetic any of these nonlinearities gives full rank, so the study
  measures a numerical rank and depends on the tolerance: --rtol replaces the default and
  --also-rtol (default 1e-2, 1e-1) adds relative tolerances, all counted on the same SVDs.
  The figure has one row per tolerance and one column per layer kind. Each channel's mean
  over N is removed before the SVD (--no-center keeps it): after BN the pre-activations are
  centred, but a nonlinearity's output mean (Softplus's, ReLU's) is one large direction that
  sets sigma_max, so that a tolerance relative to sigma_max would rank the output means. This
  lowers any rank by at most one.
Linear references (f = identity): d_in / d_out for the 1x1 conv; a 3x3 conv sees 9 shifted
copies of its input, so about min(1, 9 d_in / d_out) for the 3x3 conv; a bottleneck's rows lie
in the span of the 9 shifts of its (centred) input plus the shortcut's per-channel means, so
its linear rank is at most min(d_out, 9 d_in + 1) (reached for generic weights).

Orderings: the nonlinearities (not "none") ranked by their mean rank ratio over d_in / d_out in
SMALL = [0.1, 0.3], per tolerance and panel, with a verdict on the paper's claim (ReLU6 / ReLU
keep the least rank at small ratios, SiLU / ELU the most); "above" is strict (a tie is not):
* yes:    SiLU and ELU are above every other nonlinearity, and ReLU and ReLU6 are below every
          other one (the two groups are the top two and the bottom two);
* partly: not yes, but each of SiLU and ELU is above each of ReLU and ReLU6 (the pairwise core
          of the claim, with LeakyReLU / Softplus / Hard Swish interleaved);
* no:     otherwise (some ReLU / ReLU6 at or above some SiLU / ELU, e.g. all at full rank).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nas.files import pyplot, save_figure, write_text_atomic

KINDS = {"conv1x1": "(a) 1x1 conv", "conv3x3": "(b) 3x3 conv",
         "ib_conv": "(c) inverted bottleneck, 3x3 conv",
         "ib_dw": "(d) inverted bottleneck, 3x3 depthwise"}
ACTS = {"none": nn.Identity, "relu": nn.ReLU, "relu6": nn.ReLU6, "leakyrelu": nn.LeakyReLU,
        "elu": nn.ELU, "softplus": nn.Softplus, "hardswish": nn.Hardswish, "silu": nn.SiLU}
RATIOS = [round(0.1 * i, 1) for i in range(1, 11)]
D_OUT = (32, 128)
BATCH, HW = 8, 8
SMALL = (0.1, 0.3)   # ratios over which the orderings are read
PAPER_LOW, PAPER_HIGH = {"relu", "relu6"}, {"silu", "elu"}


def _matrix(features: torch.Tensor) -> torch.Tensor:
    """A (C, N) or (B, C, H, W) feature as its C x N matrix: channels are the rows."""
    if features.dim() == 4:
        return features.transpose(0, 1).reshape(features.shape[1], -1)
    if features.dim() != 2:
        raise ValueError(f"expected a (C, N) or (B, C, H, W) tensor, got {tuple(features.shape)}")
    return features


def rank_ratios(features: torch.Tensor, d_out: int | None = None, rtols=(None,),
                center: bool = False) -> list[float]:
    """rank / d_out (default C) at each relative tolerance, from one SVD. A tolerance of None
    is matrix_rank's default, max(C, N) * eps(dtype of the features); the SVD itself runs in
    float64 so that its own error stays far below any of them. `center` removes each
    channel's mean over N first (the study's default, see --help)."""
    m = _matrix(features.detach())
    if center:
        m = m - m.mean(dim=1, keepdim=True)
    c, n = m.shape
    s = torch.linalg.svdvals(m.to(torch.float64))
    top = float(s.max()) if s.numel() else 0.0
    rules = [max(c, n) * torch.finfo(m.dtype).eps if r is None else r for r in rtols]
    return [int((s > r * top).sum()) / (c if d_out is None else d_out) for r in rules]


def rank_ratio(features: torch.Tensor, d_out: int | None = None, rtol: float | None = None,
               center: bool = False) -> float:
    """rank / d_out of a (C, N) or (B, C, H, W) feature (see rank_ratios for the tolerance)."""
    return rank_ratios(features, d_out, (rtol,), center)[0]


class PartialShortcut(nn.Module):
    """body(x) with x added to its first d_in channels (ReXNet's shortcut when d_in < d_out)."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x):
        y = self.body(x)
        return torch.cat([y[:, :x.shape[1]] + x, y[:, x.shape[1]:]], dim=1)


def _conv(c_in, c_out, k, generator, groups=1):
    conv = nn.Conv2d(c_in, c_out, k, padding=k // 2, groups=groups, bias=False)
    bound = 1.0 / (conv.weight[0].numel() ** 0.5)   # PyTorch's default: U(+-1/sqrt(fan_in))
    with torch.no_grad():
        conv.weight.uniform_(-bound, bound, generator=generator)
    return conv


def layer(kind: str, d_in: int, d_out: int, act: str, generator: torch.Generator) -> nn.Module:
    """One random layer of `kind` (see KINDS) with nonlinearity `act`, BN in training mode."""
    f = ACTS[act]
    if kind in ("conv1x1", "conv3x3"):
        k = 1 if kind == "conv1x1" else 3
        return nn.Sequential(_conv(d_in, d_out, k, generator), nn.BatchNorm2d(d_out), f()).train()
    if kind not in ("ib_conv", "ib_dw"):
        raise ValueError(f"unknown layer kind {kind!r}; one of {sorted(KINDS)}")
    h = d_out   # hidden width: the first 1x1's expansion ratio is d_out / d_in (see docstring)
    body = nn.Sequential(
        _conv(d_in, h, 1, generator), nn.BatchNorm2d(h), f(),
        _conv(h, h, 3, generator, groups=h if kind == "ib_dw" else 1), nn.BatchNorm2d(h), f(),
        _conv(h, d_out, 1, generator), nn.BatchNorm2d(d_out))
    return PartialShortcut(body).train()


def _generator(*key: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(np.random.SeedSequence(key).generate_state(1)[0]))


def _label(rtol: float | None) -> str:
    return "default" if rtol is None else f"{rtol:g}"


def study(networks: int, seed: int = 0, kinds=tuple(KINDS), acts=tuple(ACTS),
          ratios=tuple(RATIOS), rtols=(None,), center: bool = True, progress=None) -> dict:
    """{"results": {tolerance: {kind: {act: {ratio: {"mean", "std"}}}}}, "d_out": [...]}: the
    rank ratio over `networks` networks at each tolerance (see rank_ratios)."""
    values = {_label(t): {k: {a: {r: [] for r in ratios} for a in acts} for k in kinds}
              for t in rtols}
    d_outs = []
    with torch.no_grad():
        for net in range(networks):
            d_out = int(torch.randint(D_OUT[0], D_OUT[1] + 1, (1,),
                                      generator=_generator(seed, net)))
            d_outs.append(d_out)
            for ki, kind in enumerate(kinds):
                for ri, r in enumerate(ratios):
                    d_in = max(1, round(r * d_out))
                    for act in acts:   # same weights and input for every nonlinearity
                        g = _generator(seed, net, ki, ri)
                        x = torch.randn(BATCH, d_in, HW, HW, generator=g)
                        y = layer(kind, d_in, d_out, act, g)(x)
                        for t, v in zip(rtols, rank_ratios(y, d_out, rtols, center)):
                            values[_label(t)][kind][act][r].append(v)
            if progress:
                progress(net + 1)
    stats = {t: {k: {a: {str(r): {"mean": float(np.mean(v)), "std": float(np.std(v))}
                         for r, v in per_r.items()} for a, per_r in per_a.items()}
                 for k, per_a in per_k.items()} for t, per_k in values.items()}
    return {"results": stats, "d_out": d_outs}


def verdict(score: dict) -> str:
    """"yes", "partly" or "no": the paper's claim on {nonlinearity: mean rank ratio} (see the
    module docstring; "above" is strict, a difference under 1e-12 counts as a tie)."""
    if not (PAPER_HIGH | PAPER_LOW) <= set(score):
        raise ValueError(f"need scores for {sorted(PAPER_HIGH | PAPER_LOW)}, got {sorted(score)}")

    def above(xs, ys):
        return min(score[x] for x in xs) > max(score[y] for y in ys) + 1e-12

    rest = set(score) - PAPER_HIGH - PAPER_LOW
    if above(PAPER_HIGH, PAPER_LOW) and (not rest or (above(PAPER_HIGH, rest)
                                                      and above(rest, PAPER_LOW))):
        return "yes"
    return "partly" if above(PAPER_HIGH, PAPER_LOW) else "no"


def orderings(results: dict, ratios) -> dict:
    """Per kind: nonlinearities (not "none") by mean rank ratio over the SMALL ratios, highest
    first, and the verdict on the paper's claim (see verdict)."""
    small = [str(r) for r in ratios if SMALL[0] <= r <= SMALL[1]] or [str(min(ratios))]
    out = {}
    for kind, per_a in results.items():
        score = {a: float(np.mean([per_a[a][r]["mean"] for r in small]))
                 for a in per_a if a != "none"}
        order = sorted(score, key=score.get, reverse=True)
        shown = order[0] + "".join((" = " if abs(score[a] - score[b]) < 1e-12 else " > ") + b
                                   for a, b in zip(order, order[1:]))
        out[kind] = {"order": order, "shown": shown, "score": score,
                     "paper_ordering": verdict(score), "ratios": small}
    return out


def plot(results: dict, ratios, path: Path, row_labels: dict, subtitle: str) -> Path:
    """One row per tolerance (results' keys, labelled by row_labels), one column per layer kind
    (KINDS), one line per nonlinearity, the linear case dashed; one y-range for all panels."""
    plt = pyplot()
    rows = list(results)
    fig, axes = plt.subplots(len(rows), len(KINDS), figsize=(4.2 * len(KINDS), 3.4 * len(rows)),
                             sharex=True, sharey=True, squeeze=False)
    for i, tol in enumerate(rows):
        for j, kind in enumerate(KINDS):
            ax = axes[i, j]
            for n, (act, per_r) in enumerate(results[tol].get(kind, {}).items()):
                ys = [per_r[str(r)]["mean"] for r in ratios]
                style = (dict(color="black", linestyle="--", zorder=3) if act == "none" else
                         dict(marker="osv^Dx+*"[n % 8], markersize=4, fillstyle="none"))
                ax.plot(ratios, ys, label="linear" if act == "none" else act, **style)
            ax.set_ylim(0, 1.05)
            ax.grid(alpha=0.3)
            if i == 0:
                ax.set_title(KINDS[kind], fontsize=10)
            if i == len(rows) - 1:
                ax.set_xlabel("dimension ratio d_in / d_out")
        axes[i, 0].set_ylabel(f"{row_labels[tol]}\nrank / d_out")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9)
    fig.suptitle(f"ReXNet rank study (Fig. 1): mean over {subtitle}")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--networks", type=int, default=50,
                   help="random networks (paper 1000; about 1.3 s each on one thread)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/rexnet_rank"),
                   help="writes DIR/rank_study.json and DIR/rank_study.png")
    p.add_argument("--ratios", type=float, nargs="+", default=RATIOS, help="d_in / d_out grid")
    p.add_argument("--rtol", type=float, default=None,
                   help="first rank tolerance (first table, figure row), relative to sigma_max "
                        "(default: max(C, N) * eps(float32))")
    p.add_argument("--also-rtol", type=float, nargs="*", default=[1e-2, 1e-1],
                   help="further relative tolerances, counted on the same SVDs (a table, a "
                        "figure row, orderings and JSON each)")
    p.add_argument("--no-center", dest="center", action="store_false",
                   help="count the rank of the raw features; by default each channel's mean "
                        "over N is removed first: a nonlinearity with a large output mean "
                        "(Softplus, ReLU) otherwise sets sigma_max through that one direction, "
                        "and a tolerance relative to sigma_max then measures the mean")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    args = p.parse_args(argv)
    if args.networks < 1 or args.threads < 1 or not all(0 < r <= 1 for r in args.ratios):
        p.error("--networks and --threads must be >= 1, --ratios in (0, 1]")
    torch.set_num_threads(args.threads)
    ratios = sorted({round(r, 4) for r in args.ratios})
    rtols = [args.rtol] + [t for t in dict.fromkeys(args.also_rtol) if t != args.rtol]

    t0 = time.perf_counter()
    every = max(1, args.networks // 10)
    run = study(args.networks, args.seed, ratios=ratios, rtols=rtols, center=args.center,
                progress=lambda n: n % every == 0 and print(
                    f"  {n}/{args.networks} networks, {time.perf_counter() - t0:.0f} s",
                    file=sys.stderr, flush=True))
    seconds = time.perf_counter() - t0
    order = {t: orderings(res, ratios) for t, res in run["results"].items()}

    tolerances = {_label(t): ("max(C, N) * eps(float32) * sigma_max" if t is None
                              else f"{t:g} * sigma_max") for t in rtols}

    print(f"rank / d_out, mean over {args.networks} networks ({seconds:.0f} s, "
          f"{seconds / args.networks:.2f} s per network)")
    for t, per_k in run["results"].items():
        print(f"\n=== tolerance {t}: {tolerances[t]}")
        for kind, per_a in per_k.items():
            print(f"{KINDS[kind]}\n  {'':10s}" + "".join(f"{r:>6.2f}" for r in ratios))
            for act, per_r in per_a.items():
                print(f"  {act:10s}" + "".join(f"{per_r[str(r)]['mean']:6.3f}" for r in ratios))
    print(f"\nnonlinearities by mean rank ratio at d_in/d_out {SMALL[0]}-{SMALL[1]}, highest "
          "first (paper: SiLU/ELU highest, ReLU6/ReLU lowest; verdicts: see --help)")
    for t, per_k in order.items():
        print(f"tolerance {t}")
        for kind, o in per_k.items():
            print(f"  {KINDS[kind][:3]} {o['shown']}: paper's ordering holds: "
                  f"{o['paper_ordering']}")

    settings = {"networks": args.networks, "seed": args.seed, "ratios": ratios,
                "d_out_range": list(D_OUT), "d_in": "max(1, round(ratio * d_out))",
                "batch": BATCH, "spatial": [HW, HW], "N": BATCH * HW * HW,
                "bottleneck": "1x1 d_in->d_out, BN, f, 3x3 (full or depthwise) d_out->d_out, "
                              "BN, f, 1x1 d_out->d_out, BN (hidden width d_out)",
                "bn": "training mode (batch statistics), eps 1e-5",
                "init": "PyTorch default U(+-1/sqrt(fan_in)), no bias", "padding": "same",
                "shortcut": "input added to the first d_in output channels",
                "forward_dtype": "float32", "svd_dtype": "float64",
                "centered": args.center,
                "tolerances": tolerances, "small_ratios": list(SMALL),
                "verdicts": "yes: SiLU, ELU above all others and ReLU, ReLU6 below all others; "
                            "partly: else SiLU, ELU each above ReLU, ReLU6; no: otherwise",
                "threads": args.threads, "seconds": seconds, "torch": torch.__version__}
    write_text_atomic(args.out / "rank_study.json", json.dumps(
        {"settings": settings, "results": run["results"], "orderings": order,
         "d_out": run["d_out"]}, indent=1) + "\n")
    plot(run["results"], ratios, args.out / "rank_study.png",
         {t: ("tol. max(C,N)·eps(fp32)·σ_max" if t == "default" else f"tol. {t}·σ_max")
          for t in tolerances},
         f"{args.networks} random networks; rows: rank tolerance")
    print(f"\nwrote {args.out / 'rank_study.json'} and {args.out / 'rank_study.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
