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
