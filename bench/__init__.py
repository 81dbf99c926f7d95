"""``make bench``: what users feel, measured on the sandbox over loopback.

``python -m bench.run [--records N] [--repeat R] [--quick] [--profile] [--executor in_process|job]``
starts the sandbox in its own process, drains every provider with a bare httpx client (the
limit), runs the real ``feedback_ingest`` job in child processes (initial backfill, incremental
runs), times normalization alone, prints a markdown table and writes ``bench/results/latest.json``.

Modules: ``run`` (orchestration, table, JSON), ``sandbox_proc`` (the sandbox process),
``job_proc`` (one Dagster run in a child process), ``jobdef`` (the job as a reconstructable
target for ``--executor job``), ``drain`` (raw drain), ``normalization`` (normalization alone),
``profiling`` (pyinstrument breakdown), ``common`` (shared helpers).
"""
