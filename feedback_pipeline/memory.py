"""Give memory the run no longer holds back to the operating system.

Why it exists: a sync frees each committed batch (its Python objects, its Arrow tables) but the
allocators keep the freed pages for later: glibc's malloc keeps freed chunks in its arenas (one
per thread, and every account syncs in its own thread), Arrow's pool keeps its freed buffers. So
a process's resident size only ever grows to the sum of every thread's largest moment. Calling
:func:`release` at the points where a batch or an account is done hands those pages back, so the
next batch (or the dashboard step) reuses the same few hundred MB instead of adding to them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


def _load_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (None where the C library has none: musl, macOS, Windows)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_malloc_trim: Callable[[int], int] | None = _load_malloc_trim()


def can_trim() -> bool:
    """Whether this platform's C library can give freed heap pages back (glibc)."""
    return _malloc_trim is not None


def release() -> None:
    """Return the freed memory of the C heap (every thread's arena) and of Arrow's memory pool to
    the operating system. Cheap enough to call after every committed batch (a few ms); a no-op
    where the C library cannot trim. Never raises: it is housekeeping, not part of a sync."""
    try:
        import pyarrow as pa

        pa.default_memory_pool().release_unused()
    except Exception:  # noqa: BLE001 - housekeeping only
        log.debug("pyarrow's memory pool could not release its unused memory", exc_info=True)
    if _malloc_trim is not None:
        _malloc_trim(0)
