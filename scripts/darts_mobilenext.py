"""MobileNeXt's DARTS comparison (its Table 9) at small scale: one command.

    python scripts/darts_mobilenext.py --out runs/mobilenext_darts          # demo scale
    python scripts/darts_mobilenext.py --out runs/mn --budget smoke --train-budget smoke

Searches with the four `method.ops` presets: DARTS's operations (`darts`), `darts+sandglass`,
and both readings of the paper's "+IR" (`darts+ir_added`: one more candidate, its Table 9;
`darts+ir_replacing`: in sep_conv_3x3's place, its Table 11's operator count) with the same
data, seed and budget (`python -m nas.search method=darts method.ops=...`), trains the
derived networks with the printed train command (`python -m nas.train arch=file
...`, DARTS's evaluation recipe at that budget), and writes a table of params, MACs and
accuracy (`table.md`, `table.csv`) beside the paper's figures. Each step runs in its own
directory under --out; a finished step found there is reused, not rerun, and an
interrupted search continues from its last epoch (`resume_dir=`), so a stopped comparison
goes on where it stopped. Extra arguments after `--` go to every
search and training (e.g. `-- data=cifar10 data.root=/data/cifar`).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shlex
import subprocess
import sys
from pathlib import Path

from nas.files import write_text_atomic

REPO = Path(__file__).resolve().parents[1]
# MobileNeXt Tables 9 and 11 (CIFAR-10, DARTS's protocol): test error %, params (M). The
# paper gives one "+IR" figure; its two tables count its operators differently (8 and 7).
PAPER = {"darts": (3.11, 3.25), "darts+sandglass": (2.98, 2.45),
         "darts+ir_added": (3.26, 3.29), "darts+ir_replacing": (3.26, 3.29)}
OPS = tuple(PAPER)


def step_dir(out: Path, kind: str, ops: str) -> Path:
    return out / f"{kind}_{ops.replace('+', '_')}"


def run(cmd: list[str], done: Path) -> None:
    """Run an entry point unless `done` (its finished-run file) exists already."""
    if done.is_file():
        print(f"reusing {done.parent} (finished)")
        return
    print("$ " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd, cwd=REPO)
    if r.returncode != 0:
        raise SystemExit(f"error: step failed with exit status {r.returncode}: "
                         f"{' '.join(cmd)}")


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/mobilenext_darts"))
    p.add_argument("--budget", default="demo", help="search budget (default %(default)s)")
    p.add_argument("--train-budget", default=None,
                   help="training budget of the derived networks (default: --budget)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--order", type=int, choices=[1, 2], default=1, help="DARTS order")
    p.add_argument("extra", nargs="*", help="overrides for every search and training "
                                            "(after --)")
    args = p.parse_args(argv)
    args.train_budget = args.train_budget or args.budget
    return args


def main(argv=None) -> int:
    args = parse(argv)
    out = args.out.resolve()
    rows = []
    for ops in OPS:
        search = step_dir(out, "search", ops)
        if (search / ".hydra" / "config.yaml").is_file():
            # An interrupted search continues in place from its last epoch.
            command = ["nas.search", f"resume_dir={search}",
                       f"hydra.run.dir={step_dir(out, 'resume', ops)}"]
        else:
            command = ["nas.search", "method=darts", f"budget={args.budget}",
                       f"method.ops={ops}", f"method.order={args.order}", f"seed={args.seed}",
                       *args.extra, f"hydra.run.dir={search}"]
        run([sys.executable, "-m", *command], search / "result.json")
        train = step_dir(out, "train", ops)
        found = json.loads((search / "result.json").read_text())
        # The command the search printed (its data and input size), at the training budget.
        printed = shlex.split(found["train_command"])[3:]  # after "python -m nas.train"
        run([sys.executable, "-m", "nas.train", *printed, f"budget={args.train_budget}",
             f"seed={args.seed}", *args.extra, f"hydra.run.dir={train}"],
            train / "metrics.json")
        trained = json.loads((train / "metrics.json").read_text())
        rows.append({
            "ops": ops, "params": trained["params"], "macs": trained["macs"],
            "test_top1": trained.get("test_top1"), "val_top1": trained.get("final_val_top1"),
            "param_free_normal": found["param_free_normal"],
            "param_free_reduce": found["param_free_reduce"],
            "normal": found["genotype_normal"], "reduce": found["genotype_reduce"],
            "paper_error": PAPER[ops][0], "paper_params_m": PAPER[ops][1]})

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    write_text_atomic(out / "table.csv", buf.getvalue())
    lines = ["| operations | params | MACs | test top-1 | parameter-free edges (normal, "
             "reduce) | paper: error, params |", "|---|---|---|---|---|---|"]
    for r in rows:
        top1 = "-" if r["test_top1"] is None else f"{100 * r['test_top1']:.2f} %"
        lines.append(f"| {r['ops']} | {r['params']:,} | {r['macs'] / 1e6:.2f} M | {top1} | "
                     f"{r['param_free_normal']}, {r['param_free_reduce']} | "
                     f"{r['paper_error']} %, {r['paper_params_m']} M |")
    table = "\n".join(lines) + "\n"
    write_text_atomic(out / "table.md", table)
    print("\n" + table)
    for r in rows:
        print(f"{r['ops']}: normal {r['normal']}; reduce {r['reduce']}")
    print(f"wrote {out / 'table.md'} and {out / 'table.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
