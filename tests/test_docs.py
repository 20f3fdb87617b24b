"""README.md and docs/ tell the truth about the code: every `python -m nas.` command in them
composes, so that a renamed option, group or overlay cannot leave a stale command behind;
the layout names every module and script; the experiments page names every overlay.

Commands are collected from code blocks (continuation lines joined, `# comments` dropped)
and from inline code spans. Hydra entry points run with `--cfg job` (the unknown-option
check, the composition and every override, nothing trained); a multirun runs once per
value of its sweeps. `nas.zoo` commands run as written. Placeholders: `<run>` is the
directory of a real smoke search, `<repo>` this checkout; a command whose option value is
another placeholder (`method=<name>`) is a template and is skipped; any other placeholder
fails the test, so that a new one gets a rule here.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md")),
         REPO / "experiments" / "README.md"]
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
_INLINE = re.compile(r"`([^`]*python -m nas\.[^`]*)`")
_COMMAND_LINE = re.compile(r"^\s*(\w+=\S+\s+)*python -m nas\.")
_PLACEHOLDER = re.compile(r"<[^<>\s/=][^<>]*>")
_TEMPLATE = re.compile(r"=<[^<>]*>")


def documented_commands(text: str) -> list[str]:
    """The `python -m nas.` commands of a Markdown text, each on one line."""
    found = []
    for lang, body in _FENCE.findall(text):
        if lang == "python":
            continue
        for line in body.replace("\\\n", " ").splitlines():
            if _COMMAND_LINE.match(line):
                found.append(line.strip())
    for span in _INLINE.findall(_FENCE.sub("", text)):
        found.append(" ".join(span.split()))
    return found


def _invocations(command: str, fill: dict[str, str]) -> list[tuple[dict, list[str]]] | None:
    """(environment additions, argv after `python`) for each run that checks `command`;
    None for a template."""
    for key, value in fill.items():
        command = command.replace(key, value)
    if _TEMPLATE.search(command):
        return None
    unknown = _PLACEHOLDER.findall(command)
    assert not unknown, f"{command}: placeholder {unknown[0]} has no rule in {__file__}"
    words = shlex.split(command, comments=True)
    start = words.index("python")
    env = dict(w.split("=", 1) for w in words[:start])
    args = words[start + 1:]
    if ">" in args:                     # `> file`: the output is not the point here
        args = args[:args.index(">")]
    module = args[1]
    if module == "nas.zoo":
        return [(env, args)]
    show = [] if "--cfg" in args else ["--cfg", "job"]
    overrides = [a for a in args[2:] if a not in ("-m", "--multirun")]
    if len(overrides) == len(args) - 2 or not overrides:
        return [(env, args[:2] + overrides + show)]
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    values = [list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.input_line]
              for o in parsed]
    keys = [f"{o.get_key_element()}=" if o.is_sweep_override() else "" for o in parsed]
    return [(env, args[:2] + [k + v[i % len(v)] for k, v in zip(keys, values)]
             + show) for i in range(max(map(len, values)))]


def test_the_pages_hold_the_commands_this_test_reads():
    """The collector finds what a reader sees: fenced, continued and inline commands."""
    text = ("Run `python -m nas.train\narch=moga_a`.\n```\npython -m nas.search -m a=1,2 \\\n"
            "    b=3   # a comment\n```\n```python\nimport nas  # python -m nas.zoo\n```\n")
    assert documented_commands(text) == ["python -m nas.search -m a=1,2      b=3   # a comment",
                                         "python -m nas.train arch=moga_a"]
    runs = _invocations("python -m nas.search -m a=1,2 b=3 # x", {})
    assert [r[1][2:] for r in runs] == [["a=1", "b=3", "--cfg", "job"],
                                        ["a=2", "b=3", "--cfg", "job"]]
    assert _invocations("python -m nas.search method=<name>", {}) is None


def test_every_documented_command_composes(smoke_search, tmp_path):
    run_dir = smoke_search("darts")[0] / "run"
    fill = {"<run>": str(run_dir), "<repo>": str(REPO)}
    runs = {}                                   # one run per distinct invocation
    for page in PAGES:
        for command in documented_commands(page.read_text()):
            for env, args in _invocations(command, fill) or []:
                runs.setdefault((tuple(env.items()), tuple(args)), (page, command))
    failures = []
    for (env, args), (page, command) in runs.items():
        extra = dict(env)
        pythonpath = [str(REPO / p) for p in [".", *extra.pop("PYTHONPATH", "").split(":")] if p]
        assert not extra, f"{command}: only PYTHONPATH=... may precede a command here"
        r = subprocess.run([sys.executable, *args], cwd=tmp_path,
                           env=dict(os.environ, PYTHONPATH=os.pathsep.join(pythonpath)),
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            failures.append(f"{page.relative_to(REPO)}: {command}\n  -> "
                            + " | ".join(r.stderr.strip().splitlines()[:2]))
    assert not failures, f"{len(failures)} of {len(runs)} documented commands fail:\n" + \
        "\n".join(failures)
    assert len(runs) > 50


def test_the_layout_names_every_module_and_script():
    layout = (REPO / "docs" / "layout.md").read_text()
    names = [p.name for p in (REPO / "nas").glob("*.py") if p.name != "__init__.py"]
    names += [f"nas/{p.name}/" for p in (REPO / "nas").iterdir()
              if (p / "__init__.py").is_file()]
    names += [p.name for p in (REPO / "scripts").glob("*.py")]
    assert [n for n in names if n not in layout] == []


def test_the_experiments_page_names_every_overlay():
    page = (REPO / "docs" / "experiments.md").read_text()
    overlays = [p.stem for p in (REPO / "experiments").glob("*.yaml")]
    assert [o for o in overlays if f"+experiment={o} " not in page.replace("\n", " ")] == []


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown page."""
    headings = re.findall(r"^#+ (.+)$", _FENCE.sub("", page.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_every_link_between_the_pages_resolves():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", _FENCE.sub("", page.read_text())):
            if "://" in target:
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists() or (anchor and anchor not in _anchors(dest)):
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert broken == []
