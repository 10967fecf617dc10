"""Prometheus metrics `fxconnector_*` (DESIGN §11).

Rules: the hot path never touches a metric. Counters the pipeline already keeps are read at
scrape time by a collector; only events that happen per final or per request (publish latency,
history calls, command durations) observe directly. One registry per process, passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


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


class _PipelineCollector(Collector):
    def __init__(self, read: Callable[[], PipelineCounts]) -> None:
        self._read = read

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        counts = self._read()
        ticks = CounterMetricFamily("fxconnector_ticks", "Ticks applied", labels=["symbol"])
        for symbol, value in sorted(counts.ticks_by_symbol.items()):
            ticks.add_metric([symbol], value)
        yield ticks
        rejects = CounterMetricFamily(
            "fxconnector_ticks_rejected", "Ticks rejected by the rails", labels=["reason"]
        )
        for reason, value in sorted(counts.rejected_by_reason.items()):
            rejects.add_metric([reason], value)
        yield rejects
        yield CounterMetricFamily(
            "fxconnector_late_ticks", "Ticks dropped by the late-tick rail", value=counts.late_ticks
        )
        finals = CounterMetricFamily("fxconnector_finals", "Final bars stored", labels=["tf"])
        for tf, value in sorted(counts.finals_by_tf.items()):
            finals.add_metric([tf], value)
        yield finals
        revisions = CounterMetricFamily(
            "fxconnector_revisions", "Final bars revised", labels=["tf"]
        )
        for tf, value in sorted(counts.revisions_by_tf.items()):
            revisions.add_metric([tf], value)
        yield revisions
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
        self.command_duration = Histogram(
            "fxconnector_command_duration_seconds",
            "Command run time",
            labelnames=["cmd"],
            registry=self.registry,
        )
