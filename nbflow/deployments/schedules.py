"""Deployment schedules: check a schedule body, compute its fire times, pick the runs to create.

Pure logic, no I/O. A schedule body is `{"cron": EXPR, "timezone": TZ}`, `{"interval": SECONDS}`
or `None`. croniter parses and validates cron text; the fire times are computed here, from its
expanded fields, because croniter's own iteration (7.0.0) fires `30 1 * * *` twice in
America/New_York on the day clocks go back, fires every second for 7-field expressions, and
accepts `0 0 31 2 *` only to fail when asked for a fire time (shared/research/FINDINGS.md).
Computing them here is also what keeps a scheduler tick over 1,000 deployments to milliseconds.

Daylight saving time, for cron schedules (wall-clock times in the schedule's time zone):
- A wall-clock time that occurs twice (clocks go back) fires once, at its first occurrence.
  `30 1 * * *` in America/New_York runs at 01:30 EDT on the November change day, not again at
  01:30 EST.
- A wall-clock time that does not exist (clocks go forward) fires once, at the first instant
  after the gap: `30 2 * * *` runs at 03:00 EDT on the March change day. Several times in one
  gap (`*/15 2 * * *`) make one run, and none if the schedule also fires right at the gap's end.
- So an hourly or minutely cron makes no runs during the repeated hour in autumn (its wall-clock
  times already fired). For a steady cadence in real time, use an interval schedule.

Interval schedules count absolute seconds from an anchor (2000-01-01T00:00Z unless given), so
slot k is `anchor + k * interval` in every process and after every restart.

Catch-up, for slots missed while the scheduler was down (see `due_slots`):
- "latest" (the default): only the most recent missed slot runs. A notebook that refreshes a
  report or a model needs one run with current data, not a burst of stale ones, and a week of
  downtime of an every-minute deployment must not flood the workers with 10,080 runs.
- "all": every missed slot runs, oldest first, at most `MAX_CATCH_UP` (100) of them: the most
  recent 100 when more were missed. For deployments whose runs each process their own period.
- "none": missed slots are skipped.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from calendar import monthrange
from datetime import date, datetime, timedelta, timezone
from difflib import get_close_matches
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import croniter

from nbflow.errors import NbflowError

__all__ = ["CATCH_UP_POLICIES", "DEFAULT_ANCHOR", "MAX_CATCH_UP", "MAX_INTERVAL_SECONDS", "CronSchedule",
           "IntervalSchedule", "Schedule", "ScheduleError", "describe", "due_slots", "parse_schedule",
           "preview", "slot_key"]

#: Interval slots are anchor + k * interval; the anchor is fixed so slots agree across processes.
DEFAULT_ANCHOR = datetime(2000, 1, 1, tzinfo=timezone.utc)
MAX_INTERVAL_SECONDS = 366 * 86400
#: At most this many missed slots run under catch_up="all" (the most recent ones).
MAX_CATCH_UP = 100
CATCH_UP_POLICIES = ("latest", "all", "none")

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_MAX_ORDINAL = date(9999, 12, 1).toordinal()
_SCAN_DAYS = 401 * 366  # a day pattern that matches at all matches within any 400-year Gregorian cycle
_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_FIELD_HINTS = (
    "minutes are 0-59",
    "hours are 0-23",
    "days of the month are 1-31, or L for the last day",
    "months are 1-12 or JAN-DEC",
    "days of the week are 0-6 (0 and 7 are Sunday) or SUN-SAT; 1#2 is the second Monday of the "
    "month and L5 the last Friday",
)
_ALIASES = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
            "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
_NAMES = {name: i for i, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
_NAMES.update({name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))})
_RANGE = re.compile(r"^([a-z0-9]+)-([a-z0-9]+)(/\d+)?$")
_HASHED = re.compile(r"^[hr](\(|/|$)")
_WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_MONTHS = ("", "January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")
_NTH = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth", "l": "last"}


class ScheduleError(NbflowError, ValueError):
    """A schedule body is invalid: `field` names the offending part ("schedule.cron", ...)."""

    def __init__(self, message: str, *, field: str, value: Any = None) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


class Schedule:
    """When a deployment runs: `next_times` and `last_times` give its slots as UTC datetimes."""

    __slots__ = ()

    def next_times(self, after: datetime, count: int | None = None,
                   until: datetime | None = None) -> list[datetime]:
        """Slots strictly after `after`, oldest first: the first `count`, and/or those <= `until`."""
        after_ts, until_ts, count = _bounds(after, count, until)
        return [_utc(ts) for ts in self._forward(after_ts, until_ts, count)]

    def last_times(self, until: datetime, count: int, after: datetime | None = None) -> list[datetime]:
        """The latest `count` slots at or before `until` (and strictly after `after`), oldest first."""
        until_ts = _timestamp(until, "until")
        after_ts = -math.inf if after is None else _timestamp(after, "after")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"count must be a whole number >= 0, not {count!r}.")
        return [_utc(ts) for ts in reversed(self._backward(until_ts, after_ts, count))]

    def to_dict(self) -> dict[str, Any]:
        """The schedule as a REST body; `parse_schedule(s.to_dict()) == s`."""
        raise NotImplementedError

    def _forward(self, after_ts: float, until_ts: float, count: float) -> list[int]:
        """Unix timestamps (whole seconds) of the slots in (after_ts, until_ts], at most count."""
        raise NotImplementedError

    def _backward(self, until_ts: float, after_ts: float, count: int) -> list[int]:
        """Unix timestamps of the latest `count` slots in (after_ts, until_ts], newest first."""
        raise NotImplementedError


class IntervalSchedule(Schedule):
    """Every `seconds` seconds, on the slots anchor + k * seconds (anchor cut to whole seconds)."""

    __slots__ = ("seconds", "anchor", "_anchor")

    def __init__(self, seconds: int, anchor: datetime | None = None) -> None:
        self.seconds: int = _check_interval(seconds)
        anchor = DEFAULT_ANCHOR if anchor is None else anchor
        if not isinstance(anchor, datetime) or anchor.utcoffset() is None:
            raise ScheduleError(f"The interval anchor must be a timezone-aware datetime, not {anchor!r}; "
                                "e.g. datetime(2026, 1, 1, tzinfo=timezone.utc).",
                                field="schedule.anchor", value=anchor)
        #: UTC, whole seconds, so slot keys (UTC to the second) are exact.
        self.anchor: datetime = anchor.astimezone(timezone.utc).replace(microsecond=0)
        self._anchor = int(self.anchor.timestamp())

    def to_dict(self) -> dict[str, Any]:
        return {"interval": self.seconds}

    def _forward(self, after_ts: float, until_ts: float, count: float) -> list[int]:
        step, anchor = self.seconds, self._anchor
        k = _slot_index(after_ts, anchor, step) + 1
        last_k = _slot_index(until_ts, anchor, step) if until_ts != math.inf else k + count - 1
        last_k = min(last_k, k + count - 1) if count != math.inf else last_k
        return list(range(anchor + k * step, anchor + (last_k + 1) * step, step))

    def _backward(self, until_ts: float, after_ts: float, count: int) -> list[int]:
        step, anchor = self.seconds, self._anchor
        k = _slot_index(until_ts, anchor, step)
        first_k = k - count + 1
        if after_ts != -math.inf:
            first_k = max(first_k, _slot_index(after_ts, anchor, step) + 1)
        return list(range(anchor + k * step, anchor + (first_k - 1) * step, -step))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IntervalSchedule) and (other.seconds, other.anchor) == (self.seconds, self.anchor)

    def __hash__(self) -> int:
        return hash((self.seconds, self.anchor))

    def __repr__(self) -> str:
        anchor = "" if self.anchor == DEFAULT_ANCHOR else f", anchor={self.anchor.isoformat()!r}"
        return f"IntervalSchedule({self.seconds}{anchor})"


class _CronSpec:
    """A 5-field cron expression expanded into sets: what days match and at what times of day."""

    __slots__ = ("times", "minutes", "hours", "months", "dom", "dom_last", "nearest", "dow", "nth", "day_or")

    def __init__(self, expanded: list[list[Any]], nth: dict[Any, set[Any]], nearest: set[int]) -> None:
        minutes, hours, dom, months, dow = ([] if f == ["*"] else f for f in expanded)
        self.minutes: tuple[int, ...] = tuple(minutes or range(60))
        self.hours: tuple[int, ...] = tuple(hours or range(24))
        #: Seconds since local midnight at which a matching day fires, sorted.
        self.times: tuple[int, ...] = tuple(sorted(h * 3600 + m * 60 for h in self.hours for m in self.minutes))
        self.months: frozenset[int] = frozenset(months or range(1, 13))
        self.dom: frozenset[int] | None = frozenset(d for d in dom if d != "l") if dom else None
        self.dom_last: bool = "l" in dom
        self.nearest: int | None = min(nearest) if nearest else None
        self.dow: frozenset[int] | None = frozenset(dow) if dow else None
        #: weekday (0 = Sunday) -> {1..5, "l"}: the nth (or last) such weekday of the month.
        self.nth: dict[int, frozenset[Any]] | None = {d: frozenset(n) for d, n in nth.items()} if nth else None
        #: POSIX cron: when both day fields are restricted, a day matching either one fires.
        self.day_or: bool = bool(dom) and bool(dow) and not nth and not nearest

    def matches(self, day: date) -> bool:
        """Whether the schedule fires on this (local) date, croniter's day semantics."""
        if day.month not in self.months:
            return False
        d, weekday = day.day, day.isoweekday() % 7
        if self.nearest is not None:
            return d == _nearest_weekday(day.year, day.month, self.nearest)
        if self.nth is not None:
            wanted = self.nth.get(weekday)
            return wanted is not None and ((d - 1) // 7 + 1 in wanted or (
                "l" in wanted and d + 7 > monthrange(day.year, day.month)[1]))
        dom_hit = self.dom is None and not self.dom_last or d in (self.dom or ()) or (
            self.dom_last and d == monthrange(day.year, day.month)[1])
        dow_hit = self.dow is None or weekday in self.dow
        return (dom_hit or dow_hit) if self.day_or else (dom_hit and dow_hit)


class CronSchedule(Schedule):
    """A standard 5-field cron expression, read as wall-clock time in an IANA time zone."""

    __slots__ = ("expression", "timezone", "_spec", "_zone")

    def __init__(self, expression: str, timezone: str = "UTC") -> None:
        if not isinstance(expression, str):
            raise ScheduleError(f"schedule.cron must be a string such as '30 2 * * *', not {expression!r}.",
                                field="schedule.cron", value=expression)
        self.expression: str = " ".join(expression.split())
        self._spec: _CronSpec = _compile(self.expression)
        self._zone: ZoneInfo = _zone(timezone)
        self.timezone: str = timezone

    def to_dict(self) -> dict[str, Any]:
        return {"cron": self.expression, "timezone": self.timezone}

    def _forward(self, after_ts: float, until_ts: float, count: float) -> list[int]:
        spec, times, out = self._spec, self._spec.times, []
        if count == 0:
            return out
        local = datetime.fromtimestamp(after_ts, self._zone)
        day = local.toordinal()
        # Times at or before `after`'s wall clock cannot fire after it (instants never decrease
        # with wall-clock time under the DST policy), so start the first day just past it.
        first = bisect_right(times, local.hour * 3600 + local.minute * 60 + local.second)
        last_ts, stop_day, give_up = after_ts, _stop_ordinal(until_ts, +1), day + _SCAN_DAYS
        while day <= min(stop_day, give_up):
            when = date.fromordinal(day)
            if when.month not in spec.months:  # skip to the 1st of the next month
                day += monthrange(when.year, when.month)[1] - when.day + 1
                first = 0
                continue
            if spec.matches(when):
                base = (day - _EPOCH_ORDINAL) * 86400
                offset = _day_offset(self._zone, day)
                for sod in times[first:]:
                    ts = base + sod - offset if offset is not None else self._resolve(day, sod)
                    if ts <= last_ts:
                        continue
                    if ts > until_ts:
                        return out
                    out.append(ts)
                    last_ts, give_up = ts, day + _SCAN_DAYS
                    if len(out) >= count:
                        return out
            day += 1
            first = 0
        return out

    def _backward(self, until_ts: float, after_ts: float, count: int) -> list[int]:
        spec, times, out = self._spec, self._spec.times, []
        if count == 0:
            return out
        # A wall-clock time up to one DST shift past `until` may have fired (at its first
        # occurrence) before `until` when `until` falls in the repeated hour: start 3 h later.
        local = datetime.fromtimestamp(until_ts + 3 * 3600, self._zone)
        day = local.toordinal()
        end = bisect_right(times, local.hour * 3600 + local.minute * 60 + local.second)
        stop_day, give_up = _stop_ordinal(after_ts, -1), day - _SCAN_DAYS
        while day >= max(stop_day, give_up):
            when = date.fromordinal(day)
            if when.month not in spec.months:  # skip to the last day of the previous month
                day -= when.day
                end = len(times)
                continue
            if spec.matches(when):
                base = (day - _EPOCH_ORDINAL) * 86400
                offset = _day_offset(self._zone, day)
                for sod in reversed(times[:end]):
                    ts = base + sod - offset if offset is not None else self._resolve(day, sod)
                    if ts > until_ts or (out and ts >= out[-1]):
                        continue
                    if ts <= after_ts:
                        return out
                    out.append(ts)
                    give_up = day - _SCAN_DAYS
                    if len(out) >= count:
                        return out
            day -= 1
            end = len(times)
        return out

    def _resolve(self, day: int, sod: int) -> int:
        """The instant a wall-clock time fires on a day with a DST change (see the module docstring)."""
        wall = datetime.fromordinal(day) + timedelta(seconds=sod)
        before = int(wall.replace(tzinfo=self._zone).utcoffset().total_seconds())  # fold=0
        after = int(wall.replace(tzinfo=self._zone, fold=1).utcoffset().total_seconds())
        local_ts = (day - _EPOCH_ORDINAL) * 86400 + sod
        if before >= after:  # an ordinary time, or one that occurs twice: the first occurrence
            return local_ts - before
        # In a gap: the first instant after it is the change itself, in (local - after, local - before].
        lo, hi = local_ts - after, local_ts - before
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if datetime.fromtimestamp(mid, self._zone).utcoffset().total_seconds() == after:
                hi = mid
            else:
                lo = mid
        return hi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CronSchedule) and (other.expression, other.timezone) == (
            self.expression, self.timezone)

    def __hash__(self) -> int:
        return hash((self.expression, self.timezone))

    def __repr__(self) -> str:
        return f"CronSchedule({self.expression!r}, timezone={self.timezone!r})"


def parse_schedule(spec: dict[str, Any] | None) -> Schedule | None:
    """Check a deployment's `schedule` body and build it; None means the deployment has no schedule."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise ScheduleError(
            f"schedule must be an object such as {{\"cron\": \"30 2 * * *\", \"timezone\": \"UTC\"}} or "
            f"{{\"interval\": 3600}}, or null for no schedule; got {spec!r}.", field="schedule", value=spec)
    unknown = sorted(set(spec) - {"cron", "interval", "timezone"}, key=str)
    if unknown:
        raise ScheduleError(f"schedule has unknown key(s) {', '.join(map(repr, unknown))}; a schedule takes "
                            "\"cron\" and \"timezone\", or \"interval\".", field=f"schedule.{unknown[0]}",
                            value=spec[unknown[0]])
    kinds = [key for key in ("cron", "interval") if key in spec]
    if len(kinds) != 1:
        raise ScheduleError(
            f"schedule must have exactly one of \"cron\" or \"interval\", got {spec!r}. Use "
            "{\"cron\": \"30 2 * * *\", \"timezone\": \"Europe/Paris\"} or {\"interval\": 3600}.",
            field="schedule", value=spec)
    if "timezone" in spec and kinds == ["interval"]:
        raise ScheduleError("schedule.timezone applies to cron schedules only: an interval counts absolute "
                            f"seconds, whatever the time zone. Remove \"timezone\" from {spec!r}, or use a "
                            "cron expression for wall-clock times.", field="schedule.timezone",
                            value=spec["timezone"])
    if kinds == ["interval"]:
        return IntervalSchedule(spec["interval"])
    zone = spec.get("timezone")
    return CronSchedule(spec["cron"], "UTC" if zone is None else zone)


def slot_key(deployment_id: str, scheduled_time: datetime) -> str:
    """The idempotency key of "this deployment's run at this time": `ID@YYYY-MM-DDTHH:MM:SSZ`.

    The same for every scheduler and restart, so a UNIQUE constraint on it makes one run per slot.
    """
    if not isinstance(deployment_id, str) or not deployment_id:
        raise ValueError(f"deployment_id must be a non-empty string, not {deployment_id!r}.")
    _timestamp(scheduled_time, "scheduled_time")
    utc = scheduled_time.astimezone(timezone.utc)
    return f"{deployment_id}@{utc:%Y-%m-%dT%H:%M:%S}Z"


def due_slots(schedule: Schedule, last_scheduled: datetime | None, now: datetime, horizon: timedelta,
              catch_up: str = "latest") -> list[datetime]:
    """The slots to create runs for now, oldest first: those in (now, now + horizon], plus the slots
    missed in (last_scheduled, now] by the catch-up policy ("latest", "all" or "none"; see the
    module docstring).

    `last_scheduled` is the latest scheduled time runs were already created for (None for a new
    deployment: nothing is missed); slots up to it are not returned again.
    """
    if catch_up not in CATCH_UP_POLICIES:
        raise ScheduleError(f"catch_up must be one of {', '.join(CATCH_UP_POLICIES)}, not {catch_up!r}.",
                            field="catch_up", value=catch_up)
    if not isinstance(horizon, timedelta) or horizon < timedelta(0):
        raise ValueError(f"horizon must be a timedelta >= 0, such as timedelta(hours=1), not {horizon!r}.")
    now_ts = _timestamp(now, "now")
    last_ts = None if last_scheduled is None else _timestamp(last_scheduled, "last_scheduled")
    missed: list[datetime] = []
    if last_ts is not None and last_ts < now_ts and catch_up != "none":
        missed = schedule.last_times(now, 1 if catch_up == "latest" else MAX_CATCH_UP, after=last_scheduled)
    start = last_scheduled if last_ts is not None and last_ts > now_ts else now
    return missed + schedule.next_times(start, until=now + horizon)


def describe(schedule: Schedule) -> str:
    """The schedule in words for a UI: "every day at 02:00 (America/New_York)", "every 15 minutes"."""
    if isinstance(schedule, IntervalSchedule):
        return "every " + _duration(schedule.seconds)
    if not isinstance(schedule, CronSchedule):
        raise TypeError(f"describe() takes a CronSchedule or IntervalSchedule, not {schedule!r}.")
    words = _describe_cron(schedule._spec)
    return f"{words or f'cron {schedule.expression}'} ({schedule.timezone})"


def preview(spec: dict[str, Any], now: datetime, count: int = 3) -> dict[str, Any]:
    """A schedule body checked, in words, and its next `count` fire times after `now` (ISO 8601 UTC),
    for a form that shows what a schedule means before it is saved. Raises ScheduleError."""
    schedule = parse_schedule(spec)
    if schedule is None:
        raise ScheduleError("Give a schedule to preview: a cron expression or an interval.", field="schedule")
    times = schedule.next_times(now, count=count)
    return {"schedule": schedule.to_dict(), "description": describe(schedule),
            "next_times": [t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") for t in times]}


# -- checking ------------------------------------------------------------------------------------


def _check_interval(seconds: Any) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ScheduleError(f"schedule.interval must be a number of seconds such as 3600, not {seconds!r}.",
                            field="schedule.interval", value=seconds)
    if not math.isfinite(seconds) or seconds != int(seconds):
        raise ScheduleError(f"schedule.interval must be a whole number of seconds, not {seconds!r}; "
                            f"e.g. {max(1, round(seconds)) if math.isfinite(seconds) else 3600}.",
                            field="schedule.interval", value=seconds)
    if not 1 <= seconds <= MAX_INTERVAL_SECONDS:
        raise ScheduleError(f"schedule.interval is {seconds!r} seconds; it must be from 1 to "
                            f"{MAX_INTERVAL_SECONDS} (366 days). For rarer runs use a cron expression "
                            "such as '0 0 1 1 *' (every 1 January).", field="schedule.interval", value=seconds)
    return int(seconds)


def _zone(name: Any) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise ScheduleError(f"schedule.timezone must be an IANA time zone name such as 'Europe/Paris', "
                            f"not {name!r}.", field="schedule.timezone", value=name)
    try:
        if not _odd_zone(name):
            return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass
    raise ScheduleError(f"schedule.timezone {name!r} is not an IANA time zone name.{_suggest(name)} Use a "
                        "name such as 'UTC', 'Europe/Paris' or 'America/New_York'.",
                        field="schedule.timezone", value=name)


def _odd_zone(name: str) -> bool:
    """"localtime" depends on the machine and "right/" zones count leap seconds: neither is a place."""
    return name in ("localtime", "posixrules", "Factory") or name.startswith(("posix/", "right/"))


def _suggest(name: str) -> str:
    known = {zone.lower(): zone for zone in available_timezones() if not _odd_zone(zone)}
    close = get_close_matches(name.lower().replace(" ", "_"), known, n=1)
    return f" Did you mean {known[close[0]]!r}?" if close else ""


@lru_cache(maxsize=1024)
def _compile(expression: str) -> _CronSpec:
    """Check a cron expression and expand it; cached, so parsing a schedule again is free."""
    def error(problem: str) -> ScheduleError:
        return ScheduleError(f"schedule.cron {expression!r} {problem}", field="schedule.cron", value=expression)

    text = expression.lower()
    if text.startswith("@"):
        if text not in _ALIASES:
            raise error(f"is not a known shorthand; use one of {', '.join(_ALIASES)} or 5 fields.")
        text = _ALIASES[text]
    fields = text.split()
    shown = expression.split() if len(expression.split()) == 5 else fields  # original case, for messages
    if len(fields) != 5:
        raise error(f"has {len(fields)} field{'s' * (len(fields) != 1)}; a cron expression has exactly 5: "
                    "minute hour day-of-month month day-of-week, e.g. '30 2 * * *' (02:30 every day). "
                    "Forms with a seconds or a years field are not supported: for runs more often than "
                    "once a minute use {\"interval\": SECONDS}.")
    for i, field in enumerate(fields):
        for part in field.split(","):
            if part in ("*", "?") and field != part:  # croniter mis-expands "*,5"
                raise error(f"lists {part!r} with other values in the {_FIELDS[i]} field {shown[i]!r}; "
                            f"'{part}' already means every value, so write it alone, or list the values.")
            if _HASHED.match(part):
                raise error(f"uses {shown[i]!r} in the {_FIELDS[i]} field: hashed (H) and random (R) values are "
                            f"not supported, as they would differ between processes. Write a number; "
                            f"{_FIELD_HINTS[i]}.")
            bounds = _RANGE.match(part)
            if bounds and _NAMES.get(bounds[1], bounds[1]) == _NAMES.get(bounds[2], bounds[2]) or (
                    bounds and bounds[1].isdigit() and bounds[2].isdigit() and int(bounds[1]) == int(bounds[2])):
                raise error(f"has the range {part!r} in the {_FIELDS[i]} field, whose ends are equal: croniter "
                            f"reads that as the whole cycle, not one value. Write {bounds[1]!r} for one value "
                            "or '*' for all.")
    try:
        parsed = croniter(text, start_time=0.0)
    except (ValueError, TypeError, KeyError) as exc:  # CroniterError is a ValueError
        for i, field in enumerate(fields):
            alone = ["*"] * 5
            alone[i] = field
            try:
                croniter(" ".join(alone), start_time=0.0)
            except (ValueError, TypeError, KeyError):
                raise error(f"has an invalid {_FIELDS[i]} field {shown[i]!r}: {_FIELD_HINTS[i]} "
                            f"(croniter: {exc}).") from None
        raise error(f"is not valid: {exc}") from None
    nearest = parsed.nearest_weekday  # croniter >= 7: the `W` days, which `expanded` shows as plain days
    if parsed.nth_weekday_of_month and parsed.expanded[2] != ["*"]:
        raise error("restricts the day of the month and uses '#' or 'L' in the day-of-week field; "
                    "put '*' in the day-of-month field, e.g. '0 9 * * 1#1' (the first Monday).")
    if nearest and parsed.expanded[4] != ["*"]:
        raise error("uses 'W' in the day-of-month field and restricts the day of the week; "
                    "put '*' in the day-of-week field, e.g. '0 9 15W * *'.")
    spec = _CronSpec(parsed.expanded, parsed.nth_weekday_of_month, nearest)
    # Whether any day matches depends only on the year's type (leap or not, weekday of 1 January);
    # 2000-2027 holds all 14 types, so this search is exhaustive.
    if not any(spec.matches(date(year, month, day)) for year in range(2000, 2028) for month in spec.months
               for day in range(1, monthrange(year, month)[1] + 1)):
        raise error("can never fire: no date matches its day-of-month, month and day-of-week fields "
                    "(February has no 30th or 31st; April, June, September and November have no 31st). "
                    "Check the day and month fields.")
    return spec


# -- time arithmetic -----------------------------------------------------------------------------


def _timestamp(value: Any, name: str) -> float:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, not {value!r}.")
    if value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, not naive ({value!r}); use e.g. "
                         "datetime.now(timezone.utc).")
    return value.timestamp()


def _slot_index(ts: float, anchor: int, step: int) -> int:
    """k of the last interval slot anchor + k * step at or before ts (microsecond-exact)."""
    return (round(ts * 1e6) - anchor * 1_000_000) // (step * 1_000_000)


def _utc(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def _bounds(after: datetime, count: int | None, until: datetime | None) -> tuple[float, float, float]:
    after_ts = _timestamp(after, "after")
    until_ts = math.inf if until is None else _timestamp(until, "until")
    if count is None and until is None:
        raise ValueError("next_times() needs count or until (or both), or it would never end.")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        raise ValueError(f"count must be a whole number >= 0, not {count!r}.")
    return after_ts, until_ts, math.inf if count is None else count


def _stop_ordinal(bound_ts: float, direction: int) -> int:
    """The last local day (ordinal) a scan towards bound_ts (+1 forward, -1 back) needs to look at."""
    if math.isinf(bound_ts):
        return _MAX_ORDINAL if direction > 0 else 1
    # 2 days past the bound's UTC date covers any UTC offset.
    return min(max(_EPOCH_ORDINAL + math.floor(bound_ts / 86400) + direction * 2, 1), _MAX_ORDINAL)


@lru_cache(maxsize=8192)
def _day_offset(zone: ZoneInfo, ordinal: int) -> int | None:
    """The zone's UTC offset in seconds on a local day, or None if it changes that day.

    Assumes a zone never changes its offset twice within one day and back: no two transitions of
    any zone in tzdata 2026 are less than 26 hours apart.
    """
    day = date.fromordinal(ordinal)
    start, end = datetime(day.year, day.month, day.day, tzinfo=zone), datetime(
        day.year, day.month, day.day, 23, 59, 59, tzinfo=zone)
    offsets = {start.utcoffset(), start.replace(fold=1).utcoffset(), end.utcoffset(), end.replace(fold=1).utcoffset()}
    return int(offsets.pop().total_seconds()) if len(offsets) == 1 else None


def _nearest_weekday(year: int, month: int, day: int) -> int:
    """The weekday (Mon-Fri) nearest `day` within the month: croniter's `W`."""
    last = monthrange(year, month)[1]
    day = min(day, last)
    weekday = date(year, month, day).weekday()
    if weekday == 5:
        return day - 1 if day > 1 else day + 2
    if weekday == 6:
        return day + 1 if day < last else day - 2
    return day


# -- words ---------------------------------------------------------------------------------------


def _duration(seconds: int) -> str:
    for unit, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds % size == 0:
            return unit if seconds == size else f"{seconds // size} {unit}s"
    raise AssertionError(seconds)


def _step(values: tuple[int, ...], cycle: int) -> int | None:
    """k if values are exactly 0, k, 2k, ... covering the cycle evenly (so "every k" is true)."""
    if len(values) < 2:
        return None
    k = values[1] - values[0]
    return k if values[0] == 0 and cycle % k == 0 and values == tuple(range(0, cycle, k)) else None


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _span(values: list[int], names: tuple[str, ...] | None = None) -> str:
    """"Monday through Friday" for 3+ consecutive values, else a list."""
    words = [names[v] if names else str(v) for v in values]
    consecutive = len(values) >= 3 and values == list(range(values[0], values[-1] + 1))
    return f"{words[0]} through {words[-1]}" if consecutive else _join(words)


def _describe_cron(spec: _CronSpec) -> str | None:
    minutes, hours = spec.minutes, spec.hours
    every_minute, every_hour = len(minutes) == 60, len(hours) == 24
    minute_step, hour_step = _step(minutes, 60), _step(hours, 24)
    contiguous = len(hours) > 1 and hours == tuple(range(hours[0], hours[-1] + 1))
    frequency = "minute" if every_minute else f"{minute_step} minutes" if minute_step else None
    daily = False
    if frequency and every_hour:
        when = f"every {frequency}"
    elif len(minutes) == 1 and every_hour:
        when = "every hour" + (f" at minute {minutes[0]}" if minutes[0] else "")
    elif len(minutes) == 1 and hour_step:
        when = f"every {hour_step} hours" + (f" at minute {minutes[0]}" if minutes[0] else "")
    elif len(spec.times) <= 4:
        when, daily = "at " + _join([f"{t // 3600:02}:{t // 60 % 60:02}" for t in spec.times]), True
    elif (frequency or len(minutes) == 1) and contiguous:
        when = (f"every {frequency or 'hour'} from {hours[0]:02}:{minutes[0]:02} "
                f"to {hours[-1]:02}:{minutes[-1]:02}")
    else:
        return None
    days = _describe_days(spec)
    if days is None:
        return None
    if days.startswith("on "):
        return f"{when} {days}"
    return " ".join(filter(None, ["every day" if daily else "", when, days]))


def _describe_days(spec: _CronSpec) -> str | None:
    """"on Monday through Friday in January", "" for every day, None when too unusual for words."""
    dom = sorted(spec.dom or ())
    if spec.nth is not None:
        picks = [f"the {_join([_NTH[n] for n in sorted(ns, key=str)])} {_WEEKDAYS[d]}"
                 for d, ns in sorted(spec.nth.items(), key=lambda item: (item[0] - 1) % 7)]
        days = f"on {_join(picks)} of the month"
    elif spec.nearest is not None:
        days = f"on the weekday nearest day {spec.nearest} of the month"
    elif dom and len(dom) == 1 and not spec.dom_last and not spec.dow and len(spec.months) == 1:
        return f"on {dom[0]} {_MONTHS[min(spec.months)]}"
    else:
        parts = []
        if dom or spec.dom_last:
            if len(dom) > 6 and dom != list(range(dom[0], dom[-1] + 1)):
                return None
            listed = ([f"day{'s' * (len(dom) > 1)} {_span(dom)}"] if dom else []) + (
                ["the last day"] if spec.dom_last else [])
            parts.append(f"on {_join(listed)} of the month")
        if spec.dow:
            weekdays = sorted(spec.dow, key=lambda d: (d - 1) % 7)  # Monday first, so Sat+Sun are adjacent
            iso = [(d - 1) % 7 for d in weekdays]
            parts.append("on " + _span(iso, _WEEKDAYS[1:] + _WEEKDAYS[:1]))
        days = " or ".join(parts)
    if len(spec.months) < 12:
        days = f"{days} in {_span(sorted(spec.months), _MONTHS)}".strip()
    return days
