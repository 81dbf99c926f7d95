"""``python -m bench.dashboard [--rows N]``: how long the dashboard takes to draw from a big warehouse.

Generates ``N`` feedback rows (default 1,000,000) over 365 days and the five providers by SQL,
straight into a DuckDB file with the warehouse's schema and analyst views (``MIGRATIONS``), in
seconds and without the sandbox; then times ``build_dashboard`` on it: the first build in this
process (vl-convert starts its JavaScript engine), a second forced one, and the skip path (same
snapshot, same day). Where headless Chromium and Selenium are installed (``make e2e`` installs
them) it also opens the file and reports the browser's load time. Prints a table and writes
``bench/results/dashboard.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb

from feedback_pipeline.dashboard import build_dashboard
from feedback_pipeline.warehouse import MIGRATIONS

from .common import DAYS, PROVIDERS, RESULTS

UTC = timezone.utc
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

# One row per i in range(N): provider i % 5, collected at a pseudo-random second of the last DAYS
# days, with the fields the dashboard's views read (votes, helpful, NPS answers, statuses).
GENERATE_SQL = f"""
INSERT INTO feedback BY NAME
WITH g AS (
    SELECT i, (hash(i) >> 1)::BIGINT AS h, $providers[(i % 5) + 1] AS provider,
           $now::TIMESTAMPTZ - to_seconds(((hash(i) >> 1)::BIGINT % ({DAYS} * 86400))) AS ts
    FROM range($rows) t(i))
SELECT provider, 'bench' AS account_id, i::VARCHAR AS feedback_id,
       ts AS collected_at, CAST(timezone('UTC', ts) AS DATE) AS collected_date, ts AS updated_at,
       CASE WHEN provider = 'formbricks' THEN NULL ELSE ['open', 'in_progress', 'resolved', 'dismissed'][(h // 7) % 4 + 1] END AS status,
       'native' AS provider_status,
       CASE WHEN provider = 'formbricks' AND h % 3 = 0 THEN 'nps' ELSE 'cat' || (h % 8) END AS category,
       CASE WHEN provider = 'feedbackkit' THEN 'Request ' || (h % 2000) END AS title,
       ['Great docs, thanks', 'The example in step 3 is out of date', 'Please add dark mode', 'Export fails', 'The map routed me badly'][h % 5 + 1] AS body,
       CASE WHEN provider = 'formbricks' THEN (h // 11) % 11 END AS rating,
       'user-' || (h % 100000) AS user_id, 'person' || (h % 100000) || '@example.com' AS user_email,
       CASE WHEN provider = 'mintlify' THEN '/page/' || (h % 300) END AS page_url,
       CASE provider
           WHEN 'mintlify' THEN json_object('helpful', h % 3 <> 0)
           WHEN 'usersnap' THEN json_object('ordered_inputs', json_array(json_object('order', 0, 'label', 'NPS', 'value', (h // 13) % 11)))
           WHEN 'feedbackkit' THEN json_object('voteCount', (h // 17) % 500)
           ELSE json_object('k', h % 10) END AS attributes,
       $now::TIMESTAMPTZ AS ingested_at
FROM g"""


def generate(path: Path, rows: int) -> float:
    """A warehouse file with ``rows`` feedback rows; returns the seconds it took."""
    started = time.perf_counter()
    con = duckdb.connect(str(path))
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("CREATE TABLE pipeline_schema_version (version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL)")
        for version, statements in enumerate(MIGRATIONS, start=1):
            for statement in statements:
                con.execute(statement)
            con.execute("INSERT INTO pipeline_schema_version VALUES (?, now())", [version])
        now = datetime.now(UTC)
        con.execute(GENERATE_SQL, {"providers": list(PROVIDERS), "now": now, "rows": rows})
        con.execute(
            """INSERT INTO feedback_rejects BY NAME
            SELECT $providers[(i % 5) + 1] AS provider, 'bench' AS account_id, NULL AS feedback_id, 'k' || i AS record_key,
                   ['missing_id', 'missing_collected_at', 'unparseable_collected_at'][i % 3 + 1] AS reason, '{}' AS payload, $now AS rejected_at
            FROM range($n) t(i)""",
            {"providers": list(PROVIDERS), "now": now, "n": max(1, rows // 1000)},
        )
        con.execute(
            f"""INSERT INTO pipeline_sync_days
            SELECT p, 'bench', CAST(timezone('UTC', $now::TIMESTAMPTZ) AS DATE) - d::INTEGER, $now, $now
            FROM unnest($providers) u(p), range({DAYS}) r(d)""",
            {"providers": list(PROVIDERS), "now": now},
        )
        con.execute("UPDATE pipeline_publish SET generation = 1")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return time.perf_counter() - started


def browser_load_ms(path: Path) -> dict[str, float] | None:
    """Load the file in headless Chromium: milliseconds to DOMContentLoaded and to load."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        return None
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None
    profile = tempfile.mkdtemp(prefix="bench-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_window_size(1366, 900)
        driver.get(path.resolve().as_uri())
        timing = driver.execute_script("return performance.getEntriesByType('navigation')[0].toJSON()")
        return {"dom_content_loaded_ms": round(timing["domContentLoadedEventEnd"], 1), "load_ms": round(timing["loadEventEnd"], 1)}
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="feedback rows to generate (default 1000000)")
    parser.add_argument("--output", type=Path, default=RESULTS / "dashboard.json")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    try:
        db, out = workdir / "feedback.duckdb", workdir / "dashboard.html"
        res: dict[str, Any] = {"rows": args.rows, "generate_seconds": round(generate(db, args.rows), 2)}
        res["database_mb"] = round(db.stat().st_size / 2**20, 1)
        first = build_dashboard(db, out)
        second = build_dashboard(db, out, force=True)
        skipped = build_dashboard(db, out)
        assert first.written and second.written and not skipped.written
        res.update(
            first_build_seconds=round(first.seconds, 3),
            warm_build_seconds=round(second.seconds, 3),
            warm_query_seconds=round(second.query_seconds, 3),
            warm_draw_seconds=round(second.draw_seconds, 3),
            skip_seconds=round(skipped.seconds, 3),
            file_kib=round(second.bytes / 1024, 1),
            browser=browser_load_ms(out),
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(res, indent=2) + "\n")
    browser = res["browser"] or {}
    print(f"\n| dashboard at {args.rows:,} rows | result |\n|---|---|")
    print(f"| generate the warehouse by SQL | {res['generate_seconds']} s ({res['database_mb']} MB) |")
    print(f"| first build in a process (starts vl-convert) | {res['first_build_seconds']} s |")
    print(f"| build again (forced) | {res['warm_build_seconds']} s: queries {res['warm_query_seconds']} s, charts and page {res['warm_draw_seconds']} s |")
    print(f"| unchanged snapshot: skip | {res['skip_seconds']} s |")
    print(f"| file size | {res['file_kib']} KiB |")
    print(f"| headless Chromium: DOMContentLoaded / load | {browser.get('dom_content_loaded_ms', 'n/a')} / {browser.get('load_ms', 'n/a')} ms |")
    print(f"\n(written to {args.output}; timings on a shared machine vary by 10-30%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
