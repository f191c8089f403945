"""Deployment schedules: body validation, fire times (DST included), catch-up, slot keys, speed."""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from nbflow.deployments import schedules
from nbflow.deployments.schedules import (
    MAX_CATCH_UP,
    CronSchedule,
    IntervalSchedule,
    ScheduleError,
    describe,
    due_slots,
    parse_schedule,
    slot_key,
)
from nbflow.errors import NbflowError

UTC = timezone.utc
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# -- parsing -------------------------------------------------------------------------------------

VALID = [
    (None, None),
    ({"cron": "30 2 * * *"}, CronSchedule("30 2 * * *", "UTC")),
    ({"cron": "30 2 * * *", "timezone": None}, CronSchedule("30 2 * * *", "UTC")),
    ({"cron": "  30  2 * * *\t", "timezone": "America/New_York"}, CronSchedule("30 2 * * *", "America/New_York")),
    ({"cron": "*/15 9-17 * * MON-FRI", "timezone": "Europe/Paris"}, CronSchedule("*/15 9-17 * * MON-FRI",
                                                                                "Europe/Paris")),
    ({"cron": "0 0 29 2 *"}, CronSchedule("0 0 29 2 *")),       # leap years only, but it fires
    ({"cron": "0 0 31 2 1"}, CronSchedule("0 0 31 2 1")),       # POSIX OR: Mondays in February
    ({"cron": "0 0 * 2 1#5"}, CronSchedule("0 0 * 2 1#5")),     # fifth Monday of February: 2044
    ({"cron": "0 9 * * L5"}, CronSchedule("0 9 * * L5")),
    ({"cron": "0 9 15W * *"}, CronSchedule("0 9 15W * *")),
    ({"cron": "0 0 L * *"}, CronSchedule("0 0 L * *")),
    ({"cron": "@daily"}, CronSchedule("@daily")),
    ({"interval": 60}, IntervalSchedule(60)),
    ({"interval": 3600.0}, IntervalSchedule(3600)),
    ({"interval": 1}, IntervalSchedule(1)),
    ({"interval": 366 * 86400}, IntervalSchedule(366 * 86400)),
]


@pytest.mark.parametrize(("body", "expected"), VALID, ids=[repr(body) for body, _ in VALID])
def test_valid_bodies(body, expected) -> None:
    schedule = parse_schedule(body)
    assert schedule == expected
    if schedule is not None:
        assert parse_schedule(schedule.to_dict()) == schedule


INVALID = [
    # (body, field, words the message must contain)
    ("0 2 * * *", "schedule", ["'0 2 * * *'", "{\"cron\""]),
    ({}, "schedule", ["exactly one of"]),
    ({"timezone": "UTC"}, "schedule", ["exactly one of"]),
    ({"cron": "0 2 * * *", "interval": 60}, "schedule", ["exactly one of"]),
    ({"cron": "0 2 * * *", "tz": "UTC"}, "schedule.tz", ["'tz'"]),
    ({"interval": 60, "anchor": "2026-01-01"}, "schedule.anchor", ["'anchor'"]),
    ({"interval": 60, "timezone": "UTC"}, "schedule.timezone", ["cron schedules only"]),
    # cron: field count
    ({"cron": "0 0 * * * *"}, "schedule.cron", ["'0 0 * * * *'", "has 6 fields", "exactly 5", "interval"]),
    ({"cron": "0 0 0 * * * 2030"}, "schedule.cron", ["has 7 fields", "exactly 5"]),
    ({"cron": "0 0 * *"}, "schedule.cron", ["has 4 fields"]),
    ({"cron": ""}, "schedule.cron", ["has 0 fields"]),
    ({"cron": 5}, "schedule.cron", ["not 5"]),
    ({"cron": "@reboot"}, "schedule.cron", ["'@reboot'", "@daily"]),
    # cron: each field
    ({"cron": "61 * * * *"}, "schedule.cron", ["minute field '61'", "0-59"]),
    ({"cron": "*/0 * * * *"}, "schedule.cron", ["minute field '*/0'", "step"]),
    ({"cron": "0 24 * * *"}, "schedule.cron", ["hour field '24'", "0-23"]),
    ({"cron": "0 0 32 * *"}, "schedule.cron", ["day-of-month field '32'", "1-31"]),
    ({"cron": "0 0 * 13 *"}, "schedule.cron", ["month field '13'", "JAN-DEC"]),
    ({"cron": "0 0 * Foo *"}, "schedule.cron", ["month field 'Foo'"]),
    ({"cron": "0 0 * * 8"}, "schedule.cron", ["day-of-week field '8'", "SUN-SAT"]),
    ({"cron": "0 0 * * mon#6"}, "schedule.cron", ["day-of-week field 'mon#6'"]),
    ({"cron": "H * * * *"}, "schedule.cron", ["'H'", "hashed"]),
    ({"cron": "R R * * *"}, "schedule.cron", ["random"]),
    ({"cron": "0 9-9 * * *"}, "schedule.cron", ["'9-9'", "whole cycle", "Write '9'"]),
    ({"cron": "0 0 * jan-jan *"}, "schedule.cron", ["'jan-jan'"]),
    ({"cron": "*,5 * * * *"}, "schedule.cron", ["'*,5'", "alone"]),
    ({"cron": "0 0 1 * 1#1"}, "schedule.cron", ["'*' in the day-of-month field"]),
    ({"cron": "0 0 15W * 1"}, "schedule.cron", ["'*' in the day-of-week field"]),
    # cron: can never fire
    ({"cron": "0 0 31 2 *"}, "schedule.cron", ["'0 0 31 2 *'", "can never fire"]),
    ({"cron": "0 0 30 2 *"}, "schedule.cron", ["can never fire"]),
    ({"cron": "0 0 31 4,6,9,11 *"}, "schedule.cron", ["can never fire"]),
    # timezone
    ({"cron": "0 2 * * *", "timezone": "Mars/Olympus"}, "schedule.timezone", ["'Mars/Olympus'", "IANA"]),
    ({"cron": "0 2 * * *", "timezone": "America/New_Yrok"}, "schedule.timezone", ["'America/New_York'?"]),
    ({"cron": "0 2 * * *", "timezone": "localtime"}, "schedule.timezone", ["'localtime'"]),
    ({"cron": "0 2 * * *", "timezone": "right/UTC"}, "schedule.timezone", ["'right/UTC'"]),
    ({"cron": "0 2 * * *", "timezone": "../../etc/passwd"}, "schedule.timezone", ["'../../etc/passwd'"]),
    ({"cron": "0 2 * * *", "timezone": ""}, "schedule.timezone", ["''"]),
    ({"cron": "0 2 * * *", "timezone": -5}, "schedule.timezone", ["-5"]),
    # interval
    ({"interval": 0}, "schedule.interval", ["is 0 seconds", "from 1 to"]),
    ({"interval": -60}, "schedule.interval", ["-60"]),
    ({"interval": 366 * 86400 + 1}, "schedule.interval", ["31622401", "cron"]),
    ({"interval": 1.5}, "schedule.interval", ["whole number", "1.5"]),
    ({"interval": True}, "schedule.interval", ["True"]),
    ({"interval": "60"}, "schedule.interval", ["'60'"]),
    ({"interval": None}, "schedule.interval", ["None"]),
    ({"interval": float("nan")}, "schedule.interval", ["nan"]),
    ({"interval": float("inf")}, "schedule.interval", ["inf"]),
]


@pytest.mark.parametrize(("body", "field", "words"), INVALID, ids=[repr(body) for body, _, _ in INVALID])
def test_invalid_bodies_name_the_field_and_value(body, field, words) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(body)
    assert caught.value.field == field
    assert isinstance(caught.value, (NbflowError, ValueError))
    for word in words:
        assert word in str(caught.value)


def test_parsing_is_cached_and_cheap() -> None:
    parse_schedule({"cron": "17 3 * * *"})
    start = time.perf_counter()
    for _ in range(1000):
        parse_schedule({"cron": "17 3 * * *", "timezone": "Europe/Berlin"})
    assert time.perf_counter() - start < 0.5


# -- cron fire times -----------------------------------------------------------------------------

CROSS_CHECK = [
    "30 2 * * *", "*/15 9-17 * * 1-5", "0 0 29 2 *", "0 0 L * *", "0 9 * * 1#1", "0 9 * * L5",
    "0 0 1 * 1", "0 0 15W * *", "0 0 31W * *", "0 0 1W * *", "0 0 * * 2#5", "0 0 31 * *",
    "0 0 1,15,L * *", "59/15 * * * *", "0 22-2 * * *", "0 0 * apr-jan *", "0 0 * * fri-mon",
    "0 0 13 * 5", "0 0 1-7 * 1", "5 4 * * sun", "0 0 1 * 0-6", "*/7 */5 */3 */2 *", "0 0 ? * 3",
    "0 0 * * 7#2,1#3", "0 12 29-31 * *", "@weekly", "@monthly",
]


def _random_expressions(n: int) -> list[str]:
    rng = random.Random(20261101)

    def field(lo: int, hi: int) -> str:
        kind = rng.random()
        if kind < 0.3:
            return "*"
        if kind < 0.5:
            return str(rng.randint(lo, hi))
        if kind < 0.7:
            a, b = sorted(rng.sample(range(lo, hi + 1), 2))
            return f"{a}-{b}"
        if kind < 0.85:
            return f"*/{rng.randint(2, 7)}"
        return ",".join(map(str, sorted(rng.sample(range(lo, hi + 1), 3))))

    return [" ".join([field(0, 59), field(0, 23), field(1, 31), field(1, 12), field(0, 6)]) for _ in range(n)]


@pytest.mark.parametrize("expression", CROSS_CHECK + _random_expressions(60))
def test_wall_clock_matching_agrees_with_croniter_in_utc(expression: str) -> None:
    """Without DST, our fire times are croniter's: same day-of-month/day-of-week semantics."""
    try:
        schedule = CronSchedule(expression)
    except ScheduleError as error:  # a random expression that can never fire: croniter agrees
        assert "can never fire" in str(error)
        return
    start = utc(2023, 5, 17, 13, 47)
    expected = croniter(expression, start)
    mine = schedule.next_times(start, count=40)
    assert mine == [expected.get_next(datetime) for _ in range(40)]
    assert schedule.last_times(mine[-1], 40, after=start) == mine
    assert schedule.last_times(mine[-1], 3) == mine[-3:]


def test_any_expression_is_refused_cleanly_or_agrees_with_croniter() -> None:
    """Seeded fuzz over the whole syntax (ranges, steps, lists, names, L, W, #): an expression is
    either refused with a ScheduleError or fires exactly when croniter says, and can be described."""
    rng = random.Random(12)
    bounds = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]

    def token(lo: int, hi: int) -> str:
        n = lambda: str(rng.randint(lo - 1, hi + 1))  # noqa: E731 - out of range on purpose, sometimes
        return rng.choice([
            lambda: "*", n, lambda: f"{n()}-{n()}", lambda: f"*/{rng.randint(0, 9)}",
            lambda: f"{n()}/{rng.randint(1, 9)}",
            lambda: f"{n()}-{n()}/{rng.randint(1, 5)}", lambda: "L", lambda: f"{n()}W", lambda: "?",
            lambda: f"{rng.randint(0, 7)}#{rng.randint(0, 6)}", lambda: f"L{rng.randint(0, 7)}",
            lambda: rng.choice(["mon", "fri", "jan", "dec", "sun-sat", "mon-fri", "fri-mon"]),
        ])()

    accepted, start = 0, utc(2024, 2, 3, 4, 5)
    for _ in range(4000):
        expression = " ".join(",".join(token(*bounds[f]) for _ in range(rng.choice([1, 1, 1, 2]))) for f in range(5))
        try:
            schedule = CronSchedule(expression)
        except ScheduleError as error:
            assert error.field == "schedule.cron" and repr(expression) in str(error)
            continue
        accepted += 1
        expected = croniter(expression, start)
        assert schedule.next_times(start, count=10) == [expected.get_next(datetime) for _ in range(10)], expression
        assert describe(schedule).endswith("(UTC)")
    assert accepted > 30


SEMANTICS = [
    # Pinned without croniter, so a croniter upgrade that changes what an expression means fails here.
    ("59/15 * * * *", utc(2026, 1, 1), ["00:59", "01:59", "02:59"]),             # minute 59 (croniter < 7: :00/:15/...)
    ("0 22-2 * * *", utc(2026, 1, 1, 12), ["22:00", "23:00", "00:00", "01:00", "02:00", "22:00"]),  # wraps midnight
    ("0 12 1 * 1", utc(2026, 1, 20), ["01-26", "02-01", "02-02", "02-09"]),      # POSIX OR: the 1st or Mondays
    ("0 12 15W * *", utc(2026, 2, 1), ["02-16", "03-16", "04-15"]),              # Feb 15 2026 is a Sunday
    ("0 12 * * 5#3", utc(2026, 1, 1), ["01-16", "02-20", "03-20"]),              # third Friday
    ("0 12 * * L1", utc(2026, 1, 1), ["01-26", "02-23", "03-30"]),               # last Monday
    ("0 12 L 2 *", utc(2027, 1, 1), ["02-28", "02-29"]),                         # 2027, then leap 2028
    ("0 12 * * 0-7", utc(2026, 1, 1), ["01-01", "01-02", "01-03"]),              # 0-7: every day
    ("0 12 * * fri-mon", utc(2026, 1, 1), ["01-02", "01-03", "01-04", "01-05", "01-09"]),
]


@pytest.mark.parametrize(("expression", "after", "expected"), SEMANTICS, ids=[e for e, _, _ in SEMANTICS])
def test_cron_semantics(expression: str, after: datetime, expected: list[str]) -> None:
    form = "%H:%M" if ":" in expected[0] else "%m-%d"
    times = CronSchedule(expression).next_times(after, count=len(expected))
    assert [t.strftime(form) for t in times] == expected


def test_next_times_are_utc_and_strictly_after() -> None:
    schedule = CronSchedule("30 2 * * *", "America/New_York")
    times = schedule.next_times(utc(2026, 6, 1, 6, 30), count=2)  # 02:30 EDT exactly
    assert times == [utc(2026, 6, 2, 6, 30), utc(2026, 6, 3, 6, 30)]
    assert all(t.tzinfo is UTC for t in times)
    assert schedule.next_times(utc(2026, 6, 1), until=utc(2026, 6, 4)) == [utc(2026, 6, 1, 6, 30)] + times
    assert schedule.next_times(utc(2026, 6, 1), count=0) == []
    # the same instant in another zone gives the same answer
    assert schedule.next_times(utc(2026, 6, 1, 6, 30).astimezone(NEW_YORK), count=2) == times


@pytest.mark.parametrize(("call", "error"), [
    (lambda s: s.next_times(datetime(2026, 1, 1), count=1), "timezone-aware"),
    (lambda s: s.next_times(utc(2026, 1, 1)), "count or until"),
    (lambda s: s.next_times(utc(2026, 1, 1), count=-1), "count"),
    (lambda s: s.last_times(datetime(2026, 1, 1), 1), "timezone-aware"),
])
def test_bad_arguments(call, error) -> None:
    with pytest.raises(ValueError, match=error):
        call(CronSchedule("0 * * * *"))


def _local_runs(schedule: CronSchedule, day: datetime) -> list[str]:
    times = schedule.next_times(utc(day.year, day.month, day.day) - timedelta(days=1), until=utc(
        day.year, day.month, day.day) + timedelta(days=2))
    local = [t.astimezone(NEW_YORK) for t in times]
    return [t.strftime("%H:%M %Z") for t in local if t.date() == day.date()]


DST_CASES = [
    # (expression, local date, runs that local day) -- America/New_York, 2026
    ("30 1 * * *", datetime(2026, 11, 1), ["01:30 EDT"]),                # 01:30 happens twice: runs once
    ("30 1 * * *", datetime(2026, 10, 31), ["01:30 EDT"]),
    ("30 1 * * *", datetime(2026, 11, 2), ["01:30 EST"]),
    ("30 2 * * *", datetime(2026, 3, 8), ["03:00 EDT"]),                 # 02:30 does not exist: after the gap
    ("30 2 * * *", datetime(2026, 3, 7), ["02:30 EST"]),
    ("30 2 * * *", datetime(2026, 3, 9), ["02:30 EDT"]),
    ("*/15 2 * * *", datetime(2026, 3, 8), ["03:00 EDT"]),               # four missing times: one run
    ("0 2,3 * * *", datetime(2026, 3, 8), ["03:00 EDT"]),                # gap run and 03:00 coincide
    ("0 1-3 * * *", datetime(2026, 11, 1), ["01:00 EDT", "02:00 EST", "03:00 EST"]),
    ("0 0 * * *", datetime(2026, 11, 1), ["00:00 EDT"]),
]


@pytest.mark.parametrize(("expression", "day", "runs"), DST_CASES,
                         ids=[f"{e} {d:%m-%d}" for e, d, _ in DST_CASES])
def test_dst_in_new_york(expression: str, day: datetime, runs: list[str]) -> None:
    assert _local_runs(CronSchedule(expression, "America/New_York"), day) == runs


def _oracle(schedule: CronSchedule, start: datetime, end: datetime) -> list[datetime]:
    """The DST policy by brute force over every UTC minute: a matching wall-clock time fires at its
    first occurrence; matching times skipped by a gap fire at the first minute after it."""
    zone, spec = ZoneInfo(schedule.timezone), schedule._spec
    times = set(spec.times)

    def matches(wall: datetime) -> bool:
        return wall.hour * 3600 + wall.minute * 60 in times and spec.matches(wall.date())

    fired, previous = [], (start - timedelta(minutes=1)).astimezone(zone).replace(tzinfo=None)
    instant = start
    while instant <= end:
        local = instant.astimezone(zone)
        wall = local.replace(tzinfo=None)
        skipped = (previous + timedelta(minutes=k) for k in range(1, int((wall - previous).total_seconds() // 60)))
        if (matches(wall) and local.fold == 0) or any(matches(w) for w in skipped):
            fired.append(instant)
        previous, instant = wall, instant + timedelta(minutes=1)
    return fired


def _transitions(zone: ZoneInfo, year: int) -> list[datetime]:
    offsets = [(t, t.astimezone(zone).utcoffset()) for t in (utc(year, 1, 1) + timedelta(hours=h) for h in range(8784))]
    return [t for (_, before), (t, after) in zip(offsets, offsets[1:], strict=False) if before != after]


# 1 h shifts at 02:00 and at midnight (Santiago), 30 min (Lord Howe), 2 h (Troll), negative DST (Dublin).
@pytest.mark.parametrize("zone", ["America/New_York", "Europe/London", "America/Santiago", "Australia/Lord_Howe",
                                  "Antarctica/Troll", "Europe/Dublin"])
def test_dst_policy_matches_brute_force(zone: str) -> None:
    transitions = _transitions(ZoneInfo(zone), 2026)
    assert len(transitions) == 2
    for expression in ["30 1 * * *", "30 2 * * *", "*/15 * * * *", "0 0 * * *", "59 23 * * *", "10,40 0-3 * * *",
                       "0 * * * *"]:
        schedule = CronSchedule(expression, zone)
        for change in transitions:
            start, end = change - timedelta(hours=14), change + timedelta(hours=14)
            expected = _oracle(schedule, start, end)
            assert schedule.next_times(start - timedelta(seconds=1), until=end) == expected, (expression, change)
            assert schedule.last_times(end, len(expected), after=start - timedelta(seconds=1)) == expected


def test_last_times_from_inside_the_repeated_hour() -> None:
    # 01:30 EST, the second 01:30: the every-20-minutes times up to 01:40 already fired in EDT
    schedule = CronSchedule("*/20 * * * *", "America/New_York")
    runs = schedule.last_times(utc(2026, 11, 1, 6, 30), 3)
    assert [t.astimezone(NEW_YORK).strftime("%H:%M %Z") for t in runs] == ["01:00 EDT", "01:20 EDT", "01:40 EDT"]


# -- intervals -----------------------------------------------------------------------------------


def test_interval_slots_are_anchored() -> None:
    hourly = IntervalSchedule(3600)
    assert hourly.next_times(utc(2026, 1, 1, 0, 17, 42), count=3) == [utc(2026, 1, 1, 1), utc(2026, 1, 1, 2),
                                                                       utc(2026, 1, 1, 3)]
    assert hourly.next_times(utc(2026, 1, 1, 1), count=1) == [utc(2026, 1, 1, 2)]  # strictly after
    assert hourly.last_times(utc(2026, 1, 1, 1), 2) == [utc(2026, 1, 1, 0), utc(2026, 1, 1, 1)]
    # a 7-second interval: every slot is anchor + k * 7 s, whenever and wherever it is computed
    odd = IntervalSchedule(7)
    for after in [utc(2026, 3, 8, 6, 59, 58), utc(2031, 1, 1), utc(2026, 3, 8, 7, 0, 1, 999999)]:
        for slot in odd.next_times(after, count=5):
            assert (slot - schedules.DEFAULT_ANCHOR).total_seconds() % 7 == 0
            assert slot > after
    # two processes that start at different times agree on the slots
    first = IntervalSchedule(900).next_times(utc(2026, 5, 1, 10, 3), until=utc(2026, 5, 1, 12))
    second = IntervalSchedule(900).next_times(utc(2026, 5, 1, 10, 15, 0, 1), until=utc(2026, 5, 1, 12))
    assert first[1:] == second and first[0] == utc(2026, 5, 1, 10, 15)


def test_interval_anchor_and_dst() -> None:
    daily = IntervalSchedule(86400, anchor=datetime(2026, 3, 1, 9, 30, 0, 500, tzinfo=NEW_YORK))
    assert daily.anchor == utc(2026, 3, 1, 14, 30)  # UTC, whole seconds
    # absolute seconds: across the March change the local time moves from 09:30 to 10:30
    times = daily.next_times(utc(2026, 3, 7), count=2)
    assert [t.astimezone(NEW_YORK).strftime("%H:%M") for t in times] == ["09:30", "10:30"]
    with pytest.raises(ScheduleError) as caught:
        IntervalSchedule(60, anchor=datetime(2026, 1, 1))
    assert caught.value.field == "schedule.anchor"


# -- describe ------------------------------------------------------------------------------------

DESCRIBE = [
    (CronSchedule("0 2 * * *", "America/New_York"), "every day at 02:00 (America/New_York)"),
    (CronSchedule("30 9 * * 1-5"), "at 09:30 on Monday through Friday (UTC)"),
    (CronSchedule("*/15 * * * *"), "every 15 minutes (UTC)"),
    (CronSchedule("* * * * *"), "every minute (UTC)"),
    (CronSchedule("0 * * * *"), "every hour (UTC)"),
    (CronSchedule("15 * * * *"), "every hour at minute 15 (UTC)"),
    (CronSchedule("0 */6 * * *"), "every 6 hours (UTC)"),
    (CronSchedule("0 9,17 * * *"), "every day at 09:00 and 17:00 (UTC)"),
    (CronSchedule("*/15 9-17 * * 1-5"), "every 15 minutes from 09:00 to 17:45 on Monday through Friday (UTC)"),
    (CronSchedule("0 9-17 * * *"), "every hour from 09:00 to 17:00 (UTC)"),
    (CronSchedule("0 10 * * sat,sun"), "at 10:00 on Saturday and Sunday (UTC)"),
    (CronSchedule("0 8 * * mon,wed,fri"), "at 08:00 on Monday, Wednesday and Friday (UTC)"),
    (CronSchedule("0 0 1 * *"), "at 00:00 on day 1 of the month (UTC)"),
    (CronSchedule("0 0 1,15 * *"), "at 00:00 on days 1 and 15 of the month (UTC)"),
    (CronSchedule("0 0 L * *"), "at 00:00 on the last day of the month (UTC)"),
    (CronSchedule("0 0 1 1 *"), "at 00:00 on 1 January (UTC)"),
    (CronSchedule("0 0 * 1,7 *"), "every day at 00:00 in January and July (UTC)"),
    (CronSchedule("0 9 * * 1#1"), "at 09:00 on the first Monday of the month (UTC)"),
    (CronSchedule("0 9 * * L5"), "at 09:00 on the last Friday of the month (UTC)"),
    (CronSchedule("0 9 15W * *"), "at 09:00 on the weekday nearest day 15 of the month (UTC)"),
    (CronSchedule("0 0 1 * 1"), "at 00:00 on day 1 of the month or on Monday (UTC)"),
    (CronSchedule("@hourly", "Asia/Tokyo"), "every hour (Asia/Tokyo)"),
    (CronSchedule("*/7 * * * *"), "cron */7 * * * * (UTC)"),             # not evenly every 7 minutes
    (CronSchedule("7,19 */3 * * *"), "cron 7,19 */3 * * * (UTC)"),
    (IntervalSchedule(900), "every 15 minutes"),
    (IntervalSchedule(3600), "every hour"),
    (IntervalSchedule(5400), "every 90 minutes"),
    (IntervalSchedule(86400), "every day"),
    (IntervalSchedule(604800), "every week"),
    (IntervalSchedule(45), "every 45 seconds"),
]


@pytest.mark.parametrize(("schedule", "words"), DESCRIBE, ids=[w for _, w in DESCRIBE])
def test_describe(schedule, words: str) -> None:
    assert describe(schedule) == words


# -- due slots and slot keys ---------------------------------------------------------------------

HOURLY = IntervalSchedule(3600)
NOW = utc(2026, 1, 1, 5, 30)
DUE = [
    # (last_scheduled, now, catch_up, expected hours of 2026-01-01; 2 h horizon)
    (utc(2026, 1, 1, 0), NOW, "latest", [5, 6, 7]),
    (utc(2026, 1, 1, 0), NOW, "all", [1, 2, 3, 4, 5, 6, 7]),
    (utc(2026, 1, 1, 0), NOW, "none", [6, 7]),
    (None, NOW, "latest", [6, 7]),                        # a new deployment missed nothing
    (None, NOW, "all", [6, 7]),
    (utc(2026, 1, 1, 5), NOW, "latest", [6, 7]),          # up to date: nothing missed
    (utc(2026, 1, 1, 6), NOW, "latest", [7]),             # runs already created ahead
    (utc(2026, 1, 1, 7), NOW, "all", []),
    (utc(2026, 1, 1, 4), utc(2026, 1, 1, 5), "latest", [5, 6, 7]),  # a slot exactly now is due now
]


@pytest.mark.parametrize(("last", "now", "catch_up", "hours"), DUE,
                         ids=[f"{policy}-{last}" for last, _, policy, _ in DUE])
def test_due_slots(last, now, catch_up, hours) -> None:
    slots = due_slots(HOURLY, last, now, timedelta(hours=2), catch_up)
    assert slots == [utc(2026, 1, 1, h) for h in hours]


def test_due_slots_catch_up_all_is_capped_to_the_most_recent() -> None:
    every_minute = CronSchedule("* * * * *")
    slots = due_slots(every_minute, NOW - timedelta(days=1), NOW, timedelta(0), "all")
    assert len(slots) == MAX_CATCH_UP == 100
    assert slots[-1] == NOW and slots[0] == NOW - timedelta(minutes=99)
    assert slots == sorted(slots)


def test_due_slots_for_cron_across_a_dst_change() -> None:
    schedule = CronSchedule("30 2 * * *", "America/New_York")
    slots = due_slots(schedule, utc(2026, 3, 6, 7, 30), utc(2026, 3, 9, 12), timedelta(days=1), "all")
    assert slots == [utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30), utc(2026, 3, 10, 6, 30)]


def test_due_slots_rejects_bad_arguments() -> None:
    with pytest.raises(ScheduleError) as caught:
        due_slots(HOURLY, None, NOW, timedelta(hours=1), "some")
    assert caught.value.field == "catch_up" and "'some'" in str(caught.value)
    with pytest.raises(ValueError, match="horizon"):
        due_slots(HOURLY, None, NOW, timedelta(hours=-1))
    with pytest.raises(ValueError, match="timezone-aware"):
        due_slots(HOURLY, None, datetime(2026, 1, 1), timedelta(hours=1))


def test_slot_keys_make_one_run_per_slot() -> None:
    assert slot_key("dep-1", utc(2026, 3, 8, 7)) == "dep-1@2026-03-08T07:00:00Z"
    same_instant = utc(2026, 3, 8, 7).astimezone(NEW_YORK)
    assert slot_key("dep-1", same_instant) == slot_key("dep-1", utc(2026, 3, 8, 7, 0, 0, 250))
    assert slot_key("dep-2", same_instant) != slot_key("dep-1", same_instant)
    # two schedulers, or one before and after a restart, ticking at different moments
    schedule = CronSchedule("*/10 * * * *", "Europe/Paris")
    first = {slot_key("dep-1", t) for t in due_slots(schedule, None, utc(2026, 1, 1, 12, 1), timedelta(hours=1))}
    second = {slot_key("dep-1", t) for t in due_slots(CronSchedule("*/10 * * * *", "Europe/Paris"),
                                                      utc(2026, 1, 1, 12, 30), utc(2026, 1, 1, 12, 4),
                                                      timedelta(hours=1))}
    assert second < first and len(first) == 6
    with pytest.raises(ValueError, match="timezone-aware"):
        slot_key("dep-1", datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="deployment_id"):
        slot_key("", utc(2026, 1, 1))


# -- speed ---------------------------------------------------------------------------------------

MIX = [
    {"cron": "* * * * *"}, {"cron": "*/5 * * * *", "timezone": "Europe/Paris"},
    {"cron": "*/15 9-17 * * 1-5", "timezone": "America/New_York"}, {"cron": "M * * * *", "timezone": "Asia/Tokyo"},
    {"cron": "M 2 * * *", "timezone": "America/New_York"}, {"cron": "M 9 * * 1#1", "timezone": "Europe/London"},
    {"cron": "M 0 1 * *"}, {"cron": "M 0 L * *", "timezone": "Australia/Sydney"},
    {"cron": "M 8 * * mon-fri", "timezone": "America/Los_Angeles"},
    {"interval": 60}, {"interval": 300}, {"interval": 3600}, {"interval": 86400}, {"interval": 45},
]


def _deployments(n: int) -> list[dict]:
    bodies = [dict(MIX[i % len(MIX)]) for i in range(n)]
    for i, body in enumerate(bodies):
        if "cron" in body:
            body["cron"] = body["cron"].replace("M", str(i % 60))
    return bodies


def test_due_slots_for_1000_deployments_is_fast() -> None:
    """A scheduler tick: parse 1,000 mixed schedules (cold caches) and compute an hour of slots."""
    schedules._compile.cache_clear()
    schedules._day_offset.cache_clear()
    bodies, now = _deployments(1000), utc(2026, 11, 1, 5, 7, 13)  # the New York fall-back day
    start = time.perf_counter()
    parsed = [parse_schedule(body) for body in bodies]
    slots = [due_slots(s, now - timedelta(minutes=3), now, timedelta(hours=1)) for s in parsed]
    elapsed = time.perf_counter() - start
    assert sum(map(len, slots)) > 10_000
    assert elapsed < 0.5, f"1,000 deployments took {elapsed * 1000:.0f} ms"


def test_preview_gives_words_and_the_next_fire_times_in_utc() -> None:
    now = datetime(2026, 3, 27, 12, 0, tzinfo=timezone.utc)  # a Friday; Paris goes to summer time on the 29th
    preview = schedules.preview({"cron": "0 6 * * 1-5", "timezone": "Europe/Paris"}, now)
    assert preview["schedule"] == {"cron": "0 6 * * 1-5", "timezone": "Europe/Paris"}
    assert preview["next_times"] == ["2026-03-30T04:00:00Z", "2026-03-31T04:00:00Z", "2026-04-01T04:00:00Z"]
    assert preview["description"] == describe(schedules.parse_schedule(preview["schedule"]))
    assert schedules.preview({"interval": 90}, now, count=1)["next_times"] == ["2026-03-27T12:01:30Z"]
    with pytest.raises(ScheduleError) as refused:
        schedules.preview({}, now)
    assert refused.value.field == "schedule"
