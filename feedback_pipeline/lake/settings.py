"""Where the Iceberg copy of ``feedback`` lives, from the environment (no pyiceberg import here).

``FEEDBACK_LAKE_WAREHOUSE`` switches the copy on: a local directory or an object-store URI that
pyiceberg's FileIO understands (``s3://...``, ``gs://...``, ``abfs://...``).
``FEEDBACK_LAKE_CATALOG_URI`` is the SQLAlchemy URL of the SQL catalog; by default a SQLite file
beside ``FEEDBACK_DB``. The URL may carry a password, so it is kept out of ``repr``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

WAREHOUSE_VAR = "FEEDBACK_LAKE_WAREHOUSE"
CATALOG_URI_VAR = "FEEDBACK_LAKE_CATALOG_URI"
CATALOG_NAME = "feedback"  # CONTRACT.md section 5: the pyiceberg SQL catalog named `feedback`
CATALOG_FILE = "feedback_lake_catalog.db"
KEYS_FILE = "feedback_lake_keys.duckdb"


@dataclass(frozen=True)
class LakeSettings:
    """The lake's catalog, warehouse, and the local key-location cache (see ``keys.py``)."""

    warehouse: str
    catalog_uri: str = field(repr=False)
    keys_path: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, db_path: str | os.PathLike[str]) -> "LakeSettings | None":
        """None when ``FEEDBACK_LAKE_WAREHOUSE`` is unset: the DuckDB snapshot stays the only copy
        and nothing of pyiceberg is imported. ``db_path`` is ``FEEDBACK_DB`` as the pipeline
        resolved it; the default catalog and the key cache sit in its directory."""
        env = os.environ if env is None else env
        warehouse = (env.get(WAREHOUSE_VAR) or "").strip()
        if not warehouse:
            return None
        state_dir = Path(db_path).resolve().parent
        if "://" not in warehouse:
            # A local path: absolute, so the catalog's recorded locations do not depend on the cwd.
            warehouse = str(Path(warehouse).resolve())
        catalog_uri = (env.get(CATALOG_URI_VAR) or "").strip() or f"sqlite:///{state_dir / CATALOG_FILE}"
        return cls(warehouse=warehouse, catalog_uri=catalog_uri, keys_path=state_dir / KEYS_FILE)
