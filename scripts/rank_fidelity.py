"""Supernet ranking fidelity: does the MoGA supernet order architectures as training them does?

    python scripts/rank_fidelity.py --width 0.125 --save-supernet runs/rf/supernet.pt \
        --out runs/rf/rank_fidelity.json            # the README's study (about 25 minutes)
    python scripts/rank_fidelity.py --supernet runs/search/<run>/supernet.pt \
        --width 0.25 --stem-stride 2 --out rf.json   # a supernet written by nas.search

The search trusts the supernet's estimate of a candidate (BN recalibration of its path on
fixed training batches, then top-1 or cross-entropy on fixed held-out batches:
CandidateScorer, `--score`) as a stand-in for the accuracy the candidate would reach
trained on its own. This script measures how far that holds: it trains a FairNAS supernet
as the demo search does on the search's training part of the embedded data (or loads
one), draws N architectures with a seeded generator (by default a ladder from the
cheapest networks of the space to the dearest), scores each with the supernet exactly as
the search does, trains each from scratch --standalone-seeds times (same seeds, data order
and SGD cosine recipe for all; ranked by the mean) on the same training part, evaluates it
on every image no network trained on (or --eval-on), and reports Kendall's tau-b between
the two orders (1: same order, 0: unrelated, -1: reversed) for the search's score and for
both scores, a table and a JSON file (--out) with every figure.

Three references read the figure: unrelated orders of N give tau with a standard deviation
of sqrt(2 (2N + 5) / (9 N (N - 1))) (`null std`, 0.22 at N = 12); the stand-alone
accuracies must span more than one architecture's seed-to-seed spread (both printed), or
there is no order to recover; and the stand-alone runs of two seeds agree with one another
only so far, which bounds what any proxy can reach against one short training.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import math
import pickle
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nas.arch.builder import build
from nas.cost import count
from nas.data import make_datamodule
from nas.files import write_text_atomic
from nas.memory_format import set_memory_format
from nas.methods.moga.fairnas import FairNASModule
from nas.cost.lut_report import kendall_tau as kendall_tau_b  # tau-b: ties are common
from nas.methods.moga.search import (N_CHOICES, SCORES, CandidateScorer, add_demo_arguments,
                              demo_setting, moga_space, score_value)
from nas.optim import OptimConfig, build_optimizer
from nas.seeding import mix_seed
from nas.trainer import BudgetConfig, LoggerConfig, TrainerConfig, make_trainer



def tau_null_std(n: int) -> float:
    """Standard deviation of tau between two unrelated orders of n items (no ties)."""
    return math.sqrt(2 * (2 * n + 5) / (9 * n * (n - 1))) if n > 1 else float("nan")


def quiet_lightning() -> None:
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")


def train_supernet(space, args, train_loader) -> tuple[torch.nn.Module, float, float]:
    """FairNAS as `python -m nas.search method=moga` trains it (seeded, same recipe)."""
    import pytorch_lightning as pl

    pl.seed_everything(args.seed, workers=True, verbose=False)
    module = FairNASModule(space, args.optim, batch_size=args.per_path_batch, seed=args.seed,
                           weights=args.weights)
    trainer = make_trainer(
        args.out.parent, TrainerConfig(accelerator="cpu", enable_progress_bar=False),
        BudgetConfig(epochs=args.supernet_epochs,
                     limit_train_batches=args.supernet_batches or 1.0),
        LoggerConfig(csv=False, wandb=False), name="rank_fidelity_supernet", seed=args.seed,
        limit_val_batches=0, enable_checkpointing=False, num_sanity_val_steps=0)
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=train_loader)
    # The last step's loss per path: ln(10) = 2.30 means the supernet predicts nothing.
    loss = float(trainer.callback_metrics.get("train/loss", torch.tensor(float("nan"))))
    return module.supernet.cpu(), time.perf_counter() - start, loss


class InputError(Exception):
    """A bad --supernet file; reported as one line with exit status 2."""


def load_supernet(space, path: Path, width: float, stem_stride: int,
                  weights: str) -> torch.nn.Module:
    from nas.methods.moga.supernet import ChainSupernet

    supernet = ChainSupernet(space, weights)
    where = f"--supernet {path}"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"{where}: no such file") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InputError(f"{where}: not a state_dict ({first[:160]})") from None
    if not isinstance(state, dict):
        raise InputError(f"{where}: not a state_dict (a {type(state).__name__})")
    # Name the first difference: a wrong --width shows as a shape (the stem stride changes
    # no shape, so a wrong --stem-stride cannot be told from the file).
    own = supernet.state_dict()
    for key, value in own.items():
        if key not in state or getattr(state[key], "shape", None) != value.shape:
            got = "missing" if key not in state else list(getattr(state[key], "shape", []))
            raise InputError(f"{where}: does not match the MoGA supernet at --width {width} "
                             f"--stem-stride {stem_stride}: {key} is {got}, expected "
                             f"{list(value.shape)}")
    extra = sorted(set(state) - set(own))
    if extra:
        raise InputError(f"{where}: unexpected key {extra[0]} for the MoGA supernet")
    supernet.load_state_dict(state)
    return supernet


def standalone(spec, args, train_loader, eval_batches, seed: int) -> tuple[float, float, float]:
    """Train from scratch (same seed and data order for every candidate); held-out top-1."""
    torch.manual_seed(seed)
    model = build(spec)
    set_memory_format(model, "auto", torch.device("cpu"))
    # Every candidate sees the same batches and crops: the loader's EpochSampler fixes both
    # by epoch; the global RNG, which building consumes by a spec-dependent amount, is reset.
    torch.manual_seed(mix_seed(seed, 1))
    cfg = OptimConfig(name="sgd", lr=args.lr, lr_reference_batch=args.batch, momentum=0.9,
                      nesterov=True, weight_decay=4e-5, no_weight_decay_on_bn_and_bias=True,
                      schedule="cosine", warmup_epochs=0.0, min_lr=0.0, label_smoothing=0.0)
    steps = len(train_loader) if args.train_batches is None else min(args.train_batches,
                                                                      len(train_loader))
    opt, sched = build_optimizer(model, cfg, batch_size=args.batch, steps_per_epoch=steps,
                                 max_epochs=args.epochs)
    criterion = nn.CrossEntropyLoss()
    start = time.perf_counter()
    model.train()
    loss = torch.tensor(float("nan"))
    for epoch in range(args.epochs):
        train_loader.sampler.set_epoch(epoch)
        for x, y in itertools.islice(train_loader, steps):
            loss = criterion(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    seconds = time.perf_counter() - start
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in eval_batches:
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    return correct / max(1, total), float(loss.detach()), seconds


def choice_ladders(space) -> list[list[int]]:
    """Per searchable layer, its choices from the cheapest to the dearest (MACs of the
    network with that layer changed alone; ties keep the choice order)."""
    base = [0] * len(space.searchable)
    ladders = []
    for layer in range(len(base)):
        macs = [count(space.to_spec(base[:layer] + [g] + base[layer + 1:])).macs
                for g in range(len(space.positions[space.searchable[layer]]))]
        ladders.append(sorted(range(len(macs)), key=lambda g: macs[g]))
    return ladders


def sample_vectors(space, n: int, seed: int, ladder: bool = False,
                   window: int = 2) -> list[list[int]]:
    """n distinct decision vectors from a seeded generator: uniformly drawn, or with
    `ladder` a ladder from the cheapest networks of the space to the dearest.

    Uniform draws concentrate around the middle of the cost range (a sum of 14 layers), so
    their accuracies differ little. On the ladder, network k of n takes in every layer the
    choice whose rank by cost is k/(n-1) of the way up, moved by a uniform draw of at most
    `window` ranks: the cost grows along the ladder and the layers still vary."""
    g = torch.Generator().manual_seed(seed)
    ladders = choice_ladders(space) if ladder else []
    out: list[list[int]] = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 1000 * n:
            raise ValueError(f"could not draw {n} distinct architectures from the space")
        if not ladder:
            v = space.sample(g)
        else:
            k = len(out)
            v = []
            for order in ladders:  # one layer's choices, cheapest first
                top = len(order) - 1
                shift = int(torch.randint(-window, window + 1, (1,), generator=g))
                v.append(order[min(top, max(0, round(k * top / (n - 1)) + shift))])
        if v not in out:
            out.append(v)
    return out


def ranks(values) -> list[int]:
    """1 = best (highest); ties share the better rank."""
    return [1 + sum(w > v for w in values) for v in values]


def parse(argv):
    demo, demo_epochs, demo_batch, demo_data = demo_setting()
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("supernet")
    g.add_argument("--supernet", type=Path, default=None, metavar="PATH",
                   help="load this supernet.pt (a state_dict from `python -m nas.search "
                        "method=moga`) instead of training one; give the --width and --stem-stride it was "
                        "trained with (a wrong width is detected, a wrong stem stride is not)")
    g.add_argument("--supernet-epochs", type=int, default=demo_epochs,
                   help="FairNAS epochs when training here (default: the demo search's, "
                        "%(default)s)")
    g.add_argument("--supernet-batches", type=int, default=None,
                   help="FairNAS steps per epoch (default: the whole training part)")
    g.add_argument("--save-supernet", type=Path, default=None, metavar="PATH",
                   help="write the trained supernet's state_dict here (reusable via --supernet)")
    add_demo_arguments(p.add_argument_group("supernet and scoring (as the search)"), demo,
                       demo_batch)
    g = p.add_argument_group("stand-alone training")
    g.add_argument("--n", type=int, default=12, help="architectures sampled")
    g.add_argument("--sample", choices=["ladder", "uniform"], default="ladder",
                   help="ladder: from the cheapest networks of the space to the dearest, whose "
                        "accuracies differ more than uniform draws' do (default %(default)s)")
    g.add_argument("--epochs", type=int, default=8, help="stand-alone epochs")
    g.add_argument("--standalone-seeds", type=int, default=3,
                   help="train every candidate this many times (seeds --seed, --seed+1, ...) "
                        "and rank by the mean; with 2 or more, the agreement of the runs with "
                        "one another is reported too: the most a proxy can be expected to reach")
    g.add_argument("--batch", type=int, default=64, help="stand-alone batch size")
    g.add_argument("--lr", type=float, default=0.05,
                   help="Nesterov SGD lr at --batch, cosine to 0 (0.1 diverges early here)")
    g.add_argument("--train-batches", type=int, default=None,
                   help="stand-alone steps per epoch (default: the whole training part)")
    g.add_argument("--eval-on", choices=["heldout", "val", "unseen"], default="unseen",
                   help="stand-alone top-1 on the held-out part of the training split "
                        "(where the supernet scores), on the val split, or on every image "
                        "no network trains on (held-out, val and test: the least noisy)")
    g.add_argument("--eval-batches", type=int, default=None,
                   help="at most this many eval batches of --score-batch (default: all)")
    p.add_argument("--seed", type=int, default=0, help="sampling, supernet and training seed")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: demo-scale tensors are small, and with other "
                        "processes on this 2-core machine a second OpenMP thread made steps "
                        "several times slower)")
    p.add_argument("--out", type=Path, default=Path("runs/rank_fidelity.json"),
                   help="JSON file written with every figure")
    args = p.parse_args(argv)
    for key in ("supernet_epochs", "supernet_batches", "per_path_batch", "recal_steps",
                "score_batches", "score_batch", "n", "epochs", "standalone_seeds", "batch", "train_batches",
                "eval_batches", "threads"):
        v = getattr(args, key)
        if v is not None and v < 1:
            p.error(f"--{key.replace('_', '-')} must be >= 1, got {v}")
    if args.n < 2:
        p.error("--n must be at least 2 to rank anything")
    if args.width <= 0 or args.lr <= 0:
        p.error("--width and --lr must be positive")
    args.optim = demo.optim  # the supernet recipe of the search
    args.data = demo_data    # and its data overrides (the held-out fraction)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    quiet_lightning()
    t0 = time.perf_counter()

    def data(batch):
        dm = make_datamodule({**args.data, "name": "embedded", "batch_size": batch})
        dm.seed = args.seed
        return dm

    fair_dm = data(args.per_path_batch * N_CHOICES)
    space = moga_space(width=args.width, stem_stride=args.stem_stride, init=args.init,
                       num_classes=fair_dm.num_classes, input_size=fair_dm.input_size)
    fair_train, _ = fair_dm.search_dataloaders()

    if args.supernet is not None:
        try:
            supernet = load_supernet(space, args.supernet, args.width, args.stem_stride,
                                     args.weights)
        except InputError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        supernet_seconds, supernet_loss = 0.0, float("nan")
        print(f"supernet: loaded {args.supernet}")
    else:
        supernet, supernet_seconds, supernet_loss = train_supernet(space, args, fair_train)
        print(f"supernet: FairNAS {args.supernet_epochs} epoch(s) in {supernet_seconds:.0f} s, "
              f"last loss per path {supernet_loss:.3f} (chance: ln 10 = 2.303)")
        if args.save_supernet:
            args.save_supernet.parent.mkdir(parents=True, exist_ok=True)
            torch.save(supernet.state_dict(), args.save_supernet)

    # The search's scoring batches: the first training batches cut to one path's share for
    # BN recalibration, the held-out part for top-1 (the same batches for every candidate).
    recal = [(x[:args.per_path_batch], y[:args.per_path_batch])
             for x, y in itertools.islice(fair_train, args.recal_steps)]
    score_dm = data(args.score_batch)
    _, held_loader = score_dm.search_dataloaders()
    set_memory_format(supernet, "auto", torch.device("cpu"))  # as the search scores
    scorer = CandidateScorer(supernet, recal, list(itertools.islice(held_loader,
                                                                    args.score_batches)),
                             torch.device("cpu"))
    loaders = {"heldout": [held_loader], "val": [score_dm.val_dataloader()],
               "unseen": [held_loader, score_dm.val_dataloader(), score_dm.test_dataloader()]}
    eval_batches = list(itertools.islice(itertools.chain(*loaders[args.eval_on]),
                                         args.eval_batches))
    alone_train, _ = data(args.batch).search_dataloaders()

    rows = []
    for k, vector in enumerate(sample_vectors(space, args.n, args.seed, args.sample == "ladder")):
        start = time.perf_counter()
        top1, loss = scorer.evaluate(vector)
        score = score_value(top1, loss, args.score)
        score_seconds = time.perf_counter() - start
        spec = space.to_spec(vector)
        runs = [standalone(spec, args, alone_train, eval_batches, args.seed + s)
                for s in range(args.standalone_seeds)]
        mean = float(np.mean([r[0] for r in runs]))
        train_seconds = sum(r[2] for r in runs)
        cost = count(spec)
        rows.append({"genome": vector, "supernet_score": score, "supernet_top1": top1,
                     "supernet_loss": loss, "standalone_top1": mean,
                     "standalone_runs": [r[0] for r in runs],
                     "standalone_final_loss": [r[1] for r in runs],
                     "params": cost.params, "macs": cost.macs,
                     "score_seconds": round(score_seconds, 3),
                     "train_seconds": round(train_seconds, 1)})
        each = ", ".join(f"{100 * r[0]:.2f}" for r in runs)
        print(f"[{k + 1}/{args.n}] {'-'.join(map(str, vector))}: supernet {100 * top1:.2f} % "
              f"(loss {loss:.4f}), stand-alone {100 * mean:.2f} % (runs: {each}; "
              f"{train_seconds:.0f} s)", flush=True)

    sup = [r["supernet_score"] for r in rows]
    alone = [r["standalone_top1"] for r in rows]
    tau = kendall_tau_b(sup, alone)
    # Both estimates, whichever the search uses.
    taus = {s: kendall_tau_b([score_value(r["supernet_top1"], r["supernet_loss"], s)
                              for r in rows], alone) for s in SCORES}
    # Seed-to-seed spread of a stand-alone accuracy against the spread of the architectures.
    seed_std = (float(np.mean([np.std(r["standalone_runs"], ddof=1) for r in rows]))
                if args.standalone_seeds > 1 else float("nan"))
    # Agreement of the stand-alone runs with one another (mean over pairs of seeds).
    pairs = [kendall_tau_b([r["standalone_runs"][a] for r in rows],
                           [r["standalone_runs"][b] for r in rows])
             for a, b in itertools.combinations(range(args.standalone_seeds), 2)]
    pairs = [t for t in pairs if not math.isnan(t)]
    self_tau = float(np.mean(pairs)) if pairs else float("nan")
    for r, a, b in zip(rows, ranks(sup), ranks(alone)):
        r["supernet_rank"], r["standalone_rank"] = a, b
    total = time.perf_counter() - t0

    print(f"\n{'genome':<43} {'supernet':>8} {'loss':>7} {'rank':>4} {'alone':>7} {'rank':>4} "
          f"{'params':>8} {'MMACs':>7}")
    for r in sorted(rows, key=lambda r: r["standalone_rank"]):
        print(f"{'-'.join(map(str, r['genome'])):<43} {100 * r['supernet_top1']:7.2f}% "
              f"{r['supernet_loss']:7.4f} {r['supernet_rank']:>4} "
              f"{100 * r['standalone_top1']:6.2f}% {r['standalone_rank']:>4} "
              f"{r['params']:>8,} {r['macs'] / 1e6:7.2f}")
    null = tau_null_std(args.n)
    print(f"\nKendall tau-b (supernet {args.score} vs stand-alone, N={args.n}): {tau:+.3f}  "
          f"(null std {null:.2f}; " + ", ".join(f"{s}: {t:+.3f}" for s, t in taus.items())
          + f"); {total:.0f} s in all")
    if args.standalone_seeds > 1:
        spread = max(alone) - min(alone)
        print(f"stand-alone top-1 spans {100 * spread:.2f} points over the architectures; one "
              f"architecture's seeds differ by {100 * seed_std:.2f} points (mean std)")
    if args.standalone_seeds > 1:
        print(f"stand-alone runs of different seeds agree with tau-b {self_tau:+.3f}")

    result = {
        "kendall_tau_b": None if math.isnan(tau) else tau,
        "score": args.score,
        "kendall_tau_b_by_score": {s: None if math.isnan(t) else t for s, t in taus.items()},
        "tau_null_std": null,
        "standalone_seed_std": None if math.isnan(seed_std) else seed_std,
        "standalone_self_tau_b": None if math.isnan(self_tau) else self_tau,
        "supernet_final_loss": None if math.isnan(supernet_loss) else supernet_loss,
        "n": args.n,
        "settings": {k: (str(v) if isinstance(v, Path) else
                         dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v)
                     for k, v in vars(args).items()},
        "scoring": {"recal_images": args.recal_steps * args.per_path_batch,
                    "heldout_images": sum(len(y) for _, y in scorer.eval_batches)},
        "standalone_eval_images": sum(len(y) for _, y in eval_batches),
        "torch_threads": torch.get_num_threads(),
        "seconds": {"supernet": round(supernet_seconds, 1),
                    "scoring": round(sum(r["score_seconds"] for r in rows), 1),
                    "standalone": round(sum(r["train_seconds"] for r in rows), 1),
                    "total": round(total, 1)},
        "architectures": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
