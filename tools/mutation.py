#!/usr/bin/env python
"""Mutation-test one loopml module against one test file and print its score.

    python tools/mutation.py src/loopml/tracking/filter.py tests/tracking/test_filter.py

mutmut (in the ``dev`` extra) makes small changes to the module — a flipped comparison, a
removed ``raise``, a changed constant — and runs the test file against each; a change the
tests don't notice *survives* and points at behaviour nothing pins down. The score is the
share of mutants killed (a timeout counts as killed).

It runs in a scratch copy of ``src/`` and ``tests/`` under ``.mutation/<module>/`` (ignored by
git), started afresh each time, so the working tree is never touched and two modules never
share mutmut's cache. Shared settings are ``[tool.mutmut]`` in ``pyproject.toml``; this script
adds which file to mutate and which tests to run. Afterwards, ``cd .mutation/<module>`` and
``mutmut show NAME`` (or ``mutmut browse``) to look at a survivor; ``--show`` prints them all.

Exit status: 0 when the score reaches ``--min-score`` (default 0), 1 below it, 2 on bad
arguments or when mutmut could not run (its log is kept in ``.mutation/<module>/mutmut.log``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KILLED = {"killed", "timeout", "caught by type check"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("module", help="the file to mutate, e.g. src/loopml/pipelines/dag.py")
    parser.add_argument("tests", help="the test file to run, e.g. tests/pipelines/test_dag.py")
    parser.add_argument(
        "--max-children",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="mutants tested in parallel (default: 2, or 1 on a one-core machine)",
    )
    parser.add_argument(
        "--min-score", type=float, default=0.0, help="exit 1 when the score (%%) is below this"
    )
    parser.add_argument("--show", action="store_true", help="print the diff of every survivor")
    args = parser.parse_args(argv)

    module, tests = Path(args.module), Path(args.tests)
    for path, what in ((module, "module"), (tests, "test file")):
        if path.is_absolute() or not (ROOT / path).is_file():
            parser.error(f"{what} {str(path)!r} is not a file relative to {ROOT}")
    if module.parts[0] != "src" or module.suffix != ".py":
        parser.error(f"module {str(module)!r} must be a .py file under src/")
    mutmut = shutil.which("mutmut", path=str(Path(sys.executable).parent)) or shutil.which("mutmut")
    if mutmut is None:
        parser.error('mutmut is not installed: pip install -e ".[dev]"')

    work = ROOT / ".mutation" / ".".join(module.with_suffix("").parts[1:])
    prepare(work, module, tests)
    print(f"mutating {module} against {tests} in {work.relative_to(ROOT)} ...", flush=True)
    log = work / "mutmut.log"
    with log.open("w") as out:
        run = subprocess.run(
            [mutmut, "run", "--max-children", str(args.max_children)],
            cwd=work,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
    results = subprocess.run(
        [mutmut, "results", "--all", "true"], cwd=work, capture_output=True, text=True
    )
    statuses = dict(re.findall(r"^\s+(\S+): (.+)$", results.stdout, re.MULTILINE))
    if run.returncode != 0 or not statuses:
        print(log.read_text()[-4000:], file=sys.stderr)
        print(f"error: mutmut failed (exit {run.returncode}); full log: {log}", file=sys.stderr)
        return 2

    counts = Counter(statuses.values())
    scored = len(statuses) - counts["skipped"]
    killed = sum(counts[s] for s in KILLED)
    score = 100.0 * killed / scored if scored else 0.0
    survivors = sorted(name for name, status in statuses.items() if status not in KILLED)
    for name in survivors:
        print(f"  {statuses[name]:<10} {name}")
        if args.show:
            diff = subprocess.run(
                [mutmut, "show", name], cwd=work, capture_output=True, text=True
            ).stdout
            print("    " + "\n    ".join(diff.strip().splitlines()[1:]))
    detail = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    print(f"{module}: {score:.1f}% ({killed}/{scored} mutants killed; {detail})")
    return 0 if score >= args.min_score else 1


def prepare(work: Path, module: Path, tests: Path) -> None:
    """A fresh scratch copy with a pyproject.toml that mutates ``module`` against ``tests``."""
    if work.exists():
        shutil.rmtree(work)
    junk = shutil.ignore_patterns("__pycache__", "*.egg-info", ".pytest_cache")
    shutil.copytree(ROOT / "src", work / "src", ignore=junk)
    shutil.copytree(ROOT / "tests", work / "tests", ignore=junk)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    mutmut = {
        **project.get("mutmut", {}),
        "source_paths": ["src"],
        "only_mutate": [str(module)],
        "pytest_add_cli_args_test_selection": [str(tests)],
    }
    text = "".join(
        f"[tool.{section}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items())
        for section, table in (
            ("mutmut", mutmut),
            ("pytest.ini_options", project["pytest"]["ini_options"]),
        )
    )
    (work / "pyproject.toml").write_text(text)


if __name__ == "__main__":
    sys.exit(main())
