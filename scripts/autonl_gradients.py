"""What moves AutoNL's thresholds: the cross-entropy's gradient against the cost term's.

    python scripts/autonl_gradients.py <search run>/checkpoints/last.ckpt [--batches 8]

Loads the search network of a `method=autonl` checkpoint (the space is rebuilt from the
run's resolved config, <run>/.hydra/config.yaml), and averages over training batches the
gradients of CE (label smoothing 0.1) and of ln(cost) with respect to every threshold, per
kind of decision (kernel, expansion, skip, SE, LightNL insertion, ratio, stride). With
loss = CE + lam ln(cost), a kind whose |CE gradient| is far below lam x |ln-cost gradient|
is decided by the cost term alone, however long the search runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--batches", type=int, default=8)
    args = p.parse_args(argv)

    import torch
    from omegaconf import OmegaConf

    from nas.checkpoints import CheckpointError, read_checkpoint
    from nas.config import check
    from nas.data import data_config, make_datamodule
    from nas.methods.autonl.search import AutoNLConfig, search_space, space_identity
    from nas.methods.stage import check_stage_resume
    from nas.methods.autonl.superkernel import SuperkernelNet

    config = args.checkpoint.parent.parent / ".hydra" / "config.yaml"
    if not config.is_file():
        print(f"error: {config}: no resolved config beside the checkpoint; expected "
              f"<run>/checkpoints/last.ckpt of a `python -m nas.search method=autonl` run",
              file=sys.stderr)
        return 2
    run = OmegaConf.load(config)
    if OmegaConf.select(run, "method.name") != "autonl":
        print(f"error: {config}: not the config of a `method=autonl` search", file=sys.stderr)
        return 2
    method = OmegaConf.to_container(run.method, resolve=True)
    method.pop("_target_", None)
    cfg = check(AutoNLConfig, method, "method")
    dm = make_datamodule(data_config(OmegaConf.to_container(run.data, resolve=True)))
    dm.seed = int(run.seed)   # the search's batch order
    dm.setup()
    space = search_space(cfg, num_classes=dm.num_classes, input_size=dm.input_size,
                         in_channels=dm.in_channels)
    try:
        check_stage_resume(args.checkpoint, "autonl", space_identity(space))
        state = read_checkpoint(args.checkpoint)["state_dict"]
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    net = SuperkernelNet(space, compactness=cfg.compactness)
    net.load_state_dict({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")})
    net.train()
    named = [(n, q) for n, q in net.named_parameters() if n.rsplit(".", 1)[-1].startswith("t_")]
    ce_grads: dict[str, list[float]] = {n: [] for n, _ in named}
    cost_grads: dict[str, list[float]] = {n: [] for n, _ in named}
    torch.manual_seed(0)
    for i, (x, y) in enumerate(dm.train_dataloader()):
        if i == args.batches:
            break
        ce = torch.nn.functional.cross_entropy(net(x), y, label_smoothing=0.1)
        params = [q for _, q in named]
        g_ce = torch.autograd.grad(ce, params, retain_graph=True, allow_unused=True)
        g_cost = torch.autograd.grad(torch.log(net.cost()), params, allow_unused=True)
        for (n, _), a, b in zip(named, g_ce, g_cost):
            ce_grads[n].append(0.0 if a is None else float(a))
            cost_grads[n].append(0.0 if b is None else float(b))
    kinds: dict[str, list[tuple[float, float]]] = {}
    for n, _ in named:
        kinds.setdefault(n.rsplit(".", 1)[-1], []).append(
            (abs(statistics.mean(ce_grads[n])), abs(statistics.mean(cost_grads[n]))))
    print(f"{args.checkpoint}: mean |gradient| per threshold over {args.batches} batches "
          f"(lam = {cfg.lam:g})")
    print(f"{'threshold':<12} {'n':>3} {'|dCE/dt|':>10} {'|dln(cost)/dt|':>15} "
          f"{'CE / (lam ln cost)':>19}")
    for kind, v in kinds.items():
        ce = statistics.mean(a for a, _ in v)
        cost = statistics.mean(b for _, b in v)
        ratio = ce / (cfg.lam * cost) if cfg.lam and cost else float("inf")
        print(f"{kind:<12} {len(v):>3} {ce:>10.2e} {cost:>15.2e} {ratio:>19.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
