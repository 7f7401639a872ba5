"""Summarise a `mutmut run`: counts per module, and the survivors that mypy --strict lets
through (a survivor that mypy rejects cannot reach main, where `nox -s typecheck` runs).

Run from the project root after `mutmut run`: ``python tests/mutants_report.py``.
A mutant counts as rejected by mypy when its mutated function has an error that the
original function does not have (mutmut's copies of a function share some errors, such
as attributes defined again in each copy of ``__init__``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

MUTANTS = Path("mutants")
STATUSES = ["killed", "survived", "timeout", "suspicious", "no tests", "not checked"]


def results() -> dict[str, str]:
    """Every mutant's status, from `mutmut results --all true`."""
    out = subprocess.run(
        ["mutmut", "results", "--all", "true"], capture_output=True, text=True, check=True
    ).stdout
    statuses = {}
    for line in out.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name.startswith("ddbstreams."):
            statuses[name] = status
    return statuses


def rejected_by_mypy() -> dict[str, str]:
    """Mutant name -> the first mypy error that its function has and the original lacks."""
    out = subprocess.run(
        ["mypy", "--output", "json", "--no-incremental"],
        cwd=MUTANTS,
        capture_output=True,
        text=True,
    ).stdout
    errors_by_function: dict[str, set[tuple[str, str]]] = defaultdict(set)
    spans_by_file: dict[str, list[tuple[str, int, int]]] = {}
    for line in out.splitlines():
        if not line.strip().startswith("{"):
            continue
        error = json.loads(line)
        if error["code"] == "unused-ignore":  # an ignore that a mutation made unneeded
            continue
        file = error["file"]
        if file not in spans_by_file:
            spans_path = MUTANTS / (file + ".spans")
            spans = json.loads(spans_path.read_text())["spans"] if spans_path.exists() else {}
            spans_by_file[file] = [(name, start, end) for name, (start, end) in spans.items()]
        module = file.removeprefix("src/").removesuffix(".py").replace("/", ".")
        for name, start, end in spans_by_file[file]:
            if start <= error["line"] <= end:
                message = re.sub(r"line \d+", "line N", error["message"])
                errors_by_function[f"{module}.{name}"].add((error["code"], message))
                break
    rejected = {}
    for name, errors in errors_by_function.items():
        original = re.sub(r"__mutmut_\d+$", "__mutmut_orig", name)
        if name != original and errors - errors_by_function.get(original, set()):
            rejected[name] = sorted(errors - errors_by_function.get(original, set()))[0][1]
    return rejected


def main() -> int:
    statuses = results()
    rejected = rejected_by_mypy() if "--no-mypy" not in sys.argv else {}
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    left = []
    for name, status in statuses.items():
        module = name.split(".")[1]
        if status == "survived" and name in rejected:
            status = "survived, mypy rejects"
        counts[module][status] += 1
        if status not in ("killed", "survived, mypy rejects"):
            left.append(f"{name}: {status}")
    columns = ["killed", "survived, mypy rejects", *STATUSES[1:]]

    def row(label: str, cells: list[object]) -> str:
        return f"{label:<14}" + "".join(
            f"{cell!s:>{len(c) + 3}}" for c, cell in zip(columns, cells, strict=True)
        )

    print(row("module", list(columns)))
    total = Counter[str]()
    for module in sorted(counts):
        print(row(module, [counts[module][c] for c in columns]))
        total.update(counts[module])
    print(row("total", [total[c] for c in columns]))
    print(f"\nnot killed, and not rejected by mypy ({len(left)}; `mutmut show NAME`):")
    print("\n".join(sorted(left)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
