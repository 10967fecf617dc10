"""Auditing a store: are its bars the contract's, its revisions whole, its coverage known?

Rules (DESIGN §3, §4, §6):
- Every stored record (every revision of every key) meets the contract: `bar_problems` against
  the symbol's calendar (bucket alignment included), the store's own final rules
  (`rules.final_problem`), and the source fits the timeframe (1m is `history`, higher
  timeframes are `derived`).
- A key's revisions are 0..n with no hole and no rev stored twice, in rev order, and every
  rev > 0 says why (its reason).
- The latest revision of each derived bar equals `derive` of the latest final 1m bars in its
  bucket (so a repaired 1m that was never re-derived shows up here).
- Derived completeness: every bucket of an expected higher timeframe whose minutes are all
  closed, final or quiet and which holds a final 1m has a derived final (`derived.missing`
  otherwise); with the rule above, that final equals the aggregation of its minutes. The expected
  timeframes are the caller's, else those stored for any symbol, else the config's default.
- Coverage per symbol and UTC day counts closed/final/quiet/missing minutes with `classify` over
  the latest 1m finals and the fetched intervals. Missing minutes are reported, but they are
  gaps to repair, not broken invariants: they never make a report fail.
- The audit reads through an `AuditSource` and never writes. It knows no file layout: the JSONL
  file scan and the port adapter live in `audit_sources`. It holds one symbol's bars at a time.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Protocol

import msgspec
import numpy as np

from fxconnector.config.schema import BarsConfig
from fxconnector.core.buckets import bucket_open
from fxconnector.core.builders.derive import complete_buckets, derive
from fxconnector.core.calendar import CalendarProfile, TradingCalendar
from fxconnector.core.coverage import classify, count
from fxconnector.core.model.bar import FINAL_SOURCES, OhlcvEvent, Source, StoredFinal
from fxconnector.core.time_geom import (
    DAY_MS,
    MINUTE_MS,
    RANGE_END_MS,
    RANGE_START_MS,
    TIMEFRAMES,
    Timeframe,
    iso_utc,
)
from fxconnector.core.validation.validator import bar_problems
from fxconnector.runtime.store import rules

#: Problems kept in a report (all of them are counted).
MAX_PROBLEMS: Final = 100

Interval = tuple[int, int]


class AuditRule(StrEnum):
    """Rules the audit adds to the validator's `ErrorCode`s (both are stable public names)."""

    UNREADABLE = "store.unreadable"  # a line or file that cannot be decoded
    MISPLACED = "store.misplaced"  # a bar in the wrong file, or a file with a foreign name
    TORN_TAIL = "store.torn_tail"  # a last line without its newline (the next writer cuts it)
    NOT_STORABLE = "store.not_storable"  # breaks the store's final rules (rules.final_problem)
    DUPLICATE = "store.duplicate"  # one key stored twice at the same rev
    REVISION_GAP = "store.revision_gap"  # revs are not 0..n
    REVISION_ORDER = "store.revision_order"  # revs stored out of order
    REVISION_REASON = "store.revision_without_reason"
    SOURCE_FOR_TF = "final.source_for_tf"  # 1m must be history, higher timeframes derived
    DERIVED_MISMATCH = "derived.mismatch"  # differs from derive() of its stored 1m
    DERIVED_WITHOUT_1M = "derived.without_1m"  # no final 1m in its bucket at all
    DERIVED_MISSING = "derived.missing"  # its minutes are all final/quiet, yet no derived final


@dataclass(frozen=True, slots=True)
class AuditProblem:
    """One broken rule, naming the record (tf is "" and open_ms None when not about a bar)."""

    rule: str
    symbol: str
    tf: str
    open_ms: int | None
    rev: int | None
    message: str
    where: str = ""  # file:line when the source knows it

    @property
    def open_iso(self) -> str:
        return "" if self.open_ms is None else iso_utc(self.open_ms)


@dataclass(frozen=True, slots=True)
class SeriesCount:
    symbol: str
    tf: str
    keys: int  # distinct open_ms in range
    records: int  # stored revisions in range, duplicates included
    revised: int  # keys whose latest rev > 0


@dataclass(frozen=True, slots=True)
class DayCoverage:
    date: str  # YYYY-MM-DD (UTC)
    symbol: str
    final: int
    quiet: int
    missing: int
    closed: int


@dataclass(frozen=True, slots=True)
class AuditReport:
    calendar: str
    series: list[SeriesCount]
    coverage: list[DayCoverage]
    problem_counts: dict[str, int]  # by rule, every problem found
    problems: list[AuditProblem]  # the first MAX_PROBLEMS (or the caller's limit)

    @property
    def problems_total(self) -> int:
        return sum(self.problem_counts.values())

    @property
    def ok(self) -> bool:
        """True when every invariant holds (missing minutes do not count)."""
        return self.problems_total == 0

    @property
    def missing_minutes(self) -> int:
        return sum(day.missing for day in self.coverage)


Read = tuple[list[StoredFinal], list[AuditProblem]]


class AuditSource(Protocol):
    """What the audit reads: stored records as they are, problems met while reading them."""

    def series(self) -> list[tuple[str, Timeframe]]:
        """Every (symbol, tf) with stored records, sorted."""
        ...

    def symbols(self) -> list[str]:
        """Every symbol with stored records or fetched intervals, sorted."""
        ...

    def records(self, symbol: str, tf: Timeframe, from_ms: int | None, to_ms: int | None) -> Read:
        """Every stored revision with `from_ms <= open_ms < to_ms`, in storage order."""
        ...

    def fetched(self, symbol: str) -> tuple[list[Interval], list[AuditProblem]]:
        """The symbol's merged fetched intervals, ascending."""
        ...


class _Sink:
    """Counts every problem and keeps the first `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept: list[AuditProblem] = []
        self.counts: dict[str, int] = {}

    def add(self, problem: AuditProblem) -> None:
        self.counts[problem.rule] = self.counts.get(problem.rule, 0) + 1
        if len(self.kept) < self.limit:
            self.kept.append(problem)

    def extend(self, problems: Iterable[AuditProblem]) -> None:
        for problem in problems:
            self.add(problem)


def audit(
    source: AuditSource,
    profile: CalendarProfile,
    *,
    symbol: str | None = None,
    from_ms: int | None = None,
    to_ms: int | None = None,
    until_ms: int | None = None,
    max_problems: int = MAX_PROBLEMS,
    timeframes: Sequence[Timeframe] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> AuditReport:
    """Audit the records with `from_ms <= open_ms < to_ms` (all when None) of `symbol` (or all).

    Coverage spans `[from_ms, to_ms)`, never starts before the symbol's first stored minute
    (nothing was asked of the broker before it), ends at its last stored minute when `to_ms` is
    not given (nothing was asked after it either: a replay cut at noon is not missing its
    afternoon; `to_ms` counts those minutes) and never goes past `until_ms` (now: the future is
    not missing).
    `timeframes` are the higher timeframes whose derived finals must be complete (see the module
    rules for the default).
    `progress(done, total)` is told after each series (symbol and timeframe) read.
    """
    sink = _Sink(max_problems)
    counts: list[SeriesCount] = []
    coverage: list[DayCoverage] = []
    by_symbol: dict[str, list[Timeframe]] = {}
    for name, tf in source.series():
        by_symbol.setdefault(name, []).append(tf)
    expected = _expected(timeframes, by_symbol)
    names = sorted(set(source.symbols()) | set(by_symbol))
    chosen = names if symbol is None else [n for n in names if n == symbol]
    total = sum(len(by_symbol.get(name, [])) for name in chosen)
    done = 0
    for name in chosen:
        calendar = profile.for_symbol(name)
        # 1m first, with a day more on each side: derived buckets at the range edges need it.
        wider = (
            None if from_ms is None else max(RANGE_START_MS, from_ms - DAY_MS),
            None if to_ms is None else min(RANGE_END_MS, to_ms + DAY_MS),
        )
        latest_1m: list[StoredFinal] = []
        finals_1m: list[StoredFinal] = []  # what derive may read: complete, final sources
        derived_opens: dict[Timeframe, set[int]] = {}
        fetched, problems = source.fetched(name)
        sink.extend(problems)
        for tf in (t for t in TIMEFRAMES if t in by_symbol.get(name, [])):
            low, high = wider if tf is Timeframe.M1 else (from_ms, to_ms)
            records, problems = source.records(name, tf, low, high)
            sink.extend(problems)
            latest, tally = _check_series(records, tf, calendar, sink, from_ms, to_ms)
            counts.append(SeriesCount(name, tf.value, *tally))
            if tf is Timeframe.M1:
                latest_1m = latest
                finals_1m = [b for b in latest if b.complete and b.source in FINAL_SOURCES]
            else:
                _check_derived(latest, finals_1m, tf, calendar, sink)  # read in range
                derived_opens[tf] = {bar.open_ms for bar in latest}
            done += 1
            if progress is not None:
                progress(done, total)
        span = (from_ms, to_ms, until_ms)
        _check_complete(name, calendar, finals_1m, fetched, expected, derived_opens, span, sink)
        coverage.extend(_coverage(name, calendar, latest_1m, fetched, from_ms, to_ms, until_ms))
    return AuditReport(
        calendar=profile.name,
        series=counts,
        coverage=coverage,
        problem_counts=dict(sorted(sink.counts.items())),
        problems=sink.kept,
    )


def _problem(rule: str, bar: StoredFinal, message: str) -> AuditProblem:
    return AuditProblem(str(rule), bar.symbol, bar.tf.value, bar.open_ms, bar.rev, message)


def _check_series(
    records: Sequence[StoredFinal],
    tf: Timeframe,
    calendar: TradingCalendar,
    sink: _Sink,
    from_ms: int | None,
    to_ms: int | None,
) -> tuple[list[StoredFinal], tuple[int, int, int]]:
    """Check each record and each key's chain; the latest revision per key and the counts."""
    chains: dict[int, list[StoredFinal]] = {}
    for bar in records:
        chains.setdefault(bar.open_ms, []).append(bar)
    latest: list[StoredFinal] = []
    keys = stored = revised = 0
    for open_ms in sorted(chains):
        chain = chains[open_ms]
        newest = max(reversed(chain), key=lambda bar: bar.rev)  # the last stored of the top rev
        latest.append(newest)
        if (from_ms is not None and open_ms < from_ms) or (to_ms is not None and open_ms >= to_ms):
            continue  # context for derived buckets only
        keys, stored, revised = keys + 1, stored + len(chain), revised + (newest.rev > 0)
        for bar in chain:
            _check_bar(bar, tf, calendar, sink)
        _check_chain(chain, sink)
    return latest, (keys, stored, revised)


def _check_bar(bar: StoredFinal, tf: Timeframe, calendar: TradingCalendar, sink: _Sink) -> None:
    found = bar_problems(bar, calendar)
    for item in found:
        sink.add(_problem(item.code.value, bar, item.message))
    if not found:
        store_rule = rules.final_problem(bar)
        if store_rule is not None:
            sink.add(_problem(AuditRule.NOT_STORABLE, bar, store_rule))
    wanted = Source.HISTORY if tf is Timeframe.M1 else Source.DERIVED
    if bar.source in FINAL_SOURCES and bar.source is not wanted:
        sink.add(
            _problem(
                AuditRule.SOURCE_FOR_TF,
                bar,
                f"a final {tf.value} bar must have source {wanted.value}, not {bar.source.value}",
            )
        )


def _check_chain(chain: list[StoredFinal], sink: _Sink) -> None:
    revs = [bar.rev for bar in chain]
    seen: set[int] = set()
    duplicated: set[int] = set()  # one problem per rev stored more than once
    for bar in chain:
        if bar.rev in seen and bar.rev not in duplicated:
            duplicated.add(bar.rev)
            sink.add(
                _problem(
                    AuditRule.DUPLICATE,
                    bar,
                    f"rev {bar.rev} is stored {revs.count(bar.rev)} times",
                )
            )
        seen.add(bar.rev)
        if bar.rev > 0 and not bar.reason:
            sink.add(_problem(AuditRule.REVISION_REASON, bar, f"rev {bar.rev} has no reason"))
    distinct = sorted(seen)
    if distinct != list(range(len(distinct))):
        holes = sorted(set(range(distinct[-1] + 1)) - seen)
        sink.add(
            _problem(
                AuditRule.REVISION_GAP,
                chain[-1],
                f"stored revs {distinct}: rev {', '.join(map(str, holes))} missing",
            )
        )
    elif revs != sorted(revs):
        sink.add(_problem(AuditRule.REVISION_ORDER, chain[-1], f"revs stored in order {revs}"))


_FIELDS: Final = ("open", "high", "low", "close", "volume", "tick_count", "close_ms", "event_ts")


def _check_derived(
    bars: list[StoredFinal],
    finals: list[StoredFinal],
    tf: Timeframe,
    calendar: TradingCalendar,
    sink: _Sink,
) -> None:
    """Each derived bar against `derive` of the stored 1m finals in its bucket."""
    if not bars:
        return
    opens = [bar.open_ms for bar in finals]
    # One pass over the whole series; a disagreement is confirmed on its bucket alone, exactly as
    # the derived builder builds one bucket (float sums cannot then differ by grouping).
    expected = {bar.open_ms: bar for bar in derive(finals, tf, calendar)}
    for bar in bars:
        guess = expected.get(bar.open_ms)
        if guess is not None and rules.same_bar(bar, guess):
            continue
        if bucket_open(bar.open_ms, tf, calendar) != bar.open_ms:
            continue  # not a bucket at all: reported as bar.unaligned_open
        bucket = finals[bisect_left(opens, bar.open_ms) : bisect_left(opens, bar.open_ms + tf.ms)]
        if not bucket:
            sink.add(
                _problem(
                    AuditRule.DERIVED_WITHOUT_1M,
                    bar,
                    f"no final 1m bar in its bucket [{iso_utc(bar.open_ms)}, "
                    f"{iso_utc(bar.close_ms + 1)})",
                )
            )
            continue
        (built,) = derive(bucket, tf, calendar)
        # The source is final.source_for_tf's to report; here only the market fields count.
        if not rules.same_bar(bar, msgspec.structs.replace(built, source=bar.source)):
            sink.add(_problem(AuditRule.DERIVED_MISMATCH, bar, _differences(bar, built)))


def _expected(
    timeframes: Sequence[Timeframe] | None, by_symbol: dict[str, list[Timeframe]]
) -> list[Timeframe]:
    stored: set[Timeframe] = {
        tf for tfs in by_symbol.values() for tf in tfs if tf is not Timeframe.M1
    }
    chosen = set(timeframes) if timeframes is not None else stored or set(BarsConfig().timeframes)
    return [tf for tf in TIMEFRAMES if tf in chosen and tf is not Timeframe.M1]


def _check_complete(
    symbol: str,
    calendar: TradingCalendar,
    finals: list[StoredFinal],
    fetched: list[Interval],
    timeframes: list[Timeframe],
    derived_opens: dict[Timeframe, set[int]],
    span: tuple[int | None, int | None, int | None],
    sink: _Sink,
) -> None:
    """`derived.missing` for every complete bucket (module rules) without a derived final."""
    if not finals or not timeframes:
        return
    from_ms, to_ms, until_ms = span
    opens = np.fromiter((bar.open_ms for bar in finals), np.int64, len(finals))
    low = min(bucket_open(int(opens[0]), tf, calendar) for tf in timeframes)
    high = max(bucket_open(int(opens[-1]), tf, calendar) + tf.ms for tf in timeframes)
    if until_ms is not None:
        high = min(high, until_ms - until_ms % MINUTE_MS)
    if high <= low:
        return
    states = classify(low, high, calendar, opens[opens < high], fetched)
    for tf in timeframes:
        have = derived_opens.get(tf, set())
        for open_ms in complete_buckets(low, states, opens[opens < high], tf, calendar).tolist():
            if (from_ms is not None and open_ms < from_ms) or (
                to_ms is not None and open_ms >= to_ms
            ):
                continue
            if open_ms not in have:
                sink.add(
                    AuditProblem(
                        AuditRule.DERIVED_MISSING,
                        symbol,
                        tf.value,
                        open_ms,
                        None,
                        f"every minute of [{iso_utc(open_ms)}, {iso_utc(open_ms + tf.ms)}) is "
                        "final or quiet, but it has no derived final",
                    )
                )


def _differences(stored: StoredFinal, built: OhlcvEvent) -> str:
    parts = [
        f"{name} {getattr(stored, name)!s} != {getattr(built, name)!s}"
        for name in _FIELDS
        if getattr(stored, name) != getattr(built, name)
    ]
    return "stored vs derived from its 1m: " + ", ".join(parts)


def _coverage(
    symbol: str,
    calendar: TradingCalendar,
    latest_1m: list[StoredFinal],
    fetched: list[Interval],
    from_ms: int | None,
    to_ms: int | None,
    until_ms: int | None,
) -> list[DayCoverage]:
    """Closed/final/quiet/missing minutes per UTC day, from one `classify` over the range."""
    starts = [bar.open_ms for bar in latest_1m[:1]] + [start for start, _ in fetched[:1]]
    ends = [bar.close_ms + 1 for bar in latest_1m[-1:]] + [end for _, end in fetched[-1:]]
    if (from_ms is None or to_ms is None) and not starts:
        return []
    # Coverage starts at the store's first minute (its first 1m final or fetched interval):
    # before it, nothing was ever asked of the broker, so nothing there is missing. Without a
    # `to_ms` it ends at the store's last minute, for the same reason.
    low = from_ms - from_ms % MINUTE_MS if from_ms is not None else min(starts)
    if starts:
        low = max(low, min(starts) - min(starts) % MINUTE_MS)
    high = _ceil(to_ms if to_ms is not None else max(ends), MINUTE_MS)
    if until_ms is not None:
        high = min(high, until_ms - until_ms % MINUTE_MS)
    if high <= low:
        return []
    opens = np.fromiter((bar.open_ms for bar in latest_1m), np.int64, len(latest_1m))
    states = classify(low, high, calendar, opens, fetched)
    rows: list[DayCoverage] = []
    for day in range(low // DAY_MS * DAY_MS, high, DAY_MS):
        first, last = max(day, low), min(day + DAY_MS, high)
        tally = count(states[(first - low) // MINUTE_MS : (last - low) // MINUTE_MS])
        date = iso_utc(day)[:10]
        rows.append(
            DayCoverage(date, symbol, tally.final, tally.quiet, tally.missing, tally.closed)
        )
    return rows


def _ceil(ts_ms: int, size_ms: int) -> int:
    return -(-ts_ms // size_ms) * size_ms
