"""Deliberate breakages the test suite must catch (docs/mutants.md).

Each breakage is one edit to a copy of ``src/`` in a temporary directory; the tests run
against that copy (``PYTHONPATH``), and the tests that fail are printed. ``src/`` itself is
never touched. Run from the project root, in an environment with the test dependencies:
``python tests/mutants_breakages.py [NAME...]``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TESTS = [
    "tests/test_reader.py",
    "tests/test_coordinator.py",
    "tests/test_reliability.py",
    "tests/test_checkpoints.py",
    "tests/test_pages.py",
    "tests/test_lineage.py",
    "tests/test_delivery.py",
]
FINISHED = "return parent is None or parent not in self._shards or is_finished(parent)"

# name: (file, text in it, replacement, what the breakage does)
BREAKAGES: dict[str, tuple[str, str, str, str]] = {
    "a1": (
        "_reader.py",
        "                self._take_done(self._policies)\n            self._save_checkpoint()",
        "                self._take_done(self._policies)\n"
        "            if self._held is not None and self.failure_kind == 'handler':\n"
        "                self.delivered = self._held['dynamodb']['SequenceNumber']\n"
        "            self._save_checkpoint()",
        "the final checkpoint counts the record whose handler is failing as delivered",
    ),
    "a2": (
        "_reader.py",
        "                    self._handler_failed(raw, exc)\n                    return False",
        "                    self._handler_failed(raw, exc)\n"
        "                    if stopping():\n"
        "                        last, raw = raw, next(records, None)\n"
        "                        break\n"
        "                    return False",
        "a handler call that fails while stop() is asked counts its record as delivered",
    ),
    "b": (
        "_coordinator.py",
        "        if checkpoint is None and first_contact:\n"
        "            if parent is None:\n"
        "                start = self.settings.start_position\n"
        "            elif parent.skipped:\n"
        '                start = "LATEST"',
        "        if checkpoint is None:\n            start = self.settings.start_position",
        "start_position (LATEST) for every shard without a checkpoint, children included",
    ),
    "c": (
        "_coordinator.py",
        "                raise error  # what retrying cannot fix",
        "                continue",
        "an error from a shard's step is dropped",
    ),
    "d1": (
        "_lineage.py",
        FINISHED,
        "return parent is None or is_finished(parent)",
        "a parent that is no longer listed (trimmed away) holds its children",
    ),
    "d2": (
        "_reader.py",
        "        self.delivered = self._latest_at = self._read_to = None\n"
        '        self._start = "TRIM_HORIZON"',
        '        self._read_to = None\n        self._start = "TRIM_HORIZON"',
        "a trimmed checkpoint is kept after the gap is reported",
    ),
    "d3": (
        "_reader.py",
        "        self._end_reached = True  # nothing of it is left to read: its children may start",
        "        pass",
        "a shard removed before it was read to its end never ends",
    ),
    "e": (
        "_coordinator.py",
        "                    self._orphans.add(shard_id)\n                    discover_soon = True",
        "                    pass",
        "no rediscovery when a shard ends whose children are unknown",
    ),
    "f": (
        "_lineage.py",
        FINISHED,
        "return parent is None or parent not in self._shards or self._shards[parent].closed",
        "children start once the parent is closed rather than finished",
    ),
    "g": ("_lineage.py", FINISHED, "return True", "every shard is ready: children start early"),
    "h1": (
        "_delivery.py",
        "        while items and items[0].done:",
        "        while items and (items[0].done or len(items) > 1 and items[1].done):",
        "the checkpoint passes a record still in hand when the next one is done",
    ),
    "h2": (
        "_reader.py",
        "        after = self._read_to if self._read_to is not None else self.delivered",
        "        after = self.delivered",
        "a new iterator resumes after the last record done, not the last one queued",
    ),
    "h3": (
        "_delivery.py",
        "            try:\n                on_failure(batch)\n            except Exception as exc:",
        "            try:\n"
        "                self._consume(lane, count)\n"
        "                on_failure(batch)\n"
        "            except Exception as exc:",
        "records given up count as done before on_failure accepted them",
    ),
    "h4": (
        "_delivery.py",
        "        lane, count = self._key_lanes.get(key) or (min(self._lanes, key=_load), 0)",
        "        lane, count = (min(self._lanes, key=_load), 0)",
        "an item with records in hand may go to another lane (its order is lost)",
    ),
}


def main(names: list[str]) -> int:
    missed = []
    for name in names or list(BREAKAGES):
        filename, old, new, what = BREAKAGES[name]
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copytree("src", Path(tmp) / "src")
            path = Path(tmp) / "src" / "ddbstreams" / filename
            text = path.read_text()
            if text.count(old) != 1:
                print(f"{name}: the text to break is not in {filename} once; update this script")
                return 2
            path.write_text(text.replace(old, new))
            env = {**os.environ, "PYTHONPATH": str(Path(tmp) / "src")}
            run = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS]
            out = subprocess.run(run, env=env, capture_output=True, text=True).stdout
        failed = sorted({line.split()[1] for line in out.splitlines() if line.startswith("FAILED")})
        print(f"{name}: {what}")
        print("".join(f"    caught by {test}\n" for test in failed) or "    NOT CAUGHT\n", end="")
        if not failed:
            missed.append(name)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
