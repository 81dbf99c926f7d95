"""DuckDB storage: the working database writers use, and the snapshot files analysts read.

* ``session.py``: ``Warehouse`` (the files of one ``FEEDBACK_DB``) and ``Session`` (writer lock +
  one connection for a step's life, per-thread cursors);
* ``migrations.py`` and ``views/*.sql``: the schema and the analyst views;
* ``state.py``: sync days and query cursors; ``writes.py``: the one-transaction batch commit;
* ``changes.py``: the publish generation and change log; ``publish.py``: incremental publishing
  to two snapshot files used in turn; ``files.py``: the paths and the atomic switch;
* ``stats.py``: the numbers behind the asset checks; ``maintenance.py``: reset;
* ``transaction.py``: one explicit transaction as a ``with`` block.
"""

from .migrations import MIGRATIONS
from .model import CursorRow, Progress, PublishResult, Scope, WriteCounts
from .publish import STORAGE_VERSION
from .session import Session, Warehouse, WarehouseCursor
from .stats import WindowStats
from .transaction import transaction

__all__ = [
    "MIGRATIONS",
    "STORAGE_VERSION",
    "CursorRow",
    "Progress",
    "PublishResult",
    "Scope",
    "Session",
    "Warehouse",
    "WarehouseCursor",
    "WindowStats",
    "WriteCounts",
    "transaction",
]
