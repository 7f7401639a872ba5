"""Checkpoint stores: never backwards, finished sticks, SQLite durable and shared."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddbstreams import (
    Checkpoint,
    CheckpointStore,
    CheckpointStoreError,
    InMemoryCheckpointStore,
    SQLiteCheckpointStore,
)

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/label"


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> CheckpointStore:
    if request.param == "memory":
        return InMemoryCheckpointStore()
    return SQLiteCheckpointStore(tmp_path / "checkpoints.db")


def test_a_consumer_rejects_a_store_without_the_protocol_s_methods() -> None:
    from ddbstreams import ConfigurationError, StreamConsumer

    class Half:
        def load(self, stream_arn: str, shard_id: str) -> None: ...

    with pytest.raises(ConfigurationError, match="load, load_all and save"):
        StreamConsumer(print, stream_arn=ARN, client=object(), checkpoint_store=Half())  # type: ignore[arg-type]


def test_delete_forgets_only_the_named_shards(store: CheckpointStore) -> None:
    for shard in ("a", "b", "c"):
        store.save(ARN, shard, Checkpoint("1" * 21, finished=True))
    store.save("other-arn", "a", Checkpoint("2" * 21))
    store.delete(ARN, ["a", "c"])  # type: ignore[attr-defined]
    assert store.load_all(ARN) == {"b": Checkpoint("1" * 21, finished=True)}
    assert store.load("other-arn", "a") == Checkpoint("2" * 21)


def test_an_older_sqlite_database_gains_the_pin_column(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE ddbstreams_checkpoints (stream_arn TEXT NOT NULL, shard_id TEXT NOT "
            "NULL, sequence_number TEXT, finished INTEGER NOT NULL DEFAULT 0, updated_at REAL "
            "NOT NULL, PRIMARY KEY (stream_arn, shard_id))"
        )
        db.execute("INSERT INTO ddbstreams_checkpoints VALUES (?, 's', '7', 0, 0)", (ARN,))
    store = SQLiteCheckpointStore(path)
    assert store.load(ARN, "s") == Checkpoint("7")
    store.save(ARN, "t", Checkpoint(None, latest_at=12.5))
    assert store.load(ARN, "t") == Checkpoint(None, latest_at=12.5)


def test_save_and_load(store: CheckpointStore) -> None:
    assert store.load(ARN, "s1") is None
    store.save(ARN, "s1", Checkpoint("100000000000000000001"))
    store.save(ARN, "s2", Checkpoint(None, finished=True))
    store.save("other-arn", "s1", Checkpoint("5" * 21))
    assert store.load(ARN, "s1") == Checkpoint("100000000000000000001")
    assert store.load_all(ARN) == {
        "s1": Checkpoint("100000000000000000001"),
        "s2": Checkpoint(None, finished=True),
    }


def test_compares_sequence_numbers_as_integers(store: CheckpointStore) -> None:
    # As strings "999..." (21 digits) > "1000..." (22 digits): wrong.
    store.save(ARN, "s", Checkpoint("9" * 21))
    store.save(ARN, "s", Checkpoint("1" + "0" * 21))
    assert store.load(ARN, "s") == Checkpoint("1" + "0" * 21)
    store.save(ARN, "s", Checkpoint("9" * 21))
    assert store.load(ARN, "s") == Checkpoint("1" + "0" * 21)


def test_finished_is_never_undone(store: CheckpointStore) -> None:
    store.save(ARN, "s", Checkpoint("200000000000000000000", finished=True))
    store.save(ARN, "s", Checkpoint("300000000000000000000"))
    assert store.load(ARN, "s") == Checkpoint("200000000000000000000", finished=True)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=10**20, max_value=10**40), min_size=1, max_size=20))
def test_checkpoint_never_moves_backwards(sequence: list[int]) -> None:
    store = InMemoryCheckpointStore()
    highest = 0
    for value in sequence:
        store.save(ARN, "s", Checkpoint(str(value)))
        highest = max(highest, value)
        saved = store.load(ARN, "s")
        assert saved is not None
        assert saved.sequence_number is not None
        assert int(saved.sequence_number) == highest


def test_sqlite_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    first = SQLiteCheckpointStore(path)
    first.save(ARN, "s", Checkpoint("123456789012345678901"))
    first.close()
    assert SQLiteCheckpointStore(path).load(ARN, "s") == Checkpoint("123456789012345678901")


def _hammer(path: str, offset: int) -> None:
    store = SQLiteCheckpointStore(path)
    for i in range(200):
        store.save(ARN, f"shard-{i % 4}", Checkpoint(str(10**20 + i * 2 + offset)))


def test_sqlite_is_safe_for_several_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    SQLiteCheckpointStore(path).close()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_hammer, args=(path, offset)) for offset in (0, 1)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    saved = SQLiteCheckpointStore(path).load_all(ARN)
    # Each shard ends at the highest value either process wrote to it.
    for shard in range(4):
        highest = max(10**20 + i * 2 + offset for i in range(shard, 200, 4) for offset in (0, 1))
        assert saved[f"shard-{shard}"] == Checkpoint(str(highest))


def test_sqlite_rejects_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CheckpointStoreError, match=r"garbage\.db.*move it aside"):
        SQLiteCheckpointStore(path)


def test_sqlite_rejects_a_database_with_a_foreign_table(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE ddbstreams_checkpoints (something TEXT)")
    with pytest.raises(CheckpointStoreError, match=r"other\.db"):
        SQLiteCheckpointStore(path)


def test_sqlite_missing_directory_says_so(tmp_path: Path) -> None:
    with pytest.raises(CheckpointStoreError) as error:
        SQLiteCheckpointStore(tmp_path / "missing-dir" / "c.db")
    message = str(error.value)
    assert f"the directory '{tmp_path / 'missing-dir'}' does not exist" in message
    assert f"mkdir -p {tmp_path / 'missing-dir'}" in message
    assert "damaged" not in message


def test_sqlite_directory_under_a_file_says_so(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("notes")
    with pytest.raises(CheckpointStoreError, match="is a file, not a directory") as error:
        SQLiteCheckpointStore(tmp_path / "notes.txt" / "c.db")
    assert "damaged" not in str(error.value)


def test_sqlite_path_that_is_a_directory_says_so(tmp_path: Path) -> None:
    with pytest.raises(CheckpointStoreError, match="it is a directory") as error:
        SQLiteCheckpointStore(tmp_path)
    assert "damaged" not in str(error.value)


def test_sqlite_locked_database_says_so(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(CheckpointStoreError, match=r"kept it locked for more than 0\.1 s"):
            SQLiteCheckpointStore(path, timeout=0.1)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


# Root reads and writes any file whatever its permissions, by its capabilities
# CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH: run as root, the check runs in a child process
# that drops both from its bounding set (prctl PR_CAPBSET_DROP) and executes Python anew,
# so that the kernel refuses it as it would refuse any other user.
_WITHOUT_ROOT_OVERRIDE = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
    if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
        sys.exit(77)
os.execv(sys.executable, [sys.executable, "-c", sys.argv[1], *sys.argv[2:]])
"""
_OPEN_STORE = """
import sys
from ddbstreams import CheckpointStoreError, SQLiteCheckpointStore
try:
    SQLiteCheckpointStore(sys.argv[1])
except CheckpointStoreError as exc:
    print(exc)
else:
    print("opened")
"""


def open_store_without_permission_override(path: Path) -> str:
    """The error of opening ``path`` as a process that file permissions apply to."""
    if os.geteuid() != 0:
        try:
            SQLiteCheckpointStore(path)
        except CheckpointStoreError as exc:
            return str(exc)
        return "opened"
    if not sys.platform.startswith("linux"):
        pytest.skip("running as root, and dropping root's capabilities needs Linux")
    child = subprocess.run(
        [sys.executable, "-c", _WITHOUT_ROOT_OVERRIDE, _OPEN_STORE, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if child.returncode == 77:
        pytest.skip("running as root, and this process may not drop its capabilities")
    assert child.returncode == 0, child.stderr
    return child.stdout.strip()


def test_sqlite_read_only_file_says_permissions(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.db"
    SQLiteCheckpointStore(path).close()
    path.chmod(0o400)  # read-only: a checkpoint store must write
    message = open_store_without_permission_override(path)
    assert "may not both read and write the file" in message
    assert "damaged" not in message


def test_sqlite_unwritable_directory_says_permissions(tmp_path: Path) -> None:
    directory = tmp_path / "read-only"
    directory.mkdir()
    directory.chmod(0o500)
    try:
        message = open_store_without_permission_override(directory / "checkpoints.db")
    finally:
        directory.chmod(0o700)
    assert f"may not create files in '{directory}'" in message
    assert "damaged" not in message


def test_sqlite_says_which_action_failed_and_what_to_check(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    store = SQLiteCheckpointStore(path, timeout=0)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        advice = (
            "database is locked. Check that the file is writable and not damaged (a consumer "
            "retries, and pauses reading while its position cannot be saved)."
        )
        with pytest.raises(CheckpointStoreError) as caught:
            store.save(ARN, "s", Checkpoint("1" * 21))
        assert str(caught.value) == f"could not write checkpoints in {str(path)!r}: {advice}"
        with pytest.raises(CheckpointStoreError) as caught:
            store.delete(ARN, ["s"])
        assert str(caught.value) == f"could not delete checkpoints in {str(path)!r}: {advice}"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    store.save(ARN, "s", Checkpoint("1" * 21))  # the lock gone, it works again
    assert store.load(ARN, "s") == Checkpoint("1" * 21)


def test_deleting_shards_that_have_no_checkpoint_is_not_an_error(store: CheckpointStore) -> None:
    store.save(ARN, "a", Checkpoint("1" * 21))
    store.delete(ARN, ["never-saved", "a"])  # type: ignore[attr-defined]
    assert store.load_all(ARN) == {}
