"""Checks of the command line that Hydra would otherwise answer with its whole search path.

An unknown option of a config group (`arch=no_such_arch`, `method=mogaa`) makes Hydra print
every available option, the config search path and a hint about HYDRA_FULL_ERROR, and
exit 1. The entry points check the group choices first and answer with one line naming the
closest options, exit status 2.
"""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path
from typing import Sequence

GROUPS = ("arch", "data", "method", "optim", "trainer", "logger", "budget", "recipe",
          "experiment", "compare", "selection")
# `group=option`, or `group@package=option` for a group placed elsewhere (optim@method.optim).
_CHOICE = re.compile(r"^\+{0,2}((" + "|".join(GROUPS) + r")(?:@[\w.]+)?)=(.+)$")
_SEARCHPATH = re.compile(r"^hydra\.searchpath=\[(.*)\]$")


def _search_dirs(argv: Sequence[str], conf_dir: Path) -> list[Path]:
    dirs = [conf_dir]
    for arg in argv:
        m = _SEARCHPATH.match(arg)
        if m:
            dirs += [Path(p.strip().removeprefix("file://")) for p in m.group(1).split(",")
                     if p.strip().startswith("file://")]
    return dirs


def _options(group: str, dirs: list[Path]) -> set[str]:
    """Every option of `group`: its YAML files (recipes nested, as `paper/moga_a`; a method's
    folder holds its budget scales, which are not options of `method`)."""
    found = set()
    for d in dirs:
        root = d / group
        files = root.rglob("*.yaml") if group == "recipe" else root.glob("*.yaml")
        found |= {p.relative_to(root).with_suffix("").as_posix() for p in files}
    return found


def unknown_choice(argv: Sequence[str], conf_dir: Path) -> str | None:
    """One line about the first group choice on the command line that names no option, or
    None. Multirun lists (`arch=a,b`) are checked item by item; sweeps written with Hydra's
    functions (`choice(...)`, `range(...)`) and interpolations are left to Hydra."""
    dirs = _search_dirs(argv, conf_dir)
    for arg in argv:
        m = _CHOICE.match(arg)
        if not m or any(c in m.group(3) for c in "($[{"):
            continue
        key, group, options = m.group(1), m.group(2), None
        for value in m.group(3).split(","):
            options = options if options is not None else _options(group, dirs)
            if value not in options:
                close = difflib.get_close_matches(value, sorted(options), n=3, cutoff=0.5)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                return (f"{key}={value}: no such option{hint} (the options are "
                        f"conf/{group}/*.yaml: {len(options)} of them)")
    return None


def exit_on_unknown_choice(conf_dir: Path) -> None:
    """For the entry points: one line on stderr and exit status 2 for an unknown option."""
    message = unknown_choice(sys.argv[1:], conf_dir)
    if message:
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
