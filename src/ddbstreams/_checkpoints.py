"""How far each shard has been read: the CheckpointStore protocol and two stores."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import struct
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ._errors import CheckpointStoreError


@dataclass(frozen=True)
class Checkpoint:
    """How far one shard has been read.

    ``sequence_number`` is the last record the handler finished (``None`` if none yet);
    ``finished`` means the shard was read to its end, so its children may start.
    A checkpoint with no sequence number marks a shard whose reading has begun:
    ``begun_at`` is the service's UNIX time then (a shard that delivers nothing for 24 hours
    after it may have lost records to the retention), and ``latest_at`` pins a start at
    LATEST, so that an expired iterator or a restart resumes from there rather than from a
    new LATEST. Both matter only until the first record is checkpointed.
    """

    sequence_number: str | None
    finished: bool = False
    latest_at: float | None = None
    begun_at: float | None = None

    def covers(self, other: Checkpoint) -> bool:
        """True if this checkpoint is at or past ``other`` (so ``other`` would move it back)."""
        if self.finished:
            return True
        if other.finished:
            return False
        if other.sequence_number is None:
            return True
        if self.sequence_number is None:
            return False
        return int(self.sequence_number) >= int(other.sequence_number)


@runtime_checkable
class CheckpointStore(Protocol):
    """Where a consumer remembers, per stream and shard, how far it has read.

    Implementations must be safe to call from several threads, must never move a shard's
    checkpoint backwards (a ``save`` that would is ignored: use :meth:`Checkpoint.covers`),
    and must keep ``finished`` once set. Sequence numbers are compared as integers. A store
    that cannot be reached raises :class:`CheckpointStoreError`; the consumer retries.

    A store may also offer ``delete(stream_arn, shard_ids)``: the consumer then removes
    the checkpoints of finished shards that the stream no longer lists and whose children
    have begun, so that the store does not grow with the stream's age.
    """

    def load(self, stream_arn: str, shard_id: str) -> Checkpoint | None:
        """The checkpoint of one shard, or ``None`` if it has none."""
        ...

    def load_all(self, stream_arn: str) -> dict[str, Checkpoint]:
        """Every shard's checkpoint of one stream, by shard id."""
        ...

    def save(self, stream_arn: str, shard_id: str, checkpoint: Checkpoint) -> None:
        """Record ``checkpoint`` unless the stored one already covers it."""
        ...


class InMemoryCheckpointStore:
    """A checkpoint store in a dict: for tests and for consumers that need no resume."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._checkpoints: dict[tuple[str, str], Checkpoint] = {}

    def load(self, stream_arn: str, shard_id: str) -> Checkpoint | None:
        with self._lock:
            return self._checkpoints.get((stream_arn, shard_id))

    def load_all(self, stream_arn: str) -> dict[str, Checkpoint]:
        with self._lock:
            return {
                shard: checkpoint
                for (arn, shard), checkpoint in self._checkpoints.items()
                if arn == stream_arn
            }

    def save(self, stream_arn: str, shard_id: str, checkpoint: Checkpoint) -> None:
        with self._lock:
            current = self._checkpoints.get((stream_arn, shard_id))
            if current is None or not current.covers(checkpoint):
                self._checkpoints[(stream_arn, shard_id)] = checkpoint

    def delete(self, stream_arn: str, shard_ids: Iterable[str]) -> None:
        """Forget the checkpoints of these shards."""
        with self._lock:
            for shard_id in shard_ids:
                self._checkpoints.pop((stream_arn, shard_id), None)

    def overwrite(self, stream_arn: str, checkpoints: Mapping[str, Checkpoint | None]) -> None:
        """Set these shards' checkpoints as given, backwards too (``None`` forgets one):
        for a seek, with no consumer running."""
        with self._lock:
            for shard_id, checkpoint in checkpoints.items():
                if checkpoint is None:
                    self._checkpoints.pop((stream_arn, shard_id), None)
                else:
                    self._checkpoints[(stream_arn, shard_id)] = checkpoint


_SCHEMA = """
CREATE TABLE IF NOT EXISTS ddbstreams_checkpoints (
    stream_arn      TEXT    NOT NULL,
    shard_id        TEXT    NOT NULL,
    sequence_number TEXT,
    finished        INTEGER NOT NULL DEFAULT 0,
    updated_at      REAL    NOT NULL,
    latest_at       REAL,
    begun_at        REAL,
    PRIMARY KEY (stream_arn, shard_id)
)
"""


_COLUMNS = "sequence_number, finished, latest_at, begun_at"
_SELECT_ONE = f"SELECT {_COLUMNS} FROM ddbstreams_checkpoints WHERE stream_arn = ? AND shard_id = ?"


def _checkpoint(row: tuple[Any, ...]) -> Checkpoint:
    return Checkpoint(row[0], bool(row[1]), row[2], row[3])


class SQLiteCheckpointStore:
    """Checkpoints in a SQLite file: durable across restarts and process crashes.

    Every save is one transaction (WAL journal, ``synchronous=FULL``), taken with
    ``BEGIN IMMEDIATE`` so that several processes on one host can share the file. A file
    that is not a ddbstreams checkpoint database raises :class:`CheckpointStoreError`
    rather than starting over.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 30.0) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        if os.path.isfile(self.path) and not os.access(self.path, os.R_OK | os.W_OK):
            # SQLite would open it read-only, and fail only at the first save.
            raise _open_error(self.path, None, timeout)
        try:
            self._db = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
            columns = {
                row[1] for row in self._db.execute("PRAGMA table_info(ddbstreams_checkpoints)")
            }
            for column in ("latest_at", "begun_at"):  # a database of an earlier ddbstreams
                if column not in columns:
                    self._db.execute(f"ALTER TABLE ddbstreams_checkpoints ADD COLUMN {column} REAL")
            self._db.execute(
                f"SELECT stream_arn, shard_id, {_COLUMNS}, updated_at "
                "FROM ddbstreams_checkpoints LIMIT 1"
            ).fetchall()
        except sqlite3.Error as exc:
            raise _open_error(self.path, exc, timeout) from exc

    def load(self, stream_arn: str, shard_id: str) -> Checkpoint | None:
        rows = self._query(_SELECT_ONE, (stream_arn, shard_id))
        return _checkpoint(rows[0]) if rows else None

    def load_all(self, stream_arn: str) -> dict[str, Checkpoint]:
        rows = self._query(
            f"SELECT shard_id, {_COLUMNS} FROM ddbstreams_checkpoints WHERE stream_arn = ?",
            (stream_arn,),
        )
        return {row[0]: _checkpoint(row[1:]) for row in rows}

    def save(self, stream_arn: str, shard_id: str, checkpoint: Checkpoint) -> None:
        with self._transaction("write"):
            row = self._db.execute(_SELECT_ONE, (stream_arn, shard_id)).fetchone()
            if row is None or not _checkpoint(row).covers(checkpoint):
                self._db.execute(
                    "INSERT OR REPLACE INTO ddbstreams_checkpoints (stream_arn, shard_id, "
                    "sequence_number, finished, updated_at, latest_at, begun_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        stream_arn,
                        shard_id,
                        checkpoint.sequence_number,
                        int(checkpoint.finished),
                        time.time(),
                        checkpoint.latest_at,
                        checkpoint.begun_at,
                    ),
                )

    def overwrite(self, stream_arn: str, checkpoints: Mapping[str, Checkpoint | None]) -> None:
        """Set these shards' checkpoints as given, backwards too (``None`` forgets one), in
        one transaction: for a seek. A consumer running on the file would not notice, and
        would write its own position over it: see :meth:`other_processes`."""
        with self._transaction("write"):
            for shard_id, checkpoint in checkpoints.items():
                self._db.execute(
                    "DELETE FROM ddbstreams_checkpoints WHERE stream_arn = ? AND shard_id = ?",
                    (stream_arn, shard_id),
                )
                if checkpoint is None:
                    continue
                self._db.execute(
                    "INSERT INTO ddbstreams_checkpoints (stream_arn, shard_id, "
                    "sequence_number, finished, updated_at, latest_at, begun_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        stream_arn,
                        shard_id,
                        checkpoint.sequence_number,
                        int(checkpoint.finished),
                        time.time(),
                        checkpoint.latest_at,
                        checkpoint.begun_at,
                    ),
                )

    def other_processes(self) -> list[int] | None:
        """Ids of the other processes that have this database open (a running consumer),
        or ``None`` where that cannot be told (a platform other than Linux or macOS).

        Every SQLite connection to a WAL database holds a shared lock on one byte of its
        ``-shm`` file (the "dead man switch") while it is open; ``F_GETLK`` names a process
        that holds it. Locks of this process are not seen."""
        return _wal_holders(self.path)

    def delete(self, stream_arn: str, shard_ids: Iterable[str]) -> None:
        """Forget the checkpoints of these shards (one transaction)."""
        with self._transaction("delete"):
            self._db.executemany(
                "DELETE FROM ddbstreams_checkpoints WHERE stream_arn = ? AND shard_id = ?",
                [(stream_arn, shard_id) for shard_id in shard_ids],
            )

    @contextlib.contextmanager
    def _transaction(self, action: str) -> Iterator[None]:
        """One write transaction, taken with BEGIN IMMEDIATE so other processes wait."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise self._error(action, exc) from exc

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    def _query(self, sql: str, params: tuple[str, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise self._error("read", exc) from exc

    def _error(self, action: str, exc: sqlite3.Error) -> CheckpointStoreError:
        return CheckpointStoreError(
            f"could not {action} checkpoints in {self.path!r}: {exc}. Check that the file "
            "is writable and not damaged (a consumer retries, and pauses reading while its "
            "position cannot be saved)."
        )


# The byte of a WAL database's -shm file that every open connection holds a shared lock on
# (SQLite's os_unix.c: UNIX_SHM_DMS = (22 + SQLITE_SHM_NLOCK) * 4 + SQLITE_SHM_NLOCK).
_SHM_DEAD_MAN_SWITCH = 128


def _wal_holders(path: str) -> list[int] | None:
    """A process other than this one that holds the database's -shm dead man switch (F_GETLK
    names one holder, which is enough to refuse); [] if none; None if it cannot be told."""
    if sys.platform.startswith("linux"):
        layout = "hhqqi"  # struct flock: l_type, l_whence, l_start, l_len, l_pid
    elif sys.platform == "darwin":
        layout = "qqihh"  # l_start, l_len, l_pid, l_type, l_whence
    else:
        return None
    import fcntl

    try:
        fd = os.open(path + "-shm", os.O_RDWR)
    except FileNotFoundError:
        return []  # no connection is open: the last one to close deletes the file
    except OSError:
        return None
    try:
        byte, lock = _SHM_DEAD_MAN_SWITCH, fcntl.F_WRLCK
        if layout == "hhqqi":
            answer = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack(layout, lock, 0, byte, 1, 0))
            kind, _, _, _, pid = struct.unpack(layout, answer)
        else:
            answer = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack(layout, byte, 1, 0, lock, 0))
            _, _, pid, kind, _ = struct.unpack(layout, answer)
    except OSError:
        return None
    finally:
        os.close(fd)
    return [] if kind == fcntl.F_UNLCK else [pid]


def _open_error(path: str, exc: sqlite3.Error | None, timeout: float) -> CheckpointStoreError:
    """Why ``path`` could not be opened as a checkpoint database, from what the file system
    says about it: SQLite's own message is the same for most of these causes."""
    cannot = f"cannot use {path!r} as a checkpoint database" + (f" ({exc})" if exc else "")
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return CheckpointStoreError(
            f"{cannot}: it is a directory. Give SQLiteCheckpointStore the path of a file, "
            f"such as {os.path.join(path, 'checkpoints.db')!r}."
        )
    if not os.path.isdir(directory):
        what = "is a file, not a directory" if os.path.exists(directory) else "does not exist"
        return CheckpointStoreError(
            f"{cannot}: the directory {directory!r} {what}. Create it (mkdir -p "
            f"{directory}) or give SQLiteCheckpointStore a path in an existing directory."
        )
    if os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK):
        return CheckpointStoreError(
            f"{cannot}: this process may not both read and write the file (its permissions, "
            "or a read-only file system). Let this user read and write it, or give "
            "SQLiteCheckpointStore another path."
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        return CheckpointStoreError(
            f"{cannot}: this process may not create files in {directory!r} (its "
            "permissions, or a read-only file system); SQLite keeps -wal and -shm files "
            "beside the database. Make the directory writable for this user, or give "
            "SQLiteCheckpointStore a path in another directory."
        )
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        return CheckpointStoreError(
            f"{cannot}: another connection kept it locked for more than {timeout:g} s. "
            "Stop what holds it, or give SQLiteCheckpointStore another path."
        )
    return CheckpointStoreError(
        f"{cannot}. If the file is damaged or belongs to something else, move it aside or "
        "give SQLiteCheckpointStore another path; ddbstreams will not silently start over."
    )
