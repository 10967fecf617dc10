"""The SMC engine's settings: one frozen value, unknown keys rejected, every default documented.

Rules: nothing here reads a file or the clock; time zones are IANA names resolved by the engine.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import msgspec

from fxconnector.core.errors import ConfigError
from fxconnector.core.model.smc import SmcKind
from fxconnector.core.time_geom import Timeframe

MinuteOfDay = Annotated[int, msgspec.Meta(ge=0, le=24 * 60)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]


class SessionName(StrEnum):
    """The three sessions the engine knows; each has its own hint kind."""

    ASIA = "asia"
    LONDON = "london"
    NEW_YORK = "new_york"

    @property
    def kind(self) -> SmcKind:
        return _SESSION_KINDS[self]


_SESSION_KINDS = {
    SessionName.ASIA: SmcKind.SESSION_ASIA,
    SessionName.LONDON: SmcKind.SESSION_LONDON,
    SessionName.NEW_YORK: SmcKind.SESSION_NEW_YORK,
}


class SessionSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A session: local wall-clock `[start_minute, end_minute)` in an IANA zone, every day."""

    name: SessionName
    zone: str
    start_minute: MinuteOfDay
    end_minute: MinuteOfDay

    def __post_init__(self) -> None:
        if not self.start_minute < self.end_minute:
            raise ConfigError(
                f"session {self.name.value}: start_minute {self.start_minute} must be before "
                f"end_minute {self.end_minute} (a session does not cross local midnight)"
            )


#: Tokyo 09:00-18:00 JST, London 08:00-17:00 UK time, New York 08:00-17:00 NY time (DST-aware).
DEFAULT_SESSIONS = (
    SessionSpec(SessionName.ASIA, "Asia/Tokyo", 9 * 60, 18 * 60),
    SessionSpec(SessionName.LONDON, "Europe/London", 8 * 60, 17 * 60),
    SessionSpec(SessionName.NEW_YORK, "America/New_York", 8 * 60, 17 * 60),
)


class SmcConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Settings of the SMC engine (docs/smc.md).

    - `swing_length` (N): bars on each side of a swing; `swing_length_by_tf` overrides it per tf.
    - `atr_length`: bars in the causal average true range that sizes the liquidity tolerance.
    - `liquidity_tolerance_atr`: two swings are "equal" when within this many ATRs.
    - `liquidity_lookback`: how many earlier unpooled swings a new swing is compared with.
    - `sessions`, `sessions_max_tf`: session windows, emitted for timeframes up to this one.
    - `trading_day_zone`, `trading_day_start_minute`: the trading-day boundary (17:00 New York)
      when the engine is not handed the calendar's own day grid.
    - `revision_horizon_bars`, `checkpoint_every_bars`: how far back a revised final bar can be
      re-derived from, and how often the engine keeps a copy of its state for that.
    """

    swing_length: PositiveInt = 5
    swing_length_by_tf: dict[Timeframe, PositiveInt] = msgspec.field(default_factory=dict)
    atr_length: PositiveInt = 14
    liquidity_tolerance_atr: Annotated[float, msgspec.Meta(ge=0)] = 0.1
    liquidity_lookback: PositiveInt = 10
    sessions: tuple[SessionSpec, ...] = DEFAULT_SESSIONS
    sessions_max_tf: Timeframe = Timeframe.H1
    trading_day_zone: str = "America/New_York"
    trading_day_start_minute: Annotated[int, msgspec.Meta(ge=0, lt=24 * 60)] = 17 * 60
    revision_horizon_bars: PositiveInt = 20_000
    checkpoint_every_bars: PositiveInt = 500

    def swing_length_for(self, tf: Timeframe) -> int:
        """N for `tf`."""
        return self.swing_length_by_tf.get(tf, self.swing_length)


def load_smc_config(data: dict[str, object]) -> SmcConfig:
    """An SmcConfig from parsed JSON/TOML; unknown keys and bad values are a ConfigError."""
    try:
        return msgspec.convert(data, type=SmcConfig, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"smc config: {exc}") from None
