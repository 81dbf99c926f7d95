"""Give memory the run no longer holds back to the operating system.

Why it exists: a sync frees each committed batch (its Python objects, its Arrow tables) but the
allocators keep the freed pages for later: glibc's malloc keeps freed chunks in its arenas (one
per thread, and every account syncs in its own thread), Arrow's pool keeps its freed buffers. So
a process's resident size only ever grows to the sum of every thread's largest moment. Calling
:func:`release` at the points where a batch or an account is done hands those pages back, so the
next batch (or the dashboard step) reuses the same few hundred MB instead of adding to them.
:func:`limit_arenas` caps how many arenas there are in the first place, and
:func:`arrow_uses_malloc` puts Arrow's buffers in those same arenas.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.abc
import logging
import sys
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def _libc_function(name: str, argtypes: list[Any], restype: Any) -> Callable[..., int] | None:
    """A function of glibc's malloc (None where the C library has none: musl, macOS, Windows)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
    except OSError:
        return None
    function = getattr(libc, name, None)
    if function is None:
        return None
    function.argtypes = argtypes
    function.restype = restype
    return function


_malloc_trim: Callable[[int], int] | None = _libc_function("malloc_trim", [ctypes.c_size_t], ctypes.c_int)
_mallopt: Callable[[int, int], int] | None = _libc_function("mallopt", [ctypes.c_int, ctypes.c_int], ctypes.c_int)

# glibc's malloc.h: mallopt's parameter for the most arenas malloc creates.
M_ARENA_MAX = -8
# The step's threads share this many arenas (the cores the benchmark machine has; DuckDB uses two
# threads too). glibc's default is 8 per core, and a thread's first allocation gets an arena of
# its own while the limit allows: each keeps its own free chunks and its own high-water mark.
ARENAS = 2


def limit_arenas(count: int = ARENAS) -> bool:
    """Let malloc create at most ``count`` arenas in this process from now on (glibc's
    ``M_ARENA_MAX``, what the ``MALLOC_ARENA_MAX`` variable sets at start-up). Why: a step syncs
    accounts, and their query ranges, in threads of their own; with an arena each, the process's
    peak was the sum of every arena's largest moment (200k backfill: 495-498 MB peak RSS with
    the default, 455-458 MB with two arenas set when the definitions are imported, at the same
    wall time; ``bench.run``). True when set; False where the C library has no ``mallopt``.
    Arenas created before the call stay, so it is called as early as possible."""
    if _mallopt is None:
        return False
    return bool(_mallopt(M_ARENA_MAX, count))


def arrow_uses_malloc() -> None:
    """Make the C library's malloc Arrow's default memory pool (pyarrow's ``system`` pool, what
    ``ARROW_DEFAULT_MEMORY_POOL=system`` sets at start-up) for the Arrow buffers made from now
    on. Why: pyarrow's wheels default to mimalloc, which keeps the pages a thread freed in that
    thread's own heap; with the step's two dozen threads (accounts, day ranges, prefetchers)
    each keeping some, a 1M backfill's run process held 380-410 MB for its whole concurrent
    sync. In malloc's two arenas, which :func:`release` trims after each commit, it holds
    350-380 MB: peak 415.5 and 416.4 MB -> 387.1 and 393.2 MB in alternating runs of
    ``python -m bench.memory --records 1000000``, for 4-5% more CPU in that backfill (freed
    pages go back to the OS and are faulted in again). jemalloc with immediate decay kept
    398.7-402.1 MB."""
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())


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


def keep_pandas_unloaded() -> bool:
    """Stop pyarrow from importing pandas in this process; True if this call did it.

    pyarrow checks whether an input is a pandas object the first time ``pa.array`` sees a value,
    and imports pandas to ask (``pandas_api._have_pandas_internal``, pyarrow 26): 47 MB resident
    and 0.2 s, in the run process and every command that builds an Arrow batch, for a library the
    pipeline never hands it. Here pyarrow makes that one attempt while an import finder hides
    pandas, records that pandas is absent, and never tries again for such checks; explicit
    conversions (``Table.to_pandas``) still import it when called. Nothing changes where pandas
    is already imported.
    """
    if "pandas" in sys.modules:
        return False
    import pyarrow as pa

    hider = _HidePandas()
    sys.meta_path.insert(0, hider)
    try:
        pa.array([0])
    finally:
        sys.meta_path.remove(hider)
    return True


class _HidePandas(importlib.abc.MetaPathFinder):
    """An import finder under which ``import pandas`` fails as if pandas were not installed."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname.partition(".")[0] == "pandas":
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None
