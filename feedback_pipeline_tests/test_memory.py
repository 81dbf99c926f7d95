"""``memory.release``: freed heap and Arrow memory go back to the OS where glibc can trim, and the
call is a harmless no-op where the C library cannot."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from pathlib import Path

import pyarrow as pa
import pytest

from feedback_pipeline import memory


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")


@glibc
def test_on_glibc_the_c_library_can_trim():
    assert ctypes.util.find_library("c") and memory.can_trim()


@glibc
def test_release_gives_freed_small_allocations_back_to_the_os():
    # Many small blocks live in malloc's heap (below its mmap threshold); freeing them all but the
    # last keeps the heap's top pinned, so the pages stay resident until malloc_trim walks the heap.
    blocks = [ctypes.create_string_buffer(4000) for _ in range(50_000)]  # ~200 MB
    for block in blocks:
        ctypes.memset(block, 1, 4000)  # touch every page
    keep = blocks[-1]
    del blocks[:-1]
    before = _rss_bytes()
    memory.release()
    after = _rss_bytes()
    assert before - after > 100 * 2**20, (before, after)
    del keep


def test_release_also_empties_arrows_pool_of_unused_memory(monkeypatch):
    released = []
    pool = pa.default_memory_pool()
    monkeypatch.setattr(pa, "default_memory_pool", lambda: type("Pool", (), {"release_unused": lambda self: released.append(True)})())
    memory.release()
    assert released == [True]
    assert pool is not None


def test_release_is_a_no_op_where_the_c_library_lacks_malloc_trim(monkeypatch):
    monkeypatch.setattr(memory, "_malloc_trim", None)
    assert not memory.can_trim()
    memory.release()  # nothing to call, nothing raised


def test_release_never_fails_the_sync_when_arrow_cannot_release(monkeypatch):
    def broken():
        raise RuntimeError("no pool")

    monkeypatch.setattr(pa, "default_memory_pool", broken)
    memory.release()


def test_a_c_library_without_malloc_trim_loads_as_none(monkeypatch):
    class NoTrim:
        def __init__(self, name):
            pass

    monkeypatch.setattr(memory.ctypes, "CDLL", NoTrim)
    assert memory._libc_function("malloc_trim", [ctypes.c_size_t], ctypes.c_int) is None

    def missing(name):
        raise OSError("no libc")

    monkeypatch.setattr(memory.ctypes, "CDLL", missing)
    assert memory._libc_function("malloc_trim", [ctypes.c_size_t], ctypes.c_int) is None


ARENA_PROBE = """
import ctypes, ctypes.util, sys, threading
from feedback_pipeline import memory
if sys.argv[1] == "limit":
    assert memory.limit_arenas(2)
keep = []
alive = threading.Barrier(8)
def allocate():
    keep.append([bytes(4000) for _ in range(100)])  # above pymalloc's 512 bytes: glibc's malloc
    alive.wait()  # all eight threads alive at once (an ended thread's arena is handed on)
threads = [threading.Thread(target=allocate) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
ctypes.CDLL(ctypes.util.find_library("c")).malloc_stats()  # one "Arena N:" block per arena, on stderr
"""


def _arenas(mode: str) -> int:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", ARENA_PROBE, mode], capture_output=True, text=True, check=True, timeout=60)
    return sum(1 for line in done.stderr.splitlines() if line.startswith("Arena "))


@glibc
def test_limit_arenas_keeps_the_threads_of_a_step_to_two_malloc_arenas():
    assert _arenas("default") > 2  # each new thread gets an arena of its own by default
    assert _arenas("limit") <= 2


# A sync's write path in a fresh process: normalize records into Arrow, commit them, publish.
ARROW_PROBE = """
import sys
from pathlib import Path
from feedback_pipeline.warehouse import Warehouse
from feedback_pipeline_tests.conftest import batch_of, commit_batch
wh = Warehouse(Path(sys.argv[1]))
commit_batch(wh, batch_of({"id": "1", "status": "received"}, {"id": "2", "body": "hi"}))
assert wh.publish_if_behind() is not None
print("pandas" in sys.modules)
import pyarrow as pa
print(type(pa.table({"a": [1]}).to_pandas()).__name__)
"""


def test_building_and_committing_arrow_batches_never_loads_pandas(tmp_path: Path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", ARROW_PROBE, str(tmp_path / "feedback.duckdb")], capture_output=True, text=True, check=True, timeout=120)
    # pandas stays out of the process (47 MB resident), and an explicit conversion still loads it
    assert done.stdout.splitlines() == ["False", "DataFrame"]


# A process that imported the definitions (a run worker, a CLI run) builds an Arrow batch.
POOL_PROBE = """
import feedback_pipeline.definitions
import pyarrow as pa
batch = pa.array(["x" * 100] * 10_000)
print(pa.default_memory_pool().backend_name, pa.system_memory_pool().bytes_allocated() >= 1_000_000)
"""


def test_a_process_with_the_definitions_puts_arrow_buffers_in_malloc():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", POOL_PROBE], capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.split() == ["system", "True"]  # mimalloc (pyarrow's default) would hold them otherwise
