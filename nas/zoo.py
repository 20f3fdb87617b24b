"""`python -m nas.zoo`: every published architecture with its params, MACs and the
published figures; `--json` for machines; `show NAME` prints the expanded spec as YAML."""

from __future__ import annotations

import argparse
import json
import sys

from nas.arch import io
from nas.arch.zoo import ZOO, UnknownArch, get_spec
from nas.console import quiet_third_party
from nas.cost import count


def rows() -> list[dict]:
    """One dict per zoo name at its default setting (224x224 and 1000 classes; CIFAR for DARTS)."""
    out = []
    for name, e in ZOO.items():
        c = count(get_spec(name))
        out.append({"name": name, "paper": e.paper, "params": c.params,
                    "params_nobn": c.params_nobn, "macs": c.macs, "extra_macs": c.extra_macs,
                    "num_classes": e.num_classes, "input_size": e.input_size,
                    "official_params": e.official_params, "published": e.published})
    return out


def _print_table(data: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="nas zoo: analytic counts (224x224, 1000 classes; DARTS: 32x32, 10 classes)")
    for col, just in [("name", "left"), ("params", "right"), ("no-BN", "right"),
                      ("MACs", "right"), ("+matmul", "right"), ("official", "right"),
                      ("published params / FLOPs / top-1", "left")]:
        t.add_column(col, justify=just)
    for r in data:
        official = "" if r["official_params"] is None else (
            "[green]=[/green]" if r["official_params"] == r["params"]
            else f"[red]{r['official_params']:,}[/red]")
        t.add_row(r["name"], f"{r['params']:,}", f"{r['params_nobn']:,}",
                  f"{r['macs'] / 1e6:.2f} M",
                  f"{r['extra_macs'] / 1e6:.2f} M" if r["extra_macs"] else "",
                  official, r["published"])
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # a pipe or file: no wrapping of long rows
    console.print(t)


def main(argv: list[str] | None = None) -> int:
    quiet_third_party()
    p = argparse.ArgumentParser(prog="python -m nas.zoo", description=__doc__)
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    sub = p.add_subparsers(dest="cmd")
    show = sub.add_parser("show", help="print the expanded spec of one architecture as YAML")
    show.add_argument("name")
    show.add_argument("--num-classes", type=int, default=None)
    show.add_argument("--input-size", type=int, default=None)
    args = p.parse_args(argv)
    try:
        if args.cmd == "show":
            for flag in ("num_classes", "input_size"):
                value = getattr(args, flag)
                if value is not None and value < 1:
                    raise ValueError(f"--{flag.replace('_', '-')}: expected a positive integer, "
                                     f"got {value}")
            sys.stdout.write(io.dumps(get_spec(args.name, args.num_classes, args.input_size)))
        elif args.json:
            print(json.dumps(rows(), indent=1))
        else:
            _print_table(rows())
    except (UnknownArch, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
