"""The history on disk: one SQLite file (standard library), WAL, a single writer.

Layout: `series` names the readings; each `samples` row is one batch of buckets
(written about once a minute) as zlib-compressed JSON of `{"ids": [...], "v": [[...]]}`,
one list of bucket values per series id; `events` holds one row per event. Batching
keeps flash writes rare and the rows few (about 1440 a day, whatever the number of
series). Retention drops what is older than `days`, and the oldest days go first while
the file is larger than `max_bytes`; freed pages are returned with incremental vacuum.

A file that is not a usable database is moved aside to `history.db.corrupt` (replacing
an older one, so at most one copy is kept) and a new one is started. Other errors (a
read-only or full disk) are raised for the recorder, which logs them once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import zlib
from collections.abc import Iterable
from datetime import date, timedelta
from pathlib import Path

from hems_rules.history.recording import (
    Batch,
    Event,
    Recording,
    Value,
    day_bounds,
    latest,
    local_day,
)

log = logging.getLogger(__name__)

FILE_NAME = "history.db"
VERSION = 1
CORRUPT = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})

_TABLES = """
CREATE TABLE series (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE samples (t0 REAL NOT NULL, step REAL NOT NULL, data BLOB NOT NULL);
CREATE INDEX samples_t0 ON samples (t0);
CREATE TABLE events (t REAL NOT NULL, kind TEXT NOT NULL, subject TEXT NOT NULL,
                     value TEXT NOT NULL);
CREATE INDEX events_t ON events (t);
"""

# Batches span at most a few minutes; a day's query looks this far back for them.
_BATCH_REACH = 3600.0


class CorruptHistory(sqlite3.DatabaseError):
    """The file opened but fails its check."""


def is_corrupt(err: sqlite3.Error) -> bool:
    return isinstance(err, CorruptHistory) or getattr(err, "sqlite_errorcode", None) in CORRUPT


def database_file(path: Path) -> Path:
    """`path` is the history directory (site.history.path) or the file itself."""
    return path if path.suffix == ".db" or path.is_file() else path / FILE_NAME


class HistoryStore:
    """Synchronous; the recorder confines it to one worker thread."""

    def __init__(self, path: Path, days: int = 31, max_bytes: int = 64 << 20) -> None:
        self.file = database_file(path)
        self.keep_days = days
        self.max_bytes = max_bytes
        self._db: sqlite3.Connection | None = None
        self.writable = False
        self._ids: dict[str, int] = {}

    # -- opening -----------------------------------------------------------------

    def open(self, create: bool = True) -> None:
        """Open (or create) the file; an unusable one is moved aside and started anew."""
        try:
            self._connect(create)
        except sqlite3.DatabaseError as err:
            if not is_corrupt(err) or not create:
                raise
            self.close()
            aside = self.file.with_name(self.file.name + ".corrupt")
            log.warning(
                "history %s is unusable (%s): moved to %s, starting anew", self.file, err, aside
            )
            for suffix in ("-wal", "-shm"):
                self.file.with_name(self.file.name + suffix).unlink(missing_ok=True)
            self.file.replace(aside)
            self._connect(create)

    def _connect(self, create: bool) -> None:
        self.writable = create
        if create:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.file, isolation_level=None)
        else:
            db = self._read_only()
        self._db = db
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version == 0 and create:
            db.execute("PRAGMA auto_vacuum = INCREMENTAL")
            db.execute("PRAGMA journal_mode = WAL")
            db.executescript(f"BEGIN; {_TABLES} PRAGMA user_version = {VERSION}; COMMIT;")
            log.info("history started in %s", self.file)
        elif version != VERSION:
            raise CorruptHistory(f"unknown history format {version}")
        elif create:
            db.execute("PRAGMA journal_mode = WAL")
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise CorruptHistory(f"quick_check: {check}")
        # Losing power may lose the last batch, never the file (WAL + NORMAL).
        db.execute("PRAGMA synchronous = NORMAL")
        self._ids = dict(db.execute("SELECT name, id FROM series"))

    def _read_only(self) -> sqlite3.Connection:
        """For reading only; on a read-only file system WAL's shared memory cannot be
        made, and the file is read as immutable (no writer is at work then)."""
        if not self.file.is_file():
            raise sqlite3.OperationalError(f"no history at {self.file}")
        uri = self.file.absolute().as_uri()
        try:
            db = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None)
            db.execute("PRAGMA user_version").fetchone()
        except sqlite3.OperationalError:
            db = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None)
        return db

    def close(self) -> None:
        """Close; a writable file is checkpointed, so the .db alone holds everything."""
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
            self._db = None

    @property
    def is_open(self) -> bool:
        return self._db is not None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise sqlite3.OperationalError("history is not open")
        return self._db

    # -- writing -----------------------------------------------------------------

    def write(self, batches: Iterable[Batch]) -> None:
        """Every batch in one transaction: all of them are kept, or none."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            for batch in batches:
                if batch.columns:
                    ids = [self._series_id(name) for name in batch.columns]
                    data = {"ids": ids, "v": list(batch.columns.values())}
                    blob = zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 6)
                    db.execute(
                        "INSERT INTO samples VALUES (?, ?, ?)",
                        (batch.first * batch.step, batch.step, blob),
                    )
                db.executemany(
                    "INSERT INTO events VALUES (?, ?, ?, ?)",
                    [(e.t, e.kind, e.subject, e.encode()) for e in batch.events],
                )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # SQLite already rolled back after some errors (a full disk)
                db.execute("ROLLBACK")
            self._ids = dict(db.execute("SELECT name, id FROM series"))
            raise

    def _series_id(self, name: str) -> int:
        found = self._ids.get(name)
        if found is None:
            cursor = self.db.execute("INSERT INTO series (name) VALUES (?)", (name,))
            found = self._ids[name] = int(cursor.lastrowid or 0)
        return found

    def prune(self, now: float) -> None:
        """Drop what is older than `days`, then the oldest days while the file is too big.

        The last event of each kind and subject before the cut is kept: it is the state
        the oldest remaining day starts from.
        """
        self._drop_before(now - self.keep_days * 86400.0)
        while self.size() > self.max_bytes:
            oldest = self.db.execute("SELECT min(t0) FROM samples").fetchone()[0]
            if oldest is None:
                break
            _, end = day_bounds(local_day(oldest))
            log.warning("history is over %d bytes: dropping %s", self.max_bytes, local_day(oldest))
            self._drop_before(end)
            if end > now:
                break

    def _drop_before(self, cut: float) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        db.execute("DELETE FROM samples WHERE t0 < ?", (cut,))
        db.execute(
            "DELETE FROM events WHERE t < ? AND rowid NOT IN "
            "(SELECT rowid FROM (SELECT rowid, max(t) FROM events WHERE t < ? "
            "GROUP BY kind, subject))",
            (cut, cut),
        )
        db.execute("COMMIT")
        db.executescript("PRAGMA incremental_vacuum;")  # execute() would free one page only
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def size(self) -> int:
        """Bytes on disk: the database file and its write-ahead log."""
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(FileNotFoundError):
                total += self.file.with_name(self.file.name + suffix).stat().st_size
        return total

    # -- reading -----------------------------------------------------------------

    def read(self, start: float, end: float, step: float) -> Recording:
        """Everything between two Unix times on the grid of `step`."""
        recording = Recording.empty(start, end, step)
        names = {i: n for n, i in self._ids.items()}
        names.update((i, n) for n, i in self.db.execute("SELECT name, id FROM series"))
        rows = self.db.execute(
            "SELECT t0, step, data FROM samples WHERE t0 >= ? AND t0 < ? ORDER BY rowid",
            (start - _BATCH_REACH, end),
        )
        for t0, batch_step, blob in rows:
            data = json.loads(zlib.decompress(blob))
            pairs = zip(data["ids"], data["v"], strict=True)
            columns: dict[str, list[Value]] = {names[i]: v for i, v in pairs}
            recording.add(Batch(batch_step, round(t0 / batch_step), columns))
        recording.events = [
            Event.decode(*row)
            for row in self.db.execute(
                "SELECT t, kind, subject, value FROM events WHERE t >= ? AND t < ? ORDER BY t",
                (start, end),
            )
        ]
        recording.before = latest(
            [
                Event.decode(t, kind, subject, value)
                for t, kind, subject, value, _ in self.db.execute(
                    "SELECT t, kind, subject, value, max(t) FROM events WHERE t < ? "
                    "GROUP BY kind, subject",
                    (start,),
                )
            ]
        )
        return recording

    def days(self) -> list[date]:
        """The local days with recorded samples, oldest first."""
        first, last = self.db.execute("SELECT min(t0), max(t0) FROM samples").fetchone()
        if first is None:
            return []
        found = []
        day, final = local_day(first), local_day(last)
        while day <= final:
            start, end = day_bounds(day)
            query = "SELECT 1 FROM samples WHERE t0 >= ? AND t0 < ? LIMIT 1"
            if self.db.execute(query, (start, end)).fetchone():
                found.append(day)
            day += timedelta(days=1)
        return found
