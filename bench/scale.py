"""Scaling figures (issue 12 point 4): real `fxconnector run` processes on the sim broker.

    .venv/bin/python -m bench.scale --symbols 10,50,200 --minutes 3 --out scale.json

For each symbol count N, in a fresh temporary folder: a redis-server of its own on a free port
(bench/cluster_launch.py), a config with N currency-pair names on the sim broker at realistic
per-symbol rates (each symbol its own stable rate in 300-1200 ticks/min, i.e. 5-20 ticks/s, the
same at every hour: `[broker.sim] ticks_per_minute_max`, `hourly = false`), then one
`fxconnector run` on a free HTTP port. Measured from outside, after `--warmup` seconds:

- CPU %: the connector process's user+system CPU over the window / wall time (100 = one core),
  from /proc; the redis-server's too, apart.
- RSS: VmRSS every second; start, end, max, and the least-squares slope of the per-minute
  samples after the warm-up (MB/min).
- final 1m lag p50/p99: a minute's close_ms to the final's arrival in Redis, and preview 1m lag
  p50/p99: the preview's event_ts (its newest tick) to its arrival; both from stream entry ids,
  the Redis server's clock (see bench/scale_probe.py). Finals that never arrived by the end are
  counted as `missing` (finals falling behind), not hidden in the percentiles.

`--minutes 30 --symbols 50` is the memory-flatness run: RSS per minute, the slope after a
warm-up of max(2, minutes/6) minutes, and whether it stays within what the bounded caches may
still grow by (the tail cache keeps filling for days: about 1.4 final bars per symbol-minute).

`--cluster` is the `--processes` (2) x N symbols run on a 3-master Redis Cluster
(bench/cluster_launch.py): each process gets its own workdir and its own N symbols, the config
`[surface] cluster = true` and one node's URL, and the reader routes every per-symbol stream to
the node holding it (symbols are disjoint: each process holds its symbols' leases).

Nothing here asserts speed; the figures depend on the machine and its load (reported).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import redis.cluster

from bench.cluster_launch import RedisClusterNodes, RedisNode, free_port, start_cluster, start_node
from bench.scale_probe import (
    ProcSampler,
    Sample,
    StreamLags,
    missing_finals,
    per_minute,
    percentile,
    slope_per_minute,
)
from bench.scale_profile import PySpy
from fxconnector.app.cli_run import parse_setting
from fxconnector.app.composition import history_plan
from fxconnector.config.loader import load_config
from fxconnector.runtime.publish.keys import STREAM_FIELD, SurfaceKeys

REPO = Path(__file__).resolve().parents[1]
FXCONNECTOR = Path(sys.executable).parent / "fxconnector"
NAMESPACE = "fxconnector"
#: In the usual base-currency priority: the G8 first (their 28 pairs come first), then others.
_CURRENCIES: tuple[str, ...] = ("EUR", "GBP", "AUD", "NZD", "USD", "CAD", "CHF", "JPY", "SEK")
_CURRENCIES += ("NOK", "DKK", "PLN", "HUF", "CZK", "TRY", "ZAR", "MXN", "SGD", "HKD", "CNH")
_CURRENCIES += ("ILS", "THB", "INR", "KRW", "BRL")
#: Estimated growth of the bounded caches still filling during a run (the tail cache keeps
#: 5000 bars per series, days of 1m bars): per symbol-minute ~1.4 final bars at <= 1 KB each.
CACHE_MB_PER_SYMBOL_MINUTE = 1.4 / 1024
#: What one sim history call may take in the plan's bound (it answers in-process, locally).
SIM_CALL_ALLOWANCE_MS = 20


def symbol_names(count: int) -> list[str]:
    """`count` distinct currency pairs (up to 300), the G8 crosses first."""
    names = [f"{base}{quote}" for j, quote in enumerate(_CURRENCIES) for base in _CURRENCIES[:j]]
    if count > len(names):
        raise SystemExit(f"at most {len(names)} symbols")
    return names[:count]


def plan_of(config: Path, settings: list[str]) -> dict[str, Any]:
    """The history plan the connector will start with (its own code, as `history.plan` logs
    it): each symbol asked every `every_minutes`, the worst-case final lag bound."""
    overrides = dict(parse_setting(setting) for setting in settings)
    plan = history_plan(load_config(config, overrides=overrides, cwd=config.parent))
    return {
        "every_minutes": plan.every_minutes,
        "per_minute": plan.group_size,
        "final_lag_bound_s": plan.bound_ms / 1000,
        "detail": plan.describe(),
    }


def write_config(folder: Path, symbols: list[str], redis_url: str, cluster: bool) -> Path:
    lines = [
        f'workdir = "{folder / "work"}"',
        "[calendar]",
        'profile = "always_open"  # ticks at any hour and day',
        "[broker]",
        'kind = "sim"',
        "symbols = [" + ", ".join(f'"{s}"' for s in symbols) + "]",
        "startup_lookback_mins = 60",
        # The sim answers history locally (well under 20 ms a call), so it gets the demo's
        # budget and a 20 ms call allowance: the plan (core.history_plan) asks every symbol
        # every minute up to ~2,900 symbols (200: bound 2 s + 201 x 20 ms = 6 s). A real broker
        # keeps 30/min and 1 s a call (--set overrides either).
        "history_requests_per_min = 6000",
        f"history_call_allowance_ms = {SIM_CALL_ALLOWANCE_MS}",
        "history_chunk_minutes = 1440",
        "[broker.sim]",
        "ticks_per_minute = 300",
        "ticks_per_minute_max = 1200",
        "hourly = false",
        "[repair]",
        "window_hours = 1  # the store holds an hour: audit that, not 24 h of 'missing' minutes",
        "[surface]",
        f'redis_url = "{redis_url}"',
    ]
    if cluster:
        lines.append("cluster = true")
    path = folder / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Connector:
    """One `fxconnector run` child process and what it printed."""

    process: subprocess.Popen[str]
    http: str
    stderr_path: Path
    ready_wall: float | None = None

    def wait_ready(self, timeout_s: float) -> None:
        """Until it prints its URL (it serves), or it ends, or `timeout_s`."""
        assert self.process.stdout is not None
        got: list[str] = []
        reader = threading.Thread(
            target=lambda: got.append(self.process.stdout.readline()),  # type: ignore[union-attr]
            daemon=True,
        )
        reader.start()
        reader.join(timeout_s)
        if got and got[0].strip():
            self.ready_wall = time.time()

    def failure(self) -> str:
        tail = self.stderr_path.read_text(errors="replace").strip().splitlines()[-3:]
        return f"exit {self.process.poll()}: " + " | ".join(tail)

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_connector(folder: Path, config: Path, settings: list[str]) -> Connector:
    http = f"127.0.0.1:{free_port()}"
    stderr_path = folder / "connector.log"
    command = [str(FXCONNECTOR), "run", "--config", str(config), "--http", http]
    command += ["--log-level", "warning"]
    for setting in settings:
        command += ["--set", setting]
    process = subprocess.Popen(  # noqa: S603 - this venv's fxconnector, our arguments
        command,
        stdout=subprocess.PIPE,
        stderr=stderr_path.open("w"),
        text=True,
        cwd=folder,
    )
    return Connector(process, http, stderr_path)


def publish_p99_ms(http: str) -> float | None:
    """The connector's own `fxconnector_publish_latency_seconds` p99 (a bucket's upper bound):
    a final handed to the surface until Redis acknowledged it (not from the minute's close)."""
    try:
        with urllib.request.urlopen(f"http://{http}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    buckets: list[tuple[float, float]] = []
    for line in text.splitlines():
        if line.startswith("fxconnector_publish_latency_seconds_bucket"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(bound), float(line.rsplit(" ", 1)[1])))
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    for bound, count in buckets:
        if count >= 0.99 * total:
            return bound * 1000
    return None


def window(samples: list[Sample], from_wall: float) -> dict[str, Any]:
    """CPU % and RSS figures of one process's samples from `from_wall` on."""
    inside = [s for s in samples if s.wall >= from_wall]
    if len(inside) < 2:
        return {}
    first, last = inside[0], inside[-1]
    cpu = (last.cpu_s - first.cpu_s) / (last.wall - first.wall) * 100
    minutes = per_minute(inside, from_wall)
    peaks = [
        (b.cpu_s - a.cpu_s) / (b.wall - a.wall) * 100
        for a, b in zip(inside[::10], inside[10::10], strict=False)
    ]
    return {
        "cpu_pct": round(cpu, 1),
        "cpu_pct_max_10s": round(max(peaks), 1) if peaks else None,
        "rss_mb_start": round(first.rss_mb, 1),
        "rss_mb_end": round(last.rss_mb, 1),
        "rss_mb_max": round(max(s.rss_mb for s in inside), 1),
        "rss_mb_per_minute": [round(s.rss_mb, 1) for s in minutes],
        "rss_slope_mb_per_min": _rounded(slope_per_minute([(s.wall, s.rss_mb) for s in minutes])),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def memory_verdict(
    samples: list[Sample], from_wall: float, minutes: int, symbols: int
) -> dict[str, Any]:
    """RSS slope after the warm-up minutes, against what the bounded caches may still grow."""
    points = per_minute([s for s in samples if s.wall >= from_wall], from_wall)
    warm = max(2, minutes // 6)
    after = [(s.wall, s.rss_mb) for s in points[warm:]]
    slope = slope_per_minute(after)
    allowance = symbols * CACHE_MB_PER_SYMBOL_MINUTE + 0.05  # + noise of the allocator
    return {
        "warmup_minutes": warm,
        "rss_slope_mb_per_min": None if slope is None else round(slope, 3),
        "cache_allowance_mb_per_min": round(allowance, 3),
        "flat": None if slope is None else slope <= allowance,
    }


def redis_nodes_for(keys: list[str], url: str, cluster: bool) -> dict[str, redis.Redis]:
    """The client of the node holding each stream key."""
    if not cluster:
        client = redis.Redis.from_url(url)
        return dict.fromkeys(keys, client)
    routing = redis.cluster.RedisCluster.from_url(url)
    clients: dict[str, redis.Redis] = {}
    by_node: dict[str, redis.Redis] = {}
    for key in keys:
        node = routing.get_node_from_key(key)  # type: ignore[no-untyped-call]
        name = f"{node.host}:{node.port}"
        if name not in by_node:
            by_node[name] = redis.Redis(host=node.host, port=node.port)
        clients[key] = by_node[name]
    routing.close()
    return clients


def run_one(args: argparse.Namespace, count: int, cluster: bool) -> dict[str, Any]:
    """One measured run: `count` symbols per process, `args.processes` processes if `cluster`."""
    processes = args.processes if cluster else 1
    symbols = symbol_names(count * processes)
    result: dict[str, Any] = {
        "symbols_per_process": count,
        "processes": processes,
        "cluster": cluster,
        "minutes": args.minutes,
        "warmup_s": args.warmup,
        "settings": args.set,
        "loadavg_start": os.getloadavg(),
    }
    folder = Path(tempfile.mkdtemp(prefix=f"fxscale-{count}-", dir=args.tmp))
    redis_proc: RedisNode | RedisClusterNodes
    redis_proc = start_cluster(folder / "redis") if cluster else start_node(folder / "redis")
    connectors: list[Connector] = []
    sampler: ProcSampler | None = None
    reader: StreamLags | None = None
    spy: PySpy | None = None
    try:
        for index in range(processes):
            own = symbols[index * count : (index + 1) * count]
            workdir = folder / f"proc{index}"
            workdir.mkdir()
            config = write_config(workdir, own, redis_proc.url, cluster)
            result.setdefault("history_plan", plan_of(config, args.set))
            connectors.append(start_connector(workdir, config, args.set))
        for connector in connectors:
            connector.wait_ready(args.ready_timeout)
        broken = [c for c in connectors if c.ready_wall is None]
        if broken:
            result["failed"] = broken[0].failure()
            return result
        ready_wall = max(c.ready_wall or 0 for c in connectors)
        pids = {f"connector{i}": c.process.pid for i, c in enumerate(connectors)}
        redis_pids = (
            redis_proc.pids if isinstance(redis_proc, RedisClusterNodes) else [redis_proc.pid]
        )
        pids |= {f"redis{i}": pid for i, pid in enumerate(redis_pids)}
        sampler = ProcSampler(pids)
        sampler.start()
        from_wall = ready_wall + args.warmup
        from_ms = int(from_wall * 1000)
        keys = sorted({SurfaceKeys(NAMESPACE, cluster).events_for(s) for s in symbols})
        reader = StreamLags(redis_nodes_for(keys, redis_proc.url, cluster), from_ms, STREAM_FIELD)
        reader.start()
        end_wall = from_wall + args.minutes * 60
        if args.py_spy:
            spy = PySpy(connectors[0].process.pid, folder / "py-spy.txt", args.py_spy)
            spy_at = from_wall + max(0.0, (end_wall - from_wall - args.py_spy) / 2)
        while time.time() < end_wall:
            ended = [c for c in connectors if c.process.poll() is not None]
            if ended:
                result["failed"] = "during the run, " + ended[0].failure()
                break
            if spy is not None and not spy.started and time.time() >= spy_at:
                spy.start()
            time.sleep(1)
        stop_ms = int(time.time() * 1000)
        result["publish_p99_ms_metric"] = publish_p99_ms(connectors[0].http)
        reader.stop()
        sampler.stop()
        lags = reader.lags
        # finals of minutes that closed more than 15 s before the end should be there
        missing = missing_finals(lags.finals, symbols, from_ms, stop_ms - 15_000)
        result |= {
            # the mean final's tick count (ticks per symbol-minute) times the symbols, per second
            "ticks_per_s": (
                round(lags.final_ticks / len(lags.finals) * len(symbols) / 60, 1)
                if lags.finals
                else None
            ),
            "final_lag_ms_p50": percentile(lags.final_ms, 0.5),
            "final_lag_ms_p99": percentile(lags.final_ms, 0.99),
            "finals_seen": len(lags.final_ms),
            "finals_missing": sum(missing.values()),
            "finals_missing_symbols": len(missing),
            "preview_lag_ms_p50": percentile(lags.preview_ms, 0.5),
            "preview_lag_ms_p99": percentile(lags.preview_ms, 0.99),
            "previews_seen": len(lags.preview_ms),
            "stream_entries": lags.entries,
            "reader_error": reader.error,
        }
        for name, samples in sampler.samples.items():
            result[name] = window(samples, from_wall)
        if args.minutes >= 10:
            result["memory"] = memory_verdict(
                sampler.samples["connector0"], from_wall, args.minutes, count
            )
        if spy is not None:
            result["py_spy"] = spy.finish()
        return result
    finally:
        if spy is not None:
            spy.kill()
        if reader is not None and reader._thread.is_alive():
            reader.stop()
        if sampler is not None and sampler._thread.is_alive():
            sampler.stop()
        for connector in connectors:
            code = connector.stop()
            result.setdefault("exit_codes", []).append(code)
        redis_proc.stop()
        result["folder"] = str(folder)
        result["loadavg_end"] = os.getloadavg()


def _fmt(value: object, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def print_table(results: list[dict[str, Any]]) -> None:
    header = (
        f"{'symbols':>9} {'ticks/s':>8} {'CPU %':>6} {'RSS MB start>end':>17} {'MB/min':>7} "
        f"{'final p50/p99 ms':>17} {'missing':>8} {'preview p50/p99 ms':>19} {'redis CPU%':>10} "
        f"{'load':>5}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        label = f"{r['processes']}x{r['symbols_per_process']}"
        if "failed" in r and "connector0" not in r:
            print(f"{label:>9}  FAILED {r['failed']}")
            continue
        proc = r.get("connector0", {})
        rss = f"{_fmt(proc.get('rss_mb_start'), 0)}>{_fmt(proc.get('rss_mb_end'), 0)}"
        slope = proc.get("rss_slope_mb_per_min")
        final = f"{_fmt(r['final_lag_ms_p50'])}/{_fmt(r['final_lag_ms_p99'])}"
        preview = f"{_fmt(r['preview_lag_ms_p50'])}/{_fmt(r['preview_lag_ms_p99'])}"
        redis_cpu = sum(v.get("cpu_pct", 0) for k, v in r.items() if k.startswith("redis"))
        print(
            f"{label:>9} {_fmt(r['ticks_per_s']):>8} {_fmt(proc.get('cpu_pct'), 1):>6} {rss:>17} "
            f"{_fmt(slope, 2):>7} {final:>17} {r['finals_missing']:>8} {preview:>19} "
            f"{redis_cpu:>10.1f} {r['loadavg_start'][0]:>5.1f}"
        )
        if "history_plan" in r:
            plan = r["history_plan"]
            print(
                f"{'':>9} history plan: every {plan['every_minutes']} min, "
                f"bound {plan['final_lag_bound_s']:g} s"
            )
        for index in range(1, r["processes"]):
            other = r.get(f"connector{index}", {})
            print(f"{'':>9} process {index}: CPU {_fmt(other.get('cpu_pct'), 1)} %")
        if "failed" in r:
            print(f"{'':>9} FAILED {r['failed']}")
        if "memory" in r:
            print(f"{'':>9} memory: {r['memory']}")
        if "py_spy" in r:
            print(r["py_spy"]["summary"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--symbols", default="10,50,200", help="comma list of symbol counts")
    parser.add_argument("--minutes", type=int, default=3, help="measured minutes per run")
    parser.add_argument(
        "--warmup", type=float, default=60.0, help="seconds after ready, unmeasured"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the results here (JSON)")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="--processes processes x N symbols each on a 3-master Redis Cluster",
    )
    parser.add_argument("--processes", type=int, default=2, help="processes with --cluster")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="passed to every `fxconnector run` (e.g. broker.history_requests_per_min=30)",
    )
    parser.add_argument(
        "--py-spy",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="sample the (first) connector with py-spy for this long mid-run and summarise",
    )
    parser.add_argument("--ready-timeout", type=float, default=600.0)
    parser.add_argument("--tmp", default=None, help="parent folder of the run folders")
    args = parser.parse_args(argv)
    counts = [int(part) for part in args.symbols.split(",") if part.strip()]
    results: list[dict[str, Any]] = []
    for count in counts:
        print(f"running {count} symbols x {args.processes if args.cluster else 1} ...", flush=True)
        results.append(run_one(args, count, args.cluster))
        if args.out is not None:
            args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    return 0 if all("failed" not in r for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
