"""What `trainer.malloc` changes on the CPU: training steps of a network at ImageNet size
with glibc's default allocator and with every buffer kept in the heap (`keep_heap`), in
separate processes, alternating, so that each starts from a fresh allocator.

    python scripts/bench_cpu_heap.py --net mobilenetv2_100 --batch 32 --repeats 3
    python scripts/bench_cpu_heap.py --net atomnas_supernet --batch 32 --steps 3 --repeats 3

Each process: SGD training steps in channels-last on `--threads` threads, `--warmup`
untimed, then the median of `--steps`; its peak resident memory. Reported per setting: the
median over `--repeats` processes and their range.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

SETTINGS = ("default", "heap")


def network(name: str, size: int):
    """A zoo network, or the AtomNAS supernet (the largest network a search trains)."""
    if name == "atomnas_supernet":
        from nas.methods.atomnas.prunable import PrunableChain
        from nas.methods.atomnas.search import AtomNASConfig, supernet_spec
        return PrunableChain(supernet_spec(AtomNASConfig(), num_classes=1000, input_size=size,
                                           in_channels=3))
    from nas.arch.builder import build
    from nas.arch.zoo import get_spec
    return build(get_spec(name, num_classes=1000, input_size=size))


def child(args) -> dict:
    import torch

    from nas.trainer import keep_heap

    if args.child == "heap" and not keep_heap("heap"):
        raise SystemExit("glibc's mallopt is not available here")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = network(args.net, args.size).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(args.batch, 3, args.size, args.size).to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (args.batch,))
    times = []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"step_s": statistics.median(times), "peak_gb": rss_kb / 1024 ** 2}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--net", default="mobilenetv2_100")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--child", choices=SETTINGS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0

    runs: dict[str, list[dict]] = {s: [] for s in SETTINGS}
    passed = list(argv if argv is not None else sys.argv[1:])
    for _ in range(args.repeats):
        for setting in SETTINGS:
            r = subprocess.run([sys.executable, __file__, *passed, "--child", setting],
                               capture_output=True, text=True, check=True)
            runs[setting].append(json.loads(r.stdout.strip().splitlines()[-1]))
    summary = {"net": args.net, "size": args.size, "batch": args.batch,
               "threads": args.threads, "steps": args.steps, "repeats": args.repeats}
    for setting in SETTINGS:
        steps = [r["step_s"] for r in runs[setting]]
        peaks = [r["peak_gb"] for r in runs[setting]]
        summary[setting] = {"step_s": [round(v, 3) for v in steps],
                            "peak_gb": [round(v, 2) for v in peaks]}
        print(f"{setting:8s} step {statistics.median(steps):.3f} s "
              f"({min(steps):.3f}-{max(steps):.3f}), peak memory "
              f"{statistics.median(peaks):.2f} GB ({min(peaks):.2f}-{max(peaks):.2f})")
    speedup = statistics.median(summary["default"]["step_s"]) / statistics.median(
        summary["heap"]["step_s"])
    memory = statistics.median(summary["heap"]["peak_gb"]) / statistics.median(
        summary["default"]["peak_gb"])
    summary.update(speedup=round(speedup, 2), peak_memory_ratio=round(memory, 2))
    print(f"heap: steps {speedup:.2f}x as fast, peak memory x {memory:.2f}")
    if args.out:
        from nas.files import write_text_atomic
        write_text_atomic(args.out, json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
