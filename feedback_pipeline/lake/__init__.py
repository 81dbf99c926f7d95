"""An Apache Iceberg copy of ``feedback``, kept by pyiceberg when ``FEEDBACK_LAKE_WAREHOUSE`` is set.

``LakeSettings`` reads the environment without importing pyiceberg; ``LakeMirror`` and
``LakeCommit`` import it on first access, so a pipeline without the variable (or without the
``lake`` extra) never loads it::

    settings = LakeSettings.from_env(os.environ, db_path=feedback_db)   # None when unset
    if settings is not None:
        commit = LakeMirror(settings).apply(working_connection, generation, run_id)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .settings import LakeSettings

if TYPE_CHECKING:
    from .mirror import LakeCommit, LakeMirror

__all__ = ["LakeCommit", "LakeMirror", "LakeSettings"]


def __getattr__(name: str) -> Any:
    if name in ("LakeMirror", "LakeCommit"):
        from . import mirror

        return getattr(mirror, name)
    raise AttributeError(name)
