"""Where the warehouse's files live, and the one atomic switch of the analysts' file.

Next to ``FEEDBACK_DB`` (``path``):

* ``<path>.work`` (+ ``.wal``): the writers' database; only pipeline processes open it;
* ``<path>.lock``: the OS file lock a writer session holds for its whole life;
* ``<path>.a`` and ``<path>.b``: two snapshot files used in turn;
* ``<path>`` itself: a symlink to one of them (relative, so the directory can move). Readers open
  the symlink; ``os.replace`` of a new symlink switches them to the other file atomically, and a
  session that opened the old one keeps reading the inode it holds;
* ``<path>.erasing``: an empty file that exists from just before an erasure's transaction until
  its person's bytes are gone from every file (see ``Session.erase``).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

SNAPSHOT_SUFFIXES = ("a", "b")


@dataclass(frozen=True)
class WarehouseFiles:
    """The paths derived from ``FEEDBACK_DB``."""

    path: Path

    @property
    def work(self) -> Path:
        return self._sibling("work")

    @property
    def work_wal(self) -> Path:
        """DuckDB's write-ahead log of the working database."""
        return self.work.with_name(f"{self.work.name}.wal")

    @property
    def lock(self) -> Path:
        return self._sibling("lock")

    @property
    def erasing(self) -> Path:
        """Exists while an erasure still owes the rewrite of the files (Session.erase)."""
        return self._sibling("erasing")

    @property
    def snapshots(self) -> tuple[Path, Path]:
        return self._sibling(SNAPSHOT_SUFFIXES[0]), self._sibling(SNAPSHOT_SUFFIXES[1])

    def _sibling(self, suffix: str) -> Path:
        return self.path.with_name(f"{self.path.name}.{suffix}")

    def live(self) -> Path | None:
        """The snapshot file ``FEEDBACK_DB`` points at; None when it is missing, dangling, or a
        regular file (left by a version that published by copying the whole file)."""
        try:
            target = os.readlink(self.path)
        except (FileNotFoundError, OSError):
            return None
        for snapshot in self.snapshots:
            if target == snapshot.name and snapshot.exists():
                return snapshot
        return None

    def idle(self) -> Path:
        """The snapshot file no new reader opens: the one to write next."""
        a, b = self.snapshots
        return b if self.live() == a else a

    def temporary(self) -> Path:
        """A fresh name for a file being built (hidden, so nobody mistakes it for a snapshot)."""
        return self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")

    def remove_litter(self) -> None:
        """Delete temporary files a killed writer left; only writers make them, under the lock."""
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp*"):
            stale.unlink(missing_ok=True)

    def switch(self, snapshot: Path) -> None:
        """Point ``FEEDBACK_DB`` at ``snapshot`` atomically (a regular file is replaced the same
        way), then make the switch durable."""
        link = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp-link")
        os.symlink(snapshot.name, link)
        try:
            os.replace(link, self.path)
        except BaseException:
            link.unlink(missing_ok=True)
            raise
        fsync_dir(self.path.parent)


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    """Make renames in ``path`` durable (best effort: some filesystems refuse a directory fsync)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
