"""Benchmark the analytic cost model: MAC evaluations per second for a chain spec.

    python scripts/bench_cost.py --arch mobilenetv2_100 --seconds 3

Evolutionary searches score thousands of candidates; the target is at least 10,000
evaluations per second for a 20-block chain spec (mobilenext_100) on one core. Exits
non-zero when an architecture falls below --target.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

from nas.arch.spec import ChainSpec
from nas.arch.zoo import get_spec
from nas.cost import count


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", nargs="+", default=["mobilenext_100", "mobilenetv2_100", "moga_a", "autonl_l", "atomnas_c",
                                          "rexnet_100", "darts_v2"])
    p.add_argument("--seconds", type=float, default=2.0, help="time per architecture")
    p.add_argument("--target", type=float, default=10_000, help="evaluations/s to meet")
    args = p.parse_args(argv)
    print(f"python {platform.python_version()} on {platform.processor() or platform.machine()}")
    ok = True
    for name in args.arch:
        spec = get_spec(name)
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < args.seconds:
            for _ in range(100):
                count(spec)
            n += 100
        rate = n / elapsed
        if isinstance(spec, ChainSpec):  # the target is for chain specs (evolutionary search)
            size, verdict = f"{len(spec.blocks)} blocks", "ok" if rate >= args.target else "BELOW TARGET"
            ok &= rate >= args.target
        else:
            size, verdict = f"{spec.layers} cells", "(no target)"
        print(f"{name:24s} {size:>9s}  {rate:10,.0f} evals/s  {1e6 / rate:6.1f} us/eval  {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
