"""The public surface: one sorted __all__, everything documented, typed."""

from __future__ import annotations

import inspect
from pathlib import Path

import ddbstreams
import ddbstreams.testing


def test_all_is_sorted_and_unique() -> None:
    assert ddbstreams.__all__ == sorted(set(ddbstreams.__all__))


def test_every_public_name_is_exported_and_nothing_private_leaks() -> None:
    public = {
        name
        for name, value in vars(ddbstreams).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public == set(ddbstreams.__all__) - {"__version__"}


def test_issue_surface_is_present() -> None:
    required = {
        "StreamConsumer",
        "ShardCoordinator",
        "Record",
        "CheckpointStore",
        "InMemoryCheckpointStore",
        "SQLiteCheckpointStore",
        "DDBStreamsError",
    }
    assert required <= set(ddbstreams.__all__)


def test_errors_share_one_base() -> None:
    errors = [getattr(ddbstreams, n) for n in ddbstreams.__all__ if n.endswith("Error")]
    assert len(errors) >= 10
    for error in errors:
        assert issubclass(error, ddbstreams.DDBStreamsError), error


def test_every_public_object_has_a_docstring() -> None:
    for module in (ddbstreams, ddbstreams.testing):
        for name in module.__all__:
            value = getattr(module, name)
            if inspect.isclass(value) or inspect.isfunction(value):
                assert inspect.getdoc(value), f"{module.__name__}.{name} has no docstring"


def test_package_is_typed() -> None:
    assert (Path(ddbstreams.__file__).parent / "py.typed").exists()
