"""What `bench.scale` measures from outside a running connector: /proc samples and stream lags.

- `ProcSampler` reads /proc/PID/stat (user+system CPU seconds) and /proc/PID/status (VmRSS)
  of each watched process once per `period_s`, in a thread.
- `StreamLags` reads the surface's events stream(s) in a thread and turns each entry into a lag
  with no clock of ours involved: a stream entry id is `<ms>-<seq>`, the Redis server's time when
  the connector's XADD ran (ids are auto-generated, `*`). So a final's lag is `id_ms - close_ms`
  (the minute's last millisecond to the final in Redis, the history safety delay included) and a
  preview's is `id_ms - event_ts` (its newest tick's time to the preview in Redis, the preview
  coalescing interval included). How soon this reader reads does not change either figure; it
  only has to keep up before the stream is trimmed. Only the 1m timeframe is measured.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import msgspec
import redis

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` so far."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime (fields 14, 15)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


@dataclass(frozen=True, slots=True)
class Sample:
    wall: float  # time.time()
    cpu_s: float
    rss_mb: float


class ProcSampler:
    """CPU and RSS of some processes, sampled every `period_s` until stopped."""

    def __init__(self, pids: dict[str, int], period_s: float = 1.0) -> None:
        self.samples: dict[str, list[Sample]] = {name: [] for name in pids}
        self._pids = pids
        self._period = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="proc-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            for name, pid in self._pids.items():
                try:
                    self.samples[name].append(Sample(now, cpu_seconds(pid), rss_mb(pid)))
                except (FileNotFoundError, ProcessLookupError):
                    continue  # ended: the caller notices through its Popen
            self._stop.wait(self._period)


@dataclass
class Lags:
    """Lags in ms (final 1m and preview 1m) and final tick counts, of events after `from_ms`."""

    final_ms: list[int] = field(default_factory=list)
    preview_ms: list[int] = field(default_factory=list)
    #: (symbol, open_ms) of every final 1m seen with close_ms >= from_ms
    finals: set[tuple[str, int]] = field(default_factory=set)
    final_ticks: int = 0
    entries: int = 0


_decode = msgspec.json.Decoder(dict[str, object]).decode


class StreamLags:
    """Reads `keys` (stream names) from the nodes holding them, until stopped.

    `nodes` maps a stream key to the `redis.Redis` client of the node that holds it (one client
    for every key on a single node; per-node clients on a cluster, as a stream never spans
    nodes). Each round is one pipelined XREAD per key on each node; no multi-key command, so
    the same code reads the single-node stream and a cluster's per-symbol streams.
    """

    def __init__(self, nodes: dict[str, redis.Redis], from_ms: int, field_name: str) -> None:
        self.lags = Lags()
        self._field = field_name.encode()
        self._from_ms = from_ms
        self._by_client: dict[int, tuple[redis.Redis, list[str]]] = {}
        for key, client in nodes.items():
            self._by_client.setdefault(id(client), (client, []))[1].append(key)
        self._cursors = dict.fromkeys(nodes, "0-0")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stream-lags", daemon=True)
        self.error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if not self._round():
                    self._stop.wait(0.05)
            self._round()  # what arrived up to the stop
        except redis.RedisError as exc:
            self.error = f"stream reader: {exc}"

    def _round(self) -> bool:
        got = False
        for client, keys in self._by_client.values():
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.xread({key: self._cursors[key]}, count=20_000)
            for key, reply in zip(keys, pipe.execute(), strict=True):
                for _stream, entries in reply or ():
                    if entries:
                        got = True
                        self._cursors[key] = entries[-1][0].decode()
                        self._take(entries)
        return got

    def _take(self, entries: Sequence[tuple[bytes, dict[bytes, bytes]]]) -> None:
        lags = self.lags
        lags.entries += len(entries)
        for entry_id, fields in entries:
            raw = fields.get(self._field)
            if raw is None or b'"tf":"1m"' not in raw:
                continue
            event = _decode(raw)
            at_ms = int(entry_id.split(b"-", 1)[0])
            if event["complete"]:
                close_ms = int(str(event["close_ms"]))
                if close_ms >= self._from_ms:
                    lags.final_ms.append(at_ms - close_ms)
                    lags.finals.add((str(event["symbol"]), int(str(event["open_ms"]))))
                    lags.final_ticks += int(str(event["tick_count"]))
            else:
                event_ts = int(str(event["event_ts"]))
                if event_ts >= self._from_ms:
                    lags.preview_ms.append(at_ms - event_ts)


def percentile(values: Iterable[float], q: float) -> float | None:
    """The `q` quantile (0..1, nearest rank) or None when there is nothing."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = min(len(ordered), max(1, math.ceil(q * len(ordered))))
    return float(ordered[rank - 1])


def slope_per_minute(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (wall seconds, value) points, per minute."""
    if len(points) < 3:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return sxy / sxx * 60.0


def per_minute(samples: Sequence[Sample], from_wall: float) -> list[Sample]:
    """The first sample of each whole minute from `from_wall` on."""
    picked: dict[int, Sample] = {}
    for sample in samples:
        if sample.wall >= from_wall:
            picked.setdefault(int((sample.wall - from_wall) // 60), sample)
    return [picked[minute] for minute in sorted(picked)]


def missing_finals(
    seen: set[tuple[str, int]], symbols: Sequence[str], from_ms: int, until_ms: int
) -> dict[str, int]:
    """Per symbol, how many minutes closing in [from_ms, until_ms) have no final 1m seen."""
    minute = 60_000
    first = -(-(from_ms + 1) // minute) * minute - minute  # the first minute closing >= from_ms
    opens = [o for o in range(first, until_ms, minute) if from_ms <= o + minute - 1 < until_ms]
    counts: dict[str, int] = defaultdict(int)
    for symbol in symbols:
        for open_ms in opens:
            if (symbol, open_ms) not in seen:
                counts[symbol] += 1
    return dict(counts)
