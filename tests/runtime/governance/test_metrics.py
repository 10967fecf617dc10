"""Metrics read the pipeline's counters at scrape time, under fxconnector_* names."""

from __future__ import annotations

from prometheus_client import generate_latest

from fxconnector.runtime.governance.metrics import Metrics, PipelineCounts


def test_scrape_reads_current_counts() -> None:
    counts = PipelineCounts(
        ticks_by_symbol={"EURUSD": 10},
        rejected_by_reason={"bad_price": 2},
        late_ticks=3,
        finals_by_tf={"1m": 5},
        revisions_by_tf={"1m": 1},
        history_requests=7,
        history_failures=1,
        surface_backlog=4,
        candles_refused_by_reason={"price_not_positive": 2},
        final_lag_s_by_symbol={"EURUSD": 720.0},
        finals_stalled_by_symbol={"EURUSD": 1},
    )
    current = [PipelineCounts()]
    metrics = Metrics(lambda: current[0])
    assert b"fxconnector_late_ticks_total 0.0" in generate_latest(metrics.registry)
    current[0] = counts
    metrics.publish_latency.observe(0.002)
    metrics.redis_errors.inc()
    text = generate_latest(metrics.registry).decode()
    assert 'fxconnector_ticks_total{symbol="EURUSD"} 10.0' in text
    assert 'fxconnector_ticks_rejected_total{reason="bad_price"} 2.0' in text
    assert "fxconnector_late_ticks_total 3.0" in text
    assert 'fxconnector_finals_total{tf="1m"} 5.0' in text
    assert 'fxconnector_revisions_total{tf="1m"} 1.0' in text
    assert "fxconnector_history_requests_total 7.0" in text
    assert "fxconnector_surface_backlog 4.0" in text
    assert "fxconnector_redis_errors_total 1.0" in text
    assert 'fxconnector_history_candles_refused_total{reason="price_not_positive"} 2.0' in text
    assert 'fxconnector_final_lag_seconds{symbol="EURUSD"} 720.0' in text
    assert 'fxconnector_finals_stalled{symbol="EURUSD"} 1.0' in text
    assert 'fxconnector_publish_latency_seconds_bucket{le="0.0025"} 1.0' in text
    assert all(
        line.startswith(("#", "fxconnector_", "python_")) or not line for line in text.splitlines()
    )
