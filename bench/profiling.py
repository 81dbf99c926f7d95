"""Where the backfill's time goes: a categorized reading of pyinstrument sessions.

Every frame's *self* time goes to the innermost enclosing frame that matches a rule (so the
socket reads inside an httpx request count as network wait, the rest of the request as HTTP
client work). pyinstrument samples wall-clock time per thread, so time spent waiting for the GIL
shows up in whatever frame the thread was in.
"""

from __future__ import annotations

from typing import Any

# (category, path fragment, function names or None for any function in that file); when several
# rules match one frame the LAST one wins, so general rules come first.
MAIN_RULES: tuple[tuple[str, str, frozenset[str] | None], ...] = (
    ("fetch_wait (queue.get on prefetched pages)", "feedback_pipeline/sync.py", frozenset({"_prefetch"})),
    ("normalize (provider.normalize)", "feedback_pipeline/providers/", frozenset({"normalize"})),
    ("to_arrow (FeedbackBatch.rows/rejects)", "feedback_pipeline/normalize.py", frozenset({"rows", "rejects"})),
    ("duckdb commit (writes.commit)", "feedback_pipeline/warehouse/writes.py", None),
    ("publish (publish.publish)", "feedback_pipeline/warehouse/publish.py", None),
    ("asset checks (stats.check_stats)", "feedback_pipeline/warehouse/stats.py", None),
    ("warehouse state (plan, cursors, session open)", "feedback_pipeline/warehouse/state.py", None),
    ("warehouse session (open, migrate, close)", "feedback_pipeline/warehouse/session.py", frozenset({"session"})),
    ("sync engine (other)", "feedback_pipeline/sync.py", frozenset({"sync", "_run_query", "commit", "plan_queries", "_progress"})),
    ("asset body (other)", "feedback_pipeline/assets.py", None),
    ("dagster: materialization events (one per partition)", "dagster/_core/execution/plan/execute_step.py", frozenset({"_log_materialization_or_observation_events_for_asset"})),
    ("dagster: event log writes", "dagster/_core/instance/methods/event_methods.py", frozenset({"handle_new_event"})),
)
# Categories that keep everything below them (run creation writes its planned events itself).
STICKY = {
    "dagster: create run (planned events, one per partition)": ("dagster/_core/instance/runs/run_domain.py", frozenset({"create_run"})),
}
FETCH_RULES: tuple[tuple[str, str, frozenset[str] | None], ...] = (
    ("provider.fetch (other)", "feedback_pipeline/providers/", None),
    ("HttpClient (other)", "feedback_pipeline/http.py", None),
    ("http client (httpx/httpcore/h11)", "/httpx/", None),
    ("http client (httpx/httpcore/h11)", "/httpcore/", None),
    ("http client (httpx/httpcore/h11)", "/h11/", None),
    ("socket wait (recv)", "httpcore/_backends/sync.py", frozenset({"read"})),
    ("json parse (orjson)", "feedback_pipeline/jsonio.py", frozenset({"loads_json"})),
    ("envelope validation", "feedback_pipeline/providers/", frozenset({"_check_envelope", "_check_list"})),
    ("usersnap JWT", "/jwt/", None),
    ("queue.put (consumer slower: back-pressure)", "/queue.py", frozenset({"put"})),
)


def _match(frame: Any, rules: tuple[tuple[str, str, frozenset[str] | None], ...]) -> str | None:
    path = (frame.file_path or "").replace("\\", "/")
    function = frame.function or ""
    found = None
    for category, fragment, functions in rules:
        if fragment in path and (functions is None or function in functions):
            found = category  # later (more specific) rules win over earlier ones
    return found


def breakdown(session: Any, kind: str) -> dict[str, Any]:
    """``{"total_seconds", "categories": {category: seconds}}`` of one session."""
    rules = MAIN_RULES if kind == "main" else FETCH_RULES
    root = session.root_frame()
    if root is None:
        return {"total_seconds": 0.0, "categories": {}}
    totals: dict[str, float] = {}
    default = "dagster and other" if kind == "main" else "thread (other)"
    stack: list[tuple[Any, str]] = [(root, default)]
    while stack:
        frame, inherited = stack.pop()
        if kind == "main" and inherited in STICKY:
            category = inherited
        else:
            category = _match(frame, rules) or inherited
            if kind == "main":
                path = (frame.file_path or "").replace("\\", "/")
                for name, (fragment, functions) in STICKY.items():
                    if fragment in path and frame.function in functions:
                        category = name
        self_time = frame.time - sum(child.time for child in frame.children)
        totals[category] = totals.get(category, 0.0) + max(0.0, self_time)
        for child in frame.children:
            stack.append((child, category))
    ordered = dict(sorted(((k, round(v, 3)) for k, v in totals.items()), key=lambda kv: -kv[1]))
    return {"total_seconds": round(root.time, 3), "categories": ordered}
