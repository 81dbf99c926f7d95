"""The ``feedback_ingest`` job as a reconstructable target, so ``bench.job_proc --executor job``
can run it with the job's own executor (the multiprocess/forkserver executor users get from the
UI, the schedule and the ``dagster`` CLI); definitions are built from the process environment."""

from __future__ import annotations

import dagster as dg


def feedback_ingest() -> dg.JobDefinition:
    from feedback_pipeline.definitions import build_definitions

    return build_definitions().resolve_job_def("feedback_ingest")
