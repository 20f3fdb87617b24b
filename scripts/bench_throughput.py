"""Training throughput of zoo networks against torchvision's and timm's, per precision and
memory layout: what `trainer.precision=auto` and `trainer.memory_format=auto` rest on.

    python scripts/bench_throughput.py --out runs/throughput.json            # the GPU check
    python scripts/bench_throughput.py --batch 4 --size 64 --steps 2 --warmup 1   # a CPU try

One training step = forward, cross-entropy, backward, SGD step (momentum 0.9) on a fixed
random batch, on CUDA when there is one (synchronised), else the CPU. Per network,
implementation (nas; torchvision and timm where installed and where they have the network)
and setting (float32 or bf16 autocast, NCHW or channels-last): images per second over
`--steps` steps after `--warmup`. Prints a table and, per network and precision, which
layout was faster; `--out` writes it all as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

# zoo name -> (torchvision constructor, timm name); None where the library has no such net.
OTHERS = {
    "mobilenetv2_100": ("mobilenet_v2", "mobilenetv2_100"),
    "mobilenetv2_140": (None, "mobilenetv2_140"),
    "rexnet_100": (None, "rexnet_100"),
    "rexnet_150": (None, "rexnet_150"),
}
SETTINGS = [("fp32", "nchw"), ("fp32", "channels_last"), ("bf16", "nchw"),
            ("bf16", "channels_last")]


def build(impl: str, name: str, num_classes: int) -> torch.nn.Module | None:
    """The network `name` from `impl`, or None where that library lacks it (or is absent)."""
    if impl == "nas":
        from nas.arch.builder import build as nas_build
        from nas.arch.zoo import get_spec
        return nas_build(get_spec(name, num_classes=num_classes))
    tv_name, timm_name = OTHERS.get(name, (None, None))
    try:
        if impl == "torchvision" and tv_name:
            import torchvision
            return getattr(torchvision.models, tv_name)(num_classes=num_classes)
        if impl == "timm" and timm_name:
            import timm
            return timm.create_model(timm_name, num_classes=num_classes)
    except Exception as e:  # not installed, or a CUDA build that does not import here
        print(f"  {impl}: unavailable ({type(e).__name__}: {str(e)[:80]})", file=sys.stderr)
    return None


def images_per_second(model: torch.nn.Module, *, batch: int, size: int, precision: str,
                      layout: str, steps: int, warmup: int, device: torch.device,
                      num_classes: int = 1000) -> float:
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    model = model.to(device).to(memory_format=fmt).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, size, size, device=device).to(memory_format=fmt)
    y = torch.randint(0, num_classes, (batch,), device=device)
    dtype = torch.bfloat16 if precision == "bf16" else None

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = model(x)
            out = out[0] if isinstance(out, tuple) else out
            loss = torch.nn.functional.cross_entropy(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return batch * steps / (time.perf_counter() - start)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--networks", nargs="+", default=["mobilenetv2_100", "rexnet_100"])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    from nas.cost.timing import device_name
    rows = []
    for name in args.networks:
        for impl in ("nas", "torchvision", "timm"):
            for precision, layout in SETTINGS:
                torch.manual_seed(0)
                model = build(impl, name, 1000)
                if model is None:
                    break
                ips = images_per_second(model, batch=args.batch, size=args.size,
                                        precision=precision, layout=layout, steps=args.steps,
                                        warmup=args.warmup, device=device)
                rows.append({"network": name, "impl": impl, "precision": precision,
                             "layout": layout, "images_per_s": round(ips, 1)})
                print(f"{name:<16} {impl:<12} {precision:<5} {layout:<14} {ips:10.1f} img/s",
                      flush=True)
                del model
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    faster = {}
    for name in args.networks:
        for precision in ("fp32", "bf16"):
            ours = {r["layout"]: r["images_per_s"] for r in rows
                    if (r["network"], r["impl"], r["precision"]) == (name, "nas", precision)}
            if len(ours) == 2:
                best = max(ours, key=ours.get)
                faster[f"{name}/{precision}"] = {"layout": best,
                                                 "ratio": round(ours[best] / min(ours.values()),
                                                                3)}
                print(f"{name} {precision}: {best} is {faster[f'{name}/{precision}']['ratio']}x "
                      f"the other layout")
    summary = {"device": device_name(device), "torch": torch.__version__, "batch": args.batch,
               "size": args.size, "steps": args.steps, "warmup": args.warmup, "rows": rows,
               "faster_layout": faster}
    if args.out:
        from nas.files import write_text_atomic
        write_text_atomic(args.out, json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
