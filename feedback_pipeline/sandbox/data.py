"""Deterministic, realistic content for the emulators: texts, people, and timestamps.

The generator is seeded, so a seed, a number of days and records per day always give the same
records (for a fixed end date). Content is chosen to break naive pipelines: emoji, CJK and
right-to-left text, quotes and SQL-looking strings, very long bodies, empty strings, and
timestamps exactly on midnight.
"""

from __future__ import annotations

import random
import uuid
from datetime import date, datetime, time, timedelta, timezone

UTC = timezone.utc

COMMENTS: tuple[str, ...] = (
    "This page was really helpful, thanks!",
    "The example in step 3 is out of date.",
    "Can't find the API key settings anywhere 😕",
    "Great docs 👍🏽 but the search is slow",
    "認証の説明が分かりにくいです。",
    "文档里的代码示例无法运行",
    "هذه الصفحة مفيدة جدا، شكرا لكم",
    "המדריך הזה חסר שלב חשוב",
    'He said "it works on my machine" and left',
    "It's the user's fault, isn't it?",
    "Robert'); DROP TABLE feedback;--",
    "1; DELETE FROM feedback WHERE 1=1 --",
    "SELECT * FROM users WHERE name = '' OR '1'='1'",
    "Tabs\tand\nnewlines\r\nin one comment",
    "  leading and trailing spaces  ",
    "",
    "Ünïcödé àccents — and an em dash",
    "Zero\u200bwidth space and combining e\u0301",
    "🚀🔥💯",
    "The map routed me through a closed road near the bridge.",
    "Please add dark mode 🌙",
    "Export to CSV fails for more than 10k rows",
    "Backslash \\ and percent % and underscore _ wildcard",
)

FIRST_NAMES = ("ana", "li", "omar", "sofia", "yuki", "noah", "zoe", "ivan", "amara", "lucas")
DOMAINS = ("example.com", "example.org", "example.net")
PAGES = ("/quickstart", "/api-reference/auth", "/guides/webhooks", "/changelog", "/sdk/python", "/faq", "/")


def long_text(rng: random.Random, size: int = 30_000) -> str:
    """A body far longer than a typical comment (tests buffer sizes and column widths)."""
    words = ("lorem", "ipsum", "dolor", "sit", "amet", "ünïcödé", "数据", "🙂")
    out: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(words)
        out.append(word)
        length += len(word) + 1
    return " ".join(out)[:size]


def comment(rng: random.Random) -> str:
    """A comment; about one in 200 is a 30,000-character body."""
    if rng.random() < 0.005:
        return long_text(rng)
    return rng.choice(COMMENTS)


def email(rng: random.Random) -> str:
    return f"{rng.choice(FIRST_NAMES)}.{rng.randrange(1000)}@{rng.choice(DOMAINS)}"


def user_id(rng: random.Random) -> str:
    return f"user-{rng.randrange(100_000):05d}"


def uuid4(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def uuid7(rng: random.Random, when: datetime) -> str:
    """A UUIDv7 (time-ordered) for ``when``, as Formbricks Hub and Mapbox ids are."""
    ms = int(when.timestamp() * 1000)
    rand = rng.getrandbits(74)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 62) << 64 | 0b10 << 62 | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def day_times(rng: random.Random, day: date, count: int, now: datetime) -> list[datetime]:
    """``count`` sorted instants on ``day`` (UTC). Every fifth day starts exactly at midnight and
    one record sits on the last microsecond of the day, so date boundaries get exercised. Instants
    never lie in the future of ``now``."""
    start = datetime.combine(day, time(0), tzinfo=UTC)
    span = 86_400.0
    if day == now.date():
        span = max(0.0, (now - start).total_seconds() - 1.0)  # a second short of now, or none at all
    times = sorted(start + timedelta(seconds=rng.uniform(0, span)) for _ in range(count))
    times = [t.replace(microsecond=(t.microsecond // 1000) * 1000) for t in times]  # millisecond precision
    if count and day.toordinal() % 5 == 0:
        times[0] = start
    if count > 2 and day.toordinal() % 7 == 0 and day < now.date():
        times[-1] = start + timedelta(days=1) - timedelta(milliseconds=1)
    return times


def later(rng: random.Random, when: datetime, now: datetime, max_hours: float = 72.0) -> datetime:
    """An update time after ``when`` but not after ``now``."""
    limit = min(now, when + timedelta(hours=max_hours))
    if limit <= when:
        return when
    return when + (limit - when) * rng.random()


def iso_z(when: datetime, digits: int = 3) -> str:
    """``2026-01-02T03:04:05.678Z`` with ``digits`` fractional digits (0, 3, 6 or 9)."""
    base = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if digits == 0:
        return base + "Z"
    micro = f"{when.microsecond:06d}"
    frac = (micro + "000")[:digits]
    return f"{base}.{frac}Z"


def dataset_days(days: int, end: date | None, now: datetime) -> list[date]:
    """The ``days`` calendar days ending at ``end`` (default: today, UTC), oldest first."""
    last = end or now.date()
    return [last - timedelta(days=i) for i in range(days - 1, -1, -1)]


# Each provider serves one deliberately bad record (the connector must reject it) per 30 days, the
# newest 20 days before the dataset's last day (today, unless the sandbox was given an ``end``, so
# a fixed dataset plants its bad records on fixed days): windows of the last 20 days are clean, a 30-day backfill holds one
# in 30 x per_day records (1 in 600 at the default 20 a day: under reject_rate's 1%), and
# the rejects table still has an example of each provider's.
BAD_RECORD_EVERY_DAYS = 30
BAD_RECORD_NEWEST_AGE_DAYS = 20


def bad_record_day(day: date, last: date, older_by: int = 0) -> int | None:
    """Which of a provider's bad-record days ``day`` is (0 the newest, 1 the one 30 days older,
    ...) in a dataset ending on ``last``, or None when its records are all good. Emulators with
    several kinds of bad record alternate them by this number, or give a second kind its own days
    (``older_by``)."""
    age = (last - day).days - BAD_RECORD_NEWEST_AGE_DAYS - older_by
    if age < 0 or age % BAD_RECORD_EVERY_DAYS:
        return None
    return age // BAD_RECORD_EVERY_DAYS
