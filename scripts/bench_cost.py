"""Benchmark the analytic cost model: MAC evaluations per second for a chain spec.

    python scripts/bench_cost.py --arch mobilenetv2_100 --seconds 3

Evolutionary searches score thousands of candidates; the target is at least 10,000
evaluations per second for a 20-block chain spec on one core.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

from nas.arch.zoo import get_spec
from nas.cost import count


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", nargs="+", default=["mobilenetv2_100", "moga_a", "atomnas_c", "rexnet_100"])
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
        ok &= rate >= args.target
        print(f"{name:24s} {len(spec.blocks):3d} blocks  {rate:10,.0f} evals/s  "
              f"{1e6 / rate:6.1f} us/eval  {'ok' if rate >= args.target else 'BELOW TARGET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
