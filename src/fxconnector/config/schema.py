"""The config file's schema (DESIGN §13): one frozen, typed object; unknown keys are errors.

Rules: every section and key is declared here with its default; numbers are constrained; nothing
secret lives here (secrets come from `config.secrets`). Defaults are the demo's.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from fxconnector.config.execution import ExecutionConfig
from fxconnector.core.model.bar import SYMBOL_PATTERN
from fxconnector.core.time_geom import Timeframe
from fxconnector.smc.config import SmcConfig

Symbol = Annotated[str, msgspec.Meta(pattern=SYMBOL_PATTERN)]
PositiveMs = Annotated[int, msgspec.Meta(ge=1, le=3_600_000)]


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class CalendarConfig(_Section, frozen=True):
    profile: str = "fx_ny"
    #: Extra profiles file; empty uses the built-in `config/calendar_overrides.json`.
    overrides_path: str = ""


class BarsConfig(_Section, frozen=True):
    timeframes: tuple[Timeframe, ...] = (
        Timeframe.M1,
        Timeframe.M5,
        Timeframe.M15,
        Timeframe.M30,
        Timeframe.H1,
        Timeframe.H4,
        Timeframe.D1,
    )
    price: Literal["bid", "ask", "mid"] = "bid"
    open_mode: Literal["first_tick", "previous_close"] = "first_tick"
    volume: Literal["ticks", "size"] = "ticks"


class StoreConfig(_Section, frozen=True):
    kind: Literal["jsonl", "sqlite"] = "jsonl"
    #: A relative path is relative to `workdir`.
    path: str = "ssot"
    fsync_interval_ms: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 50


class SurfaceConfig(_Section, frozen=True):
    redis_url: str = ""
    #: Redis Cluster layout (`{SYMBOL}` hash tags, a stream per symbol); needs `redis_url`.
    cluster: bool = False
    namespace: Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9_.-]{1,64}$")] = "fxconnector"
    #: The events stream(s) keep this much time (XADD/XTRIM MINID ~), whatever the event rate.
    events_retention_s: Annotated[int, msgspec.Meta(ge=10, le=7 * 86_400)] = 300
    preview_interval_ms: Annotated[int, msgspec.Meta(ge=0, le=60_000)] = 250
    snapshot_bars: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 500


_HostName = Annotated[str, msgspec.Meta(pattern=r"^(\*|[A-Za-z0-9_.:\[\]-]{1,253})$")]
_Origin = Annotated[str, msgspec.Meta(pattern=r"^(\*|https?://[A-Za-z0-9_.:\[\]-]{1,260})$")]


class HttpConfig(_Section, frozen=True):
    bind: Annotated[str, msgspec.Meta(pattern=r"^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$")] = (
        "127.0.0.1:8088"
    )
    #: Host names the server answers to besides its bind address and loopback names (DNS
    #: rebinding guard); behind a proxy, its public name. "*" turns the check off.
    allowed_hosts: tuple[_HostName, ...] = ()
    #: Origins (scheme://host[:port]) whose pages may open /ws besides the server's own host.
    allowed_origins: tuple[_Origin, ...] = ()


class TicksConfig(_Section, frozen=True):
    """Tick validation rails (DESIGN §5.2)."""

    max_spread_inversion: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    max_future_ms: PositiveMs = 5_000
    epoch_rail_ms: Annotated[int, msgspec.Meta(ge=0)] = 946_684_800_000  # 2000-01-01
    min_price: Annotated[float, msgspec.Meta(gt=0, le=1e300)] = 1e-6
    max_price: Annotated[float, msgspec.Meta(gt=0, le=1e300)] = 1e7
    max_volume: Annotated[float, msgspec.Meta(ge=0, le=1e300)] = 1e12


class SimBrokerConfig(_Section, frozen=True):
    seed: int = 42
    #: Each symbol's average tick rate (over a whole day when `hourly`).
    ticks_per_minute: Annotated[int, msgspec.Meta(ge=1, le=6_000)] = 60
    #: 0: every symbol at `ticks_per_minute`; else each symbol's own stable rate in
    #: [ticks_per_minute, ticks_per_minute_max], derived from its name.
    ticks_per_minute_max: Annotated[int, msgspec.Meta(ge=0, le=6_000)] = 0
    #: true: busier in London/New York hours; false: every hour at the average (benchmarks).
    hourly: bool = True


class ReplayBrokerConfig(_Section, frozen=True):
    path: str = ""
    format: Literal["auto", "dukascopy", "csv", "truefx", "histdata"] = "auto"
    speed: Annotated[float, msgspec.Meta(ge=0)] = 0.0  # 0 = as fast as possible


class FxcmBrokerConfig(_Section, frozen=True):
    python: str = "python3.7"
    connection: Literal["Demo", "Real"] = "Demo"
    url: str = "http://www.fxcorporate.com/Hosts.jsp"
    #: Subscribed but no tick for this long while the market is open: stale, restart the bridge.
    watchdog_silence_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 30.0


class OandaBrokerConfig(_Section, frozen=True):
    rest_url: str = "https://api-fxpractice.oanda.com"
    stream_url: str = "https://stream-fxpractice.oanda.com"
    account_id: str = ""
    price: Literal["B", "A", "M"] = "B"
    #: No price (or no heartbeat) for this long while the market is open: stale, reconnect.
    watchdog_silence_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 10.0


class BrokerConfig(_Section, frozen=True):
    kind: Literal["sim", "replay", "fxcm", "oanda"] = "sim"
    symbols: Annotated[tuple[Symbol, ...], msgspec.Meta(min_length=1, max_length=1000)] = (
        "EURUSD",
        "GBPUSD",
        "USDJPY",
    )
    history_safety_delay_ms: Annotated[int, msgspec.Meta(ge=0, le=600_000)] = 2_000
    #: On a start with an empty store, fetch this much history first (then resume from the
    #: newest stored final on every later start).
    startup_lookback_mins: Annotated[int, msgspec.Meta(ge=0, le=7 * 1440)] = 1440
    #: The history budget shared by everything that calls the broker (DESIGN §9).
    history_requests_per_min: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 30
    history_chunk_minutes: Annotated[int, msgspec.Meta(ge=1, le=1440)] = 240
    #: Requests a minute the fast path's plan leaves to commands and the scheduled repair.
    history_reserved_per_min: Annotated[int, msgspec.Meta(ge=0, le=100_000)] = 2
    #: How long one history call may take, in the plan's bound (core.history_plan).
    history_call_allowance_ms: Annotated[int, msgspec.Meta(ge=1, le=60_000)] = 1_000
    #: The worst-case final lag the plan may reach; a config whose bound exceeds it is refused
    #: at start (exit 2) with the numbers.
    max_final_lag_s: Annotated[int, msgspec.Meta(ge=1, le=86_400)] = 120
    #: A symbol whose finals stop advancing for longer than this (open market time) is a
    #: degraded reason in status and a metric (issue 11).
    finals_stall_s: Annotated[int, msgspec.Meta(ge=60, le=86_400)] = 600
    sim: SimBrokerConfig = SimBrokerConfig()
    replay: ReplayBrokerConfig = ReplayBrokerConfig()
    fxcm: FxcmBrokerConfig = FxcmBrokerConfig()
    oanda: OandaBrokerConfig = OandaBrokerConfig()


class RepairConfig(_Section, frozen=True):
    """The scheduled repair (DESIGN §9): tail_guard --repair on a timer, under the heavy budget."""

    #: Seconds between two runs; 0 disables the scheduled repair.
    interval_s: Annotated[int, msgspec.Meta(ge=0, le=86_400)] = 300
    #: How far back each run audits and repairs (every symbol).
    window_hours: Annotated[int, msgspec.Meta(ge=1, le=24 * 31)] = 24


class SmcSection(_Section, frozen=True):
    """The live SMC consumer (DESIGN §15, docs/smc.md): hints from final bars, published."""

    #: Run the consumer in the connector process (the demo profile turns it on).
    enabled: bool = False
    #: The timeframes it runs on; empty: every `[bars] timeframes` one.
    timeframes: tuple[Timeframe, ...] = ()
    #: The engine's settings (`fxconnector.smc.SmcConfig`: swing_length, swing_length_by_tf,
    #: atr_length, sessions...), as `[smc.engine]`; unknown keys are rejected there too.
    engine: SmcConfig = SmcConfig()
    #: Hints a series' SMC snapshot keeps: every active one, then the newest (`/api/smc`).
    snapshot_hints: Annotated[int, msgspec.Meta(ge=10, le=100_000)] = 2_000


class Config(_Section, frozen=True):
    """The whole configuration."""

    #: Runtime files (store, embedded Redis socket, control socket) live here.
    workdir: str = "var"
    secrets_file: str = ""
    calendar: CalendarConfig = CalendarConfig()
    bars: BarsConfig = BarsConfig()
    ticks: TicksConfig = TicksConfig()
    store: StoreConfig = StoreConfig()
    surface: SurfaceConfig = SurfaceConfig()
    http: HttpConfig = HttpConfig()
    broker: BrokerConfig = BrokerConfig()
    repair: RepairConfig = RepairConfig()
    smc: SmcSection = SmcSection()
    execution: ExecutionConfig = ExecutionConfig()
