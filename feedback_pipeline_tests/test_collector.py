"""``collector``: a process that imported the definitions keeps its import-time objects out of
later full collections, still collects the cycles it makes afterwards, and exits without the
interpreter's final cycle collection while still running its exit handlers and flushing output."""

from __future__ import annotations

import subprocess
import sys

# A reference cycle whose finalizer says when the cycle collector reached it; created before the
# process exits, with nothing else referring to it.
CYCLE = """
import sys
class Node:
    def __del__(self):
        sys.stdout.write("collected\\n")
        sys.stdout.flush()
def make_cycle():
    a, b = Node(), Node()
    a.other, b.other = b, a
import atexit
atexit.register(lambda: print("exit handler ran", flush=True))
import gc
gc.disable()  # the cycle must reach exit uncollected
make_cycle()
print("done")
"""


def run(preamble: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", preamble + CYCLE], capture_output=True, text=True, check=True, timeout=120)
    return done.stdout.splitlines()


def test_without_it_the_interpreter_collects_cycles_at_exit():
    assert run("") == ["done", "exit handler ran", "collected", "collected"]  # the baseline the next test departs from


def test_a_process_that_imported_the_definitions_skips_the_final_collection():
    assert run("import feedback_pipeline.definitions\n") == ["done", "exit handler ran"]


def test_it_registers_once_however_often_it_is_called():
    script = (
        "import atexit\n"
        "from feedback_pipeline.collector import skip_final_collection\n"
        "before = atexit._ncallbacks()\n"
        "skip_final_collection(); skip_final_collection()\n"
        "print(atexit._ncallbacks() - before)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "1"


def test_the_definitions_import_leaves_its_objects_frozen_and_later_cycles_are_still_collected():
    script = (
        "import gc\n"
        "import feedback_pipeline.definitions\n"
        "frozen = gc.get_freeze_count()\n"
        "class Node: pass\n"
        "a, b = Node(), Node()\n"
        "a.other, b.other = b, a\n"
        "del a, b\n"
        "print(frozen, gc.collect())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    frozen, collected = map(int, done.stdout.split())
    assert frozen > 100_000, "Dagster's and the definitions' objects are frozen"
    assert collected >= 2, "a cycle made after the import is collected as before"
