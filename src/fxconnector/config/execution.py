"""The `[execution]` section: the `fxconnector exec` process (DESIGN §16).

Rules: the same frozen, closed schema as the rest of the config (unknown keys are errors);
numbers constrained; defaults safe for real money: no trader is known until the file names
one (an intent of an unknown trader is denied), the gateway is `paper`. `paper`, `oanda` and
`fxcm` run: `[execution.oanda]` (the account and the environment, practice unless `live` is
written; the token is a secret, `FXCONNECTOR_OANDA_TOKEN`, never in this file) and
`[execution.fxcm]` (the ForexConnect bridge; credentials from config/secrets.py). Paths relative
to the workdir are made absolute by the loader.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from fxconnector.core.model.bar import SYMBOL_PATTERN

Symbol = Annotated[str, msgspec.Meta(pattern=SYMBOL_PATTERN)]
TraderName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
PositiveUnits = Annotated[int, msgspec.Meta(ge=1, le=1_000_000_000)]
Money = Annotated[float, msgspec.Meta(gt=0, le=1e15)]


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class SymbolLimitsConfig(_Section, frozen=True):
    """One trader's limits in one symbol. Money is in the symbol's quote currency (USD for
    EURUSD, JPY for USDJPY): a limit per symbol, never converted."""

    #: Largest order, in units of the base currency.
    max_units_per_order: PositiveUnits = 100_000
    #: Largest net position, counting every working order as if it filled (absolute units).
    max_open_units: PositiveUnits = 500_000
    #: Largest notional of that worst-case position (units x price, quote currency).
    max_notional: Money = 1_000_000.0
    #: Realised loss in a trading day (quote currency) that halts the trader; after a resume
    #: only orders that reduce exposure pass until the day ends.
    max_daily_loss: Money = 1_000.0


class TraderConfig(_Section, frozen=True):
    """One trader: the symbols it may trade (any other is denied) and its order rate."""

    #: Orders (submits) a minute, across symbols.
    max_orders_per_minute: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 30
    symbols: dict[Symbol, SymbolLimitsConfig] = msgspec.field(default_factory=dict)


#: v20 hosts per environment: (REST, stream).
OANDA_HOSTS = {
    "practice": ("https://api-fxpractice.oanda.com", "https://stream-fxpractice.oanda.com"),
    "live": ("https://api-fxtrade.oanda.com", "https://stream-fxtrade.oanda.com"),
}


class OandaExecConfig(_Section, frozen=True):
    """`gateway = "oanda"`: the v20 account orders go to (token: `FXCONNECTOR_OANDA_TOKEN`)."""

    #: The v20 account id, e.g. `101-004-1234567-001` (required for `oanda`).
    account_id: Annotated[str, msgspec.Meta(pattern=r"^([0-9]{3}-[0-9]{3}-[0-9]+-[0-9]{3})?$")] = ""
    #: `practice` (fxpractice hosts, no real money) or `live` (fxtrade: real money).
    environment: Literal["practice", "live"] = "practice"
    #: Overrides of the environment's hosts (a proxy, a test peer); empty: the environment's.
    rest_url: str = ""
    stream_url: str = ""
    #: One REST request's bound; past it the order is UNKNOWN (queried, never resent). A submit
    #: is two requests (the check by client id, the post): both fit the engine's 10 s bound.
    request_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=120)] = 4.0
    #: The transaction stream sends a HEARTBEAT every 5 s; silence this long = disconnected.
    heartbeat_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=300)] = 20.0
    #: The longest wait between stream reconnect attempts (capped, jittered backoff).
    reconnect_cap_s: Annotated[float, msgspec.Meta(gt=0, le=300)] = 30.0

    def urls(self) -> tuple[str, str]:
        """(REST base URL, stream base URL)."""
        rest, stream = OANDA_HOSTS[self.environment]
        return (self.rest_url or rest).rstrip("/"), (self.stream_url or stream).rstrip("/")


class FxcmGatewayConfig(_Section, frozen=True):
    """`gateway = "fxcm"`: the ForexConnect bridge that places the orders (its own session).
    The user and password come from the secrets (`fxcm_user`, `fxcm_password`), never here."""

    #: The Python 3.7 interpreter that has the `forexconnect` SDK.
    python: str = "python3.7"
    #: `Demo` for a practice account; `Real` moves real money.
    connection: Literal["Demo", "Real"] = "Demo"
    url: str = "http://www.fxcorporate.com/Hosts.jsp"
    #: No answer from FXCM to an order request for this long: the order is UNKNOWN (queried,
    #: never resent).
    request_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=600)] = 30.0
    #: How long the start waits for the login and the order tables.
    connect_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=600)] = 60.0
    #: Names of environment variables handed to the bridge besides PATH, HOME, locale and
    #: TZ (e.g. HTTPS_PROXY); nothing else of ours reaches it.
    pass_env: list[Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = []


class ExecutionConfig(_Section, frozen=True):
    """`fxconnector exec`: gateway, journal, control socket, limits."""

    gateway: Literal["paper", "oanda", "fxcm"] = "paper"
    #: The execution journal's folder (one writer: `fxconnector exec` holds its lock).
    journal_dir: str = "execution"
    #: The control socket (owner-only): the only way intents arrive.
    socket_path: str = "exec.sock"
    #: No order on a price older than this (the stale-price check).
    max_price_age_ms: Annotated[int, msgspec.Meta(ge=1, le=3_600_000)] = 10_000
    #: No order for an intent whose `ts` is older than this (the stale-intent check).
    max_intent_age_ms: Annotated[int, msgspec.Meta(ge=1, le=86_400_000)] = 60_000
    #: How often the process reads prices, ticks the core and publishes (ms).
    tick_interval_ms: Annotated[int, msgspec.Meta(ge=10, le=60_000)] = 200
    #: A SUBMITTED order with no word from the broker for this long becomes UNKNOWN.
    ack_timeout_ms: Annotated[int, msgspec.Meta(ge=1, le=3_600_000)] = 10_000
    #: How often an UNKNOWN order (or an unanswered cancel) is queried at the broker.
    query_interval_ms: Annotated[int, msgspec.Meta(ge=1, le=3_600_000)] = 5_000
    #: An order UNKNOWN for this long (no evidence from the broker) halts all trading.
    unknown_halt_ms: Annotated[int, msgspec.Meta(ge=1, le=3_600_000)] = 60_000
    #: A broker's "no such order" is believed this long after the submit (before, the order
    #: may still be on its way); then the order is REJECTED ("never arrived").
    not_found_grace_ms: Annotated[int, msgspec.Meta(ge=0, le=3_600_000)] = 30_000
    #: Events kept in `NS:exec:events` (the stream is trimmed to about this many entries).
    events_maxlen: Annotated[int, msgspec.Meta(ge=100, le=10_000_000)] = 100_000
    #: The OANDA account (`gateway = "oanda"` only).
    oanda: OandaExecConfig = OandaExecConfig()
    #: The FXCM session (`gateway = "fxcm"` only).
    fxcm: FxcmGatewayConfig = FxcmGatewayConfig()
    #: Trader name -> its symbols and limits; an intent of a trader not listed is denied.
    traders: dict[TraderName, TraderConfig] = msgspec.field(default_factory=dict)
