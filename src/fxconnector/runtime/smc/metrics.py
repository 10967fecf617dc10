"""`fxconnector_smc_*` metrics of the live SMC consumer, read from its counters at scrape time."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from fxconnector.runtime.smc.live import SmcStats

_COUNTERS = (
    ("bars_fed", "Final bars fed to the SMC engines"),
    ("hints_published", "SMC hints written to the SMC stream"),
    ("writes", "Atomic SMC writes (hints + snapshot) done"),
    ("failures", "SMC consumer rounds that failed on Redis (retried)"),
    ("late_finals", "Revisions older than the engine's revision horizon (not re-derived)"),
    ("rewarm_short", "Restarts whose re-warm found fewer bars than the state counts"),
    ("malformed_snapshots", "SMC snapshots read back malformed (treated as absent)"),
)


class SmcCollector(Collector):
    def __init__(self, stats: SmcStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[CounterMetricFamily]:
        for name, text in _COUNTERS:
            yield CounterMetricFamily(
                f"fxconnector_smc_{name}", text, value=getattr(self._stats, name)
            )


def register_smc_metrics(stats: SmcStats, registry: CollectorRegistry) -> None:
    with contextlib.suppress(ValueError):  # already registered
        registry.register(SmcCollector(stats))
