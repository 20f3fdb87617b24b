"""Build a latency lookup table for zoo architectures and check it against whole networks.

    python scripts/build_latency_lut.py --arch moga_a moga_b --threads 1 --out lut.json

Every distinct stem, (block, input channels, resolution) and head of the given
architectures is built alone and timed; the table is saved as JSON. Then each
architecture is built whole and timed with the same settings, and its LUT prediction
(stem + sum of blocks + head, MoGA's latency model) is compared with that measurement.
"""

from __future__ import annotations

import argparse
import sys

from nas.arch.builder import build
from nas.arch.zoo import UnknownArch, get_spec
from nas.cost.lut import LatencyTable
from nas.cost.timing import measure_latency, steady_malloc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", nargs="+", default=["moga_a"], metavar="NAME",
                   help="zoo names (default: moga_a)")
    p.add_argument("--resolution", type=int, default=224, help="input size (default: 224)")
    p.add_argument("--num-classes", type=int, default=1000, help="classes (default: 1000)")
    p.add_argument("--batch", type=int, default=1, help="batch size (default: 1)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: torch's current setting)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--repeats", type=int, default=50, help="timed forwards (default: 50)")
    p.add_argument("--warmup", type=int, default=10, help="untimed forwards (default: 10)")
    p.add_argument("--out", required=True, metavar="PATH", help="where to write the table (JSON)")
    p.add_argument("--default-malloc", action="store_true",
                   help="keep glibc's default malloc thresholds (page faults on activations "
                        "make CPU timings history-dependent; see nas.cost.timing.steady_malloc)")
    args = p.parse_args(argv)
    if not args.default_malloc and args.device.startswith("cpu") and not steady_malloc():
        print("note: mallopt unavailable; CPU timings may include page faults", file=sys.stderr)

    try:
        specs = [get_spec(n, args.num_classes, args.resolution) for n in args.arch]
    except UnknownArch as e:
        p.error(str(e))
    settings = dict(device=args.device, threads=args.threads, warmup=args.warmup,
                    repeats=args.repeats)
    try:
        table = LatencyTable().build(specs, batch=args.batch, **settings)
    except ValueError as e:
        p.error(str(e))
    table.save(args.out)

    rows = []
    for spec in specs:
        predicted = table.predict(spec)
        shape = (args.batch, spec.in_channels, args.resolution, args.resolution)
        measured = measure_latency(build(spec), shape, **settings)
        rows.append((spec.name, len(spec.blocks), predicted, measured,
                     (predicted - measured.median_ms) / measured.median_ms))
    _report(table, rows, args)
    return 0


def _report(table: LatencyTable, rows: list, args: argparse.Namespace) -> None:
    m = table.meta
    title = (f"{len(table)} entries -> {args.out}\n{m['device']}, torch {m['torch_version']}, "
             f"{m['threads']} threads, batch {m['batch']}, {args.resolution}x{args.resolution}, "
             f"median of {m['repeats']} (warmup {m['warmup']}), {m['allocator']} malloc")
    header = ("arch", "blocks", "LUT ms", "measured ms", "p10-p90 ms", "rel. error")
    cells = [(name, str(n), f"{pred:.3f}", f"{meas.median_ms:.3f}",
              f"{meas.p10_ms:.3f}-{meas.p90_ms:.3f}", f"{err:+.1%}")
             for name, n, pred, meas, err in rows]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        print("  ".join(f"{h:>12s}" for h in header))
        for c in cells:
            print("  ".join(f"{v:>12s}" for v in c))
        return
    t = Table(title=title)
    for i, h in enumerate(header):
        t.add_column(h, justify="left" if i == 0 else "right")
    for c in cells:
        t.add_row(*c)
    Console().print(t)


if __name__ == "__main__":
    sys.exit(main())
