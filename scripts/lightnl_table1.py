"""AutoNL Table 1: the MACs each non-local variant adds to MobileNetV2 1.0 at 224x224.

    python scripts/lightnl_table1.py [--measure] [--out runs/lightnl_table1.csv]

One block after the projection of each of MobileNetV2's 17 inverted residuals (specs 1.2),
for the variants of nas.ops.lightnl.NL_VARIANTS; the compact ones (Eq. 9, LightNL) keep 25 %
of the channels and sub-sample keys and values by 2 on maps larger than 14x14. The added
MACs are analytic (nas.ops.lightnl.nonlocal_macs); `--measure` also counts them with
torch's FLOP counter on the modules (on the meta device: nothing is computed) as a check.

The compact rows are also given without the key stride, and the script says which reading
is nearer the paper's figure: its Eq. 9 row (+38 M) had no spatial sub-sampling (37.98 M;
36.24 M with it), its LightNL row (+15 M) had it (14.75 M; 16.48 M without).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

PAPER = {"wang": "+6.2 G", "levi": "+146 M", "eq3": "+119 M", "eq5": "+93 M", "eq7": "+66 M",
         "eq9": "+38 M", "lightnl": "+15 M"}
LABELS = {"wang": "Wang et al. NL (theta, phi, g, W_z 1x1)",
          "levi": "Levi et al. (same, cheaper association)",
          "eq3": "Eq. 3 (theta shared by both sides) + W_z 1x1",
          "eq5": "Eq. 5 (one shared transform) + W_z 1x1",
          "eq7": "Eq. 7 (no transform: x x^T x) + W_z 1x1",
          "eq9": "Eq. 9 (compact: 25 % channels, stride 2 > 14x14) + W_z 1x1",
          "lightnl": "Eq. 9 + Eq. 8 (W_z dw 3x3) = LightNL"}
# The compact variants, also without their key stride.
NO_STRIDE_LABELS = {"eq9": "Eq. 9 (compact: 25 % channels, no key stride) + W_z 1x1",
                    "lightnl": "LightNL without the key stride"}


def paper_macs(text: str) -> float:
    """'+38 M' -> 38e6, '+6.2 G' -> 6.2e9."""
    number, unit = text.lstrip("+").split()
    return float(number) * {"M": 1e6, "G": 1e9}[unit]


def placements():
    """(channels, map size) after each of MobileNetV2 1.0's 17 blocks at 224x224."""
    from nas.arch.shapes import conv_out, iter_blocks
    from nas.arch.zoo import get_spec

    spec = get_spec("mobilenetv2_100")
    return spec, [(b.out, conv_out(hw, b.stride)) for _, b, _, hw in iter_blocks(spec)]


def measured_macs(variant: str, ch: int, hw: int, ratio: float, stride: int) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from nas.ops.lightnl import NonLocalVariant

    with torch.device("meta"):
        module = NonLocalVariant(variant, ch, ratio=ratio, stride=stride)
        x = torch.empty(1, ch, hw, hw)
    with FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops() // 2


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--measure", action="store_true",
                   help="also count the MACs with torch's FLOP counter")
    p.add_argument("--out", type=Path, default=None, help="also write the table as CSV")
    args = p.parse_args(argv)

    from nas.cost import count
    from nas.ops.lightnl import NL_VARIANTS, nonlocal_macs

    spec, where = placements()
    base = count(spec).macs
    rows = []
    for v in NL_VARIANTS:
        for strided in ((True, False) if v in NO_STRIDE_LABELS else (True,)):
            added = measured = 0
            for ch, hw in where:
                stride = 2 if hw > 14 and strided else 1
                added += nonlocal_macs(v, ch, hw, hw, ratio=0.25, stride=stride)
                if args.measure:
                    measured += measured_macs(v, ch, hw, 0.25, stride)
            rows.append({"variant": v if strided else f"{v}_no_stride",
                         "description": LABELS[v] if strided else NO_STRIDE_LABELS[v],
                         "added_macs": added,
                         "measured_macs": measured if args.measure else "",
                         "paper": PAPER[v]})
    print(f"MobileNetV2 1.0 at 224x224: {base / 1e6:.1f} M MACs (paper: 301 M); a non-local "
          f"block after each of its {len(where)} blocks adds:")
    print(f"{'variant':<62} {'added MACs':>12} {'measured':>12} {'paper':>8}")
    for r in rows:
        m = f"{r['measured_macs'] / 1e6:.2f} M" if args.measure else "-"
        print(f"{r['description']:<62} {r['added_macs'] / 1e6:>10.2f} M {m:>12} {r['paper']:>8}")
    by = {r["variant"]: r["added_macs"] for r in rows}
    for v in NO_STRIDE_LABELS:
        paper = paper_macs(PAPER[v])
        nearer = "without" if abs(by[f"{v}_no_stride"] - paper) < abs(by[v] - paper) else "with"
        print(f"{v}: the paper's {PAPER[v]} is the reading {nearer} the key stride "
              f"({by[v] / 1e6:.2f} M with it, {by[f'{v}_no_stride'] / 1e6:.2f} M without)")
    print("Zhu et al. (+107 M in the paper, pyramid pooling) is not a variant of this block "
          "and is left out.")
    if args.measure and any(r["added_macs"] != r["measured_macs"] for r in rows):
        print("error: the analytic and measured MACs differ", file=sys.stderr)
        return 1
    if args.out:
        from nas.files import write_text_atomic

        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        write_text_atomic(args.out, buf.getvalue())
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
