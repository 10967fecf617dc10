"""Prometheus metrics `fxconnector_*` (DESIGN §11).

Rules: the hot path never touches a metric. Counters the pipeline already keeps are read at
scrape time by a collector; only events that happen per final or per request (publish latency,
history calls, command durations) observe directly. One registry per process, passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from fxconnector.core.model.status import RepairRun, RepairState


@dataclass(frozen=True, slots=True)
class PipelineCounts:
    """What the pipeline counts, read at scrape time."""

    ticks_by_symbol: dict[str, int] = field(default_factory=dict)
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    late_ticks: int = 0
    finals_by_tf: dict[str, int] = field(default_factory=dict)
    revisions_by_tf: dict[str, int] = field(default_factory=dict)
    history_requests: int = 0
    history_failures: int = 0
    surface_backlog: int = 0
    #: History candles refused (by the adapter or the pipeline's contract check), by reason.
    candles_refused_by_reason: dict[str, int] = field(default_factory=dict)
    #: Open market time (s) between each symbol's proven frontier and now.
    final_lag_s_by_symbol: dict[str, float] = field(default_factory=dict)
    #: 1 for a symbol whose finals stopped advancing past the configured bound.
    finals_stalled_by_symbol: dict[str, int] = field(default_factory=dict)


class _PipelineCollector(Collector):
    def __init__(self, read: Callable[[], PipelineCounts]) -> None:
        self._read = read

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        counts = self._read()
        yield _labelled("fxconnector_ticks", "Ticks applied", "symbol", counts.ticks_by_symbol)
        yield _labelled(
            "fxconnector_ticks_rejected",
            "Ticks rejected by the rails",
            "reason",
            counts.rejected_by_reason,
        )
        yield CounterMetricFamily(
            "fxconnector_late_ticks", "Ticks dropped by the late-tick rail", value=counts.late_ticks
        )
        yield _labelled("fxconnector_finals", "Final bars stored", "tf", counts.finals_by_tf)
        yield _labelled("fxconnector_revisions", "Final bars revised", "tf", counts.revisions_by_tf)
        yield CounterMetricFamily(
            "fxconnector_history_requests",
            "Broker history requests",
            value=counts.history_requests,
        )
        yield CounterMetricFamily(
            "fxconnector_history_failures",
            "Broker history requests that failed",
            value=counts.history_failures,
        )
        yield GaugeMetricFamily(
            "fxconnector_surface_backlog", "Finals waiting for Redis", value=counts.surface_backlog
        )
        yield _labelled(
            "fxconnector_history_candles_refused",
            "History candles refused (the rest of their answer kept)",
            "reason",
            counts.candles_refused_by_reason,
        )
        lag = GaugeMetricFamily(
            "fxconnector_final_lag_seconds",
            "Open market time between the last proven minute and now",
            labels=["symbol"],
        )
        for symbol, seconds in sorted(counts.final_lag_s_by_symbol.items()):
            lag.add_metric([symbol], seconds)
        yield lag
        stalled = GaugeMetricFamily(
            "fxconnector_finals_stalled",
            "1 when the symbol's finals stopped advancing for longer than finals_stall_s",
            labels=["symbol"],
        )
        for symbol, flag in sorted(counts.finals_stalled_by_symbol.items()):
            stalled.add_metric([symbol], flag)
        yield stalled


def _labelled(name: str, doc: str, label: str, values: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


class Metrics:
    """The process's registry and its direct instruments."""

    def __init__(self, read_counts: Callable[[], PipelineCounts]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_PipelineCollector(read_counts))
        self.publish_latency = Histogram(
            "fxconnector_publish_latency_seconds",
            "From a final handed to the surface to its event acknowledged by Redis",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
            registry=self.registry,
        )
        self.redis_errors = Counter(
            "fxconnector_redis_errors", "Redis errors seen by the surface", registry=self.registry
        )
        self.ssot_corrupt_lines = Counter(
            "fxconnector_ssot_corrupt_lines",
            "Unreadable store lines skipped (and reported) when the store was opened",
            registry=self.registry,
        )
        self.command_duration = Histogram(
            "fxconnector_command_duration_seconds",
            "Command run time",
            labelnames=["cmd"],
            registry=self.registry,
        )
        self.repair_runs = Counter(
            "fxconnector_repair_runs",
            "Scheduled repair runs by state (done, failed, skipped)",
            labelnames=["state"],
            registry=self.registry,
        )
        self.repair_fixed_minutes = Counter(
            "fxconnector_repair_fixed_minutes",
            "Missing minutes the scheduled repair made final or quiet",
            registry=self.registry,
        )
        self.repair_republished = Counter(
            "fxconnector_repair_republished",
            "Derived bars the scheduled repair re-derived and republished",
            registry=self.registry,
        )
        self.repair_unresolved_minutes = Gauge(
            "fxconnector_repair_unresolved_minutes",
            "Minutes still missing in the window after the last scheduled repair",
            registry=self.registry,
        )
        self.repair_last_run = Gauge(
            "fxconnector_repair_last_run_timestamp_seconds",
            "When the last scheduled repair finished (UTC epoch seconds)",
            registry=self.registry,
        )
        self.derived_incomplete = Gauge(
            "fxconnector_derived_incomplete_buckets",
            "Buckets whose minutes are all final or quiet but whose derived final is missing "
            "or differs from them (status window)",
            registry=self.registry,
        )

    def repair_finished(self, run: RepairRun) -> None:
        """Count one finished scheduled repair."""
        self.repair_runs.labels(run.state.value).inc()
        self.repair_fixed_minutes.inc(run.fixed_minutes)
        self.repair_republished.inc(run.republished)
        if run.finished_ms is not None:
            self.repair_last_run.set(run.finished_ms / 1000)
        if run.state is RepairState.DONE:
            self.repair_unresolved_minutes.set(run.unresolved_minutes)
