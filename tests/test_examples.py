"""The examples run: the exercise end to end, as `nox -s demo` runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.mark.slow
@pytest.mark.local_endpoint
@pytest.mark.moto_only(reason="the example starts its own moto endpoint")
def test_run_exercise_end_to_end() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "run_exercise.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "OK: the stream delivered INSERT, MODIFY, REMOVE" in out
    assert "order_status: 'pending' -> 'shipped'" in out
    assert (
        out.index("eventName = INSERT")
        < out.index("eventName = MODIFY")
        < out.index("eventName = REMOVE")
    )
