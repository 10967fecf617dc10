"""The fxcm bridge as a Python 3.7 program: its syntax, imports, protocol mirror and edge helpers.

The bridge cannot import fxconnector, so these tests hold its plain-dict protocol mirror against
the msgspec structs in `protocol.py`, and check that it is a 3.7 program importing only the
standard library and the SDK. When a real Python 3.7 is found (FXCONNECTOR_TEST_PYTHON37, pyenv,
PATH) the bridge also runs under it against the stand-in SDK's recorded-data feed.
"""

from __future__ import annotations

import ast
import asyncio
import datetime as dt
import glob
import json
import logging
import os
import shutil
import subprocess
import sys
import typing
from collections.abc import AsyncGenerator, Coroutine
from pathlib import Path
from typing import Any, TypeVar, cast

import msgspec
import numpy as np
import pytest

from fxconnector.config.schema import FxcmBrokerConfig
from fxconnector.config.secrets import Secret, Secrets
from fxconnector.core.errors import ConfigError
from fxconnector.core.model.tick import Tick
from fxconnector.runtime.clock import SystemClock
from fxconnector.runtime.ingest.broker.fxcm import bridge
from fxconnector.runtime.ingest.broker.fxcm import protocol as wire
from fxconnector.runtime.ingest.broker.fxcm.adapter import FxcmBroker
from fxconnector.runtime.ingest.broker.resilience import Backoff
from fxconnector.runtime.ingest.broker.sim.generator import TickGenerator
from tests.conftest import calendar_profile

BRIDGE = Path(bridge.__file__)
STANDIN = Path(__file__).parent / "standin"
STANDIN_FILES = sorted(STANDIN.rglob("*.py"))
T = TypeVar("T")

#: typing names that exist at run time on Python 3.7 (Literal, Protocol, Final, TypedDict: 3.8).
TYPING_37 = frozenset(
    {"TYPE_CHECKING", "Any", "NoReturn", "Optional", "Union", "Callable", "Dict", "List"}
    | {"Tuple", "Iterable", "Iterator", "IO", "BinaryIO", "TextIO", "cast", "ClassVar"}
)
#: Standard-library modules newer than 3.7.
STDLIB_AFTER_37 = frozenset({"graphlib", "tomllib", "zoneinfo", "_zoneinfo", "wsgiref.types"})
BUILTIN_GENERICS = frozenset({"list", "dict", "tuple", "set", "frozenset", "type"})


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node that is evaluated at run time (not an annotation, not under TYPE_CHECKING)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        annotations: list[ast.AST | None] = []
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            annotations.extend(node.body)
        elif isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            annotations.append(node.returns)
            arguments = node.args
            for arg in [*arguments.args, *arguments.kwonlyargs, *arguments.posonlyargs]:
                annotations.append(arg.annotation)
            for extra in (arguments.vararg, arguments.kwarg):
                annotations.append(extra.annotation if extra is not None else None)
        for annotation in annotations:
            if annotation is not None:
                skipped.update(id(inner) for inner in ast.walk(annotation))
    return [node for node in ast.walk(tree) if id(node) not in skipped]


@pytest.mark.parametrize(
    "path", [BRIDGE, *STANDIN_FILES], ids=lambda p: str(p.relative_to(BRIDGE.parents[6]))
)
def test_bridge_and_stand_in_are_python_37_programs(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path), feature_version=(3, 7))
    annotated = any(
        isinstance(node, ast.AnnAssign) or (isinstance(node, ast.arg) and node.annotation)
        for node in ast.walk(tree)
    )
    if annotated:  # annotations are then never evaluated, so 3.9+ spellings are fine in them
        assert "from __future__ import annotations" in source
    for node in _runtime_nodes(tree):
        assert not isinstance(node, ast.NamedExpr | ast.Match), f"{path.name}: 3.8+ syntax"
        if isinstance(node, ast.arguments):
            assert not node.posonlyargs, f"{path.name}: positional-only parameters are 3.8+"
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
            assert node.value.id not in BUILTIN_GENERICS, f"{path.name}: runtime {node.value.id}[]"
        if isinstance(node, ast.ImportFrom) and node.module == "typing":
            names = {alias.name for alias in node.names}
            assert names <= TYPING_37, f"{path.name}: typing names new after 3.7: {names}"
        if isinstance(node, ast.JoinedStr):  # no f"{x=}" (3.8)
            for part in node.values:
                assert not (isinstance(part, ast.Constant) and str(part.value).endswith("="))
    assert "slots=True" not in source  # dataclass slots are 3.10+


def test_bridge_imports_only_the_standard_library_and_the_sdk() -> None:
    tree = ast.parse(BRIDGE.read_text(encoding="utf-8"))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "the bridge is a script: no relative imports"
            modules.add(node.module or "")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute):
            name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
            assert name not in {"__import__", "import_module"}, "imports are spelled out"
    tops = {module.split(".")[0] for module in modules}
    assert "forexconnect" in tops
    assert tops <= set(sys.stdlib_module_names) | {"__future__", "forexconnect"}, tops
    assert not modules & STDLIB_AFTER_37
    assert "fxconnector" not in tops


# -- the protocol mirror ---------------------------------------------------------------------

MESSAGES: dict[str, type[msgspec.Struct]] = {
    "hello": wire.Hello,
    "tick": wire.TickMessage,
    "history_result": wire.HistoryResult,
    "history_error": wire.HistoryError,
    "session": wire.SessionMessage,
    "log": wire.LogMessage,
    "fatal": wire.FatalMessage,
    "order_report": wire.OrderReportMessage,
    "order_error": wire.OrderErrorMessage,
}
REQUESTS: dict[str, type[msgspec.Struct]] = {
    "history": wire.HistoryRequest,
    "subscribe": wire.SubscribeRequest,
    "shutdown": wire.ShutdownRequest,
    "order_submit": wire.OrderSubmitRequest,
    "order_cancel": wire.OrderCancelRequest,
    "order_query": wire.OrderQueryRequest,
}


def _fields(struct: type[msgspec.Struct]) -> tuple[str, ...]:
    return tuple(field.name for field in msgspec.structs.fields(struct))


def test_the_bridge_mirrors_the_protocol_structs() -> None:
    assert bridge.PROTOCOL_VERSION == wire.PROTOCOL_VERSION
    assert set(bridge.MESSAGE_FIELDS) == set(MESSAGES)
    for tag, struct in MESSAGES.items():
        assert struct.__struct_config__.tag == tag
        assert bridge.MESSAGE_FIELDS[tag] == _fields(struct), tag
    assert set(bridge.REQUEST_FIELDS) == set(REQUESTS)
    for tag, struct in REQUESTS.items():
        assert struct.__struct_config__.tag == tag
        assert bridge.REQUEST_FIELDS[tag] == _fields(struct), tag
        defaults = {
            f.name: f.default
            for f in msgspec.structs.fields(struct)
            if f.default is not msgspec.NODEFAULT
        }
        assert bridge.REQUEST_DEFAULTS.get(tag, {}) == defaults, tag
    assert _fields(wire.WireBar) == bridge.BAR_FIELDS
    assert _fields(wire.WireFill) == bridge.FILL_FIELDS
    assert typing.get_args(wire.OrderSide) == bridge.ORDER_SIDES
    assert typing.get_args(wire.OrderKind) == bridge.ORDER_KINDS
    assert typing.get_args(wire.TimeInForceName) == bridge.TIMES_IN_FORCE
    assert typing.get_args(wire.OrderStateName) == bridge.ORDER_STATES
    assert typing.get_args(wire.PriceName) == bridge.PRICE_SIDES
    assert typing.get_args(wire.OpenModeName) == bridge.OPEN_MODES
    assert typing.get_args(wire.LogLevel) == bridge.LOG_LEVELS
    assert typing.get_args(wire.FatalCode) == bridge.FATAL_CODES
    assert set(bridge.SDK_STATUSES + bridge.BRIDGE_STATUSES) == set(wire.SESSION_STATES)


def test_bridge_messages_decode_as_the_protocol_structs() -> None:
    bar = bridge.bar_message(1709733600000, 1.1, 1.2, 1.0, 1.15, 42)
    samples = [
        bridge.hello_message("forexconnect 1.6.43"),
        bridge.tick_message("EURUSD", 1.08412, 1.08414, 1709733600123),
        bridge.history_result_message("h1", "EURUSD", [bar]),
        bridge.history_error_message("h2", "EURUSD", "QuotesManager error: ... errorCode=28"),
        bridge.session_message("SESSION_LOST", "", 1709733600000),
        bridge.log_message("warning", "FXCM login failed"),
        bridge.fatal_message("bad_credentials", "FXCM refused the login"),
        bridge.order_report_message(
            "o1",
            "alice-1",
            "filled",
            "101",
            [bridge.fill_message("102", 1000, 1.1, "buy", 1709733600123)],
        ),
        bridge.order_error_message("o2", "alice-2", "not connected to FXCM", False),
    ]
    assert {sample["type"] for sample in samples} == set(MESSAGES)
    for sample in samples:
        decoded = wire.decode_message(json.dumps(sample).encode())
        assert isinstance(decoded, MESSAGES[sample["type"]])
        assert msgspec.to_builtins(decoded) == sample


def test_protocol_requests_parse_in_the_bridge() -> None:
    requests: list[wire.Request] = [
        wire.HistoryRequest(id="h1", symbol="EURUSD", from_ms=0, to_ms=60_000, price="bid"),
        wire.HistoryRequest(
            id="h2", symbol="USDJPY", from_ms=1, to_ms=2, price="ask", open_mode="previous_close"
        ),
        wire.SubscribeRequest(symbols=["EURUSD", "XAUUSD"]),
        wire.ShutdownRequest(),
        wire.OrderSubmitRequest(
            id="o1",
            custom_id="alice-1",
            symbol="EURUSD",
            side="buy",
            units=1000,
            order_type="limit",
            rate=1.05,
            time_in_force="GTC",
        ),
        wire.OrderSubmitRequest(
            id="o2", custom_id="a:2", symbol="USDJPY", side="sell", units=5, order_type="market"
        ),
        wire.OrderCancelRequest(id="o3", custom_id="alice-1"),
        wire.OrderQueryRequest(id="o4", custom_id="alice-1"),
    ]
    for request in requests:
        line = wire.encode_line(request)
        assert line.endswith(b"\n")
        assert bridge.parse_request(line.strip()) == msgspec.to_builtins(request)
        assert wire.decode_request(line) == request


@pytest.mark.parametrize(
    ("line", "request_id", "problem"),
    [
        (b"not json", "", "not a JSON line"),
        (b"[1, 2]", "", "JSON object"),
        (b'{"type": "order"}', "", "unknown request type"),
        (b'{"type": "shutdown", "now": true}', "", "unknown fields now"),
        (b'{"type": "history", "id": "h9", "symbol": "EURUSD"}', "h9", "missing from_ms"),
        (
            b'{"type":"history","id":"h3","symbol":"EURUSD","from_ms":true,"to_ms":1,"price":"bid"}',
            "h3",
            "from_ms must be epoch ms",
        ),
        (
            b'{"type":"history","id":"h4","symbol":"EURUSD","from_ms":0,"to_ms":1,"price":"mid"}',
            "h4",
            "price must be bid or ask",
        ),
        (b'{"type": "subscribe", "symbols": ["EUR/USD"]}', "", "symbols must be"),
        (b'{"type": "order_query", "id": "o5", "custom_id": "a b"}', "o5", "custom_id must be"),
        (
            b'{"type":"order_submit","id":"o6","custom_id":"c","symbol":"EURUSD","side":"buy",'
            b'"units":0,"order_type":"market"}',
            "o6",
            "units must be a positive integer",
        ),
        (
            b'{"type":"order_submit","id":"o7","custom_id":"c","symbol":"EURUSD","side":"buy",'
            b'"units":1,"order_type":"limit"}',
            "o7",
            "needs its rate",
        ),
    ],
)
def test_the_bridge_rejects_bad_requests_naming_the_request(
    line: bytes, request_id: str, problem: str
) -> None:
    with pytest.raises(bridge.RequestError, match=problem) as caught:
        bridge.parse_request(line)
    assert caught.value.request_id == request_id


# -- edge helpers ----------------------------------------------------------------------------

MOMENT_MS = 1709733600123  # 2024-03-06 14:00:00.123 UTC


def test_sdk_times_become_utc_epoch_ms() -> None:
    naive = dt.datetime(2024, 3, 6, 14, 0, 0, 123456)  # noqa: DTZ001 (the SDK's naive UTC)
    assert bridge.to_epoch_ms(naive) == MOMENT_MS
    plus_two = dt.timezone(dt.timedelta(hours=2))
    assert bridge.to_epoch_ms(dt.datetime(2024, 3, 6, 16, 0, 0, 123000, tzinfo=plus_two)) == (
        MOMENT_MS
    )
    ole_days = 25569 + MOMENT_MS / 86_400_000  # an OLE automation DATE
    assert bridge.to_epoch_ms(ole_days) == MOMENT_MS
    assert bridge.to_epoch_ms(np.datetime64(MOMENT_MS * 1_000_000, "ns")) == MOMENT_MS
    column = np.array([MOMENT_MS, MOMENT_MS + 60_000], dtype="datetime64[ms]").astype("M8[ns]")
    assert bridge.column_ms(column) == [MOMENT_MS, MOMENT_MS + 60_000]
    assert bridge.to_epoch_ms(bridge.to_sdk_time(MOMENT_MS)) == MOMENT_MS
    assert bridge.to_sdk_time(MOMENT_MS).tzinfo is None  # what get_history expects
    with pytest.raises(ValueError, match="unsupported time"):
        bridge.to_epoch_ms("2024-03-06")
    with pytest.raises(ValueError, match="before 1970"):
        bridge.to_epoch_ms(25568.0)
    with pytest.raises(ValueError, match="not finite"):
        bridge.to_epoch_ms(float("nan"))


def test_instrument_names_map_both_ways() -> None:
    assert bridge.to_fxcm_instrument("EURUSD") == "EUR/USD"
    assert bridge.to_fxcm_instrument("XAUUSD") == "XAU/USD"
    assert bridge.to_fxcm_instrument("US30") == "US30"
    assert bridge.from_fxcm_instrument("EUR/USD") == "EURUSD"
    assert bridge.from_fxcm_instrument("US30") == "US30"


HISTORY_DTYPE = np.dtype(
    [("Date", "M8[ns]")]
    + [(side + part, "f8") for side in ("Bid", "Ask") for part in ("Open", "High", "Low", "Close")]
    + [("Volume", "i4")]
)


def test_history_rows_become_open_stamped_bars_of_one_side() -> None:
    start = 1709733600000
    rows = np.zeros(4, HISTORY_DTYPE)
    for index, open_ms in enumerate((start - 60_000, start, start + 60_000, start + 120_000)):
        rows[index] = (np.datetime64(open_ms, "ms"), 1.1, 1.3, 1.0, 1.2, 2.1, 2.3, 2.0, 2.2, 7)
    # the chunk is [start, start + 3 min); the minute at start + 2 min is still forming
    bars = bridge.rows_to_bars(rows, "ask", start, start + 180_000, now_ms=start + 150_000)
    assert bars == [
        bridge.bar_message(start, 2.1, 2.3, 2.0, 2.2, 7),
        bridge.bar_message(start + 60_000, 2.1, 2.3, 2.0, 2.2, 7),
    ]
    assert bridge.rows_to_bars(rows, "bid", start, start + 60_000, start + 10**6)[0]["open"] == 1.1
    rows[1]["BidClose"] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        bridge.rows_to_bars(rows, "bid", start, start + 60_000, start + 10**6)
    assert bridge.rows_to_bars(np.zeros(0, HISTORY_DTYPE), "bid", 0, 1, 2) == []


def test_credentials_come_from_the_environment_or_an_owner_only_secrets_file(
    tmp_path: Path,
) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('# fxconnector secrets\nfxcm_user = "D1"\nfxcm_password = "p\\"w"\n')
    secrets.chmod(0o600)
    environ = {bridge.SECRETS_FILE_ENV: str(secrets)}
    assert bridge.load_credentials(environ) == ("D1", 'p"w')
    environ[bridge.PASSWORD_ENV] = "from-env"
    assert bridge.load_credentials(environ) == ("D1", "from-env")  # the environment wins
    secrets.chmod(0o644)
    with pytest.raises(bridge.Fatal, match="chmod 600"):
        bridge.load_credentials({bridge.SECRETS_FILE_ENV: str(secrets)})
    secrets.write_text("fxcm_password = hunter2-unquoted\n")
    secrets.chmod(0o600)
    with pytest.raises(bridge.Fatal, match="line 1") as caught:
        bridge.load_credentials({bridge.SECRETS_FILE_ENV: str(secrets)})
    assert "hunter2" not in caught.value.message
    with pytest.raises(bridge.Fatal, match=bridge.USER_ENV) as missing:
        bridge.load_credentials({})
    assert missing.value.code == "config"


def test_only_credential_refusals_are_fatal_at_login() -> None:
    # FXCM's own texts, as reported in fxcm/ForexConnectAPI issues #20, #24, #18, #11
    assert bridge.looks_like_bad_credentials("User or connection doesn't exist.")
    assert bridge.looks_like_bad_credentials(
        "19915;DAS 19915: ZDas Exception ORA-20003: Access denied"
    )
    assert bridge.looks_like_bad_credentials("Incorrect user name or password (user ********)")
    assert not bridge.looks_like_bad_credentials("Wait timeout exceeded")
    assert not bridge.looks_like_bad_credentials(
        "HTTP request failed object='/pdas/servlet?rnd=1693277533006' errorCode=28"
    )
    assert not bridge.looks_like_bad_credentials(
        "ORA-499: Unable to obtain station descriptor. HTTP request failed "
        "object='/Hosts.jsp?ID=381250&PN=Demo&SN=ForexConnect&MV=5' errorCode=56"
    )


# -- a real Python 3.7 ---------------------------------------------------------------------


def _python37() -> str | None:
    candidates = [os.environ.get("FXCONNECTOR_TEST_PYTHON37", "")]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.7*/bin/python3.7")))
    candidates.append(shutil.which("python3.7") or "")
    for candidate in filter(None, candidates):
        try:
            done = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 7))"],
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
        except OSError:
            continue
        if done.stdout.strip() == "True":
            return candidate
    return None


ADAPTER_LOGGER = "fxconnector.runtime.ingest.broker.fxcm.adapter"


class _ListHandler(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, timeout=60)

    return asyncio.run(bounded())


def test_the_bridge_runs_under_a_real_python_37(tmp_path: Path) -> None:
    """Handshake, login, ticks and a bad login under 3.7 (its numpy-free recorded feed)."""
    python37 = _python37()
    if python37 is None:
        pytest.skip("no Python 3.7 found (set FXCONNECTOR_TEST_PYTHON37)")
    symbols = ("EURUSD", "GBPUSD")
    calendars = {s: calendar_profile("always_open").for_symbol(s) for s in (*symbols, "AUDUSD")}
    generator = TickGenerator(11, calendars, ticks_per_minute=1200)
    start = 1709733600000  # a busy Wednesday minute, 14:00 UTC
    recorded = sorted(
        (tick for s in (*symbols, "AUDUSD") for tick in generator.minute(s, start).ticks()),
        key=lambda tick: tick.ts_ms,
    )
    feed = tmp_path / "ticks.jsonl"
    rows = [
        {"instrument": bridge.to_fxcm_instrument(t.symbol), "bid": t.bid, "ask": t.ask}
        | {"ts_ms": t.ts_ms}
        for t in recorded
    ]
    feed.write_text("".join(json.dumps(row) + "\n" for row in rows))
    environment = {
        "PYTHONPATH": str(STANDIN),
        "FXCM_STANDIN_FEED": f"recorded:{feed}",
        "FXCM_STANDIN_INSTRUMENTS": "EUR/USD,GBP/USD,AUD/USD",
        "FXCM_STANDIN_USER": "D37",
        "FXCM_STANDIN_PASSWORD": "py37-secret-pass",
    }
    config = FxcmBrokerConfig(python=python37, url="http://standin.invalid/Hosts.jsp")

    def make(password: str) -> FxcmBroker:
        return FxcmBroker(
            config,
            Secrets(fxcm_user=Secret("D37"), fxcm_password=Secret(password)),
            symbols,
            calendars,
            SystemClock(),
            bridge_env=environment,
            watchdog_silence_s=30.0,
            backoff=Backoff(base_s=0.05, cap_s=0.5),
            connect_timeout_s=30.0,
        )

    async def scenario() -> tuple[list[Tick], str]:
        broker = make("py37-secret-pass")
        ticks: list[Tick] = []
        try:
            await broker.connect()
            stream = cast(AsyncGenerator[Tick, None], broker.ticks())
            while len(ticks) < 20:
                ticks.append(await asyncio.wait_for(anext(stream), timeout=10))
            await stream.aclose()
        finally:
            await broker.close()
        refused = make("not-the-py37-password")
        try:
            with pytest.raises(ConfigError, match="refused the login") as caught:
                await refused.connect()
        finally:
            await refused.close()
        return ticks, str(caught.value)

    records: list[logging.LogRecord] = []
    handler = _ListHandler(records)
    adapter_log = logging.getLogger(ADAPTER_LOGGER)
    adapter_log.addHandler(handler)
    adapter_log.setLevel(logging.DEBUG)
    try:
        ticks, refusal = _run(scenario())
    finally:
        adapter_log.removeHandler(handler)
        adapter_log.setLevel(logging.NOTSET)
    expected = [tick for tick in recorded if tick.symbol in symbols][:20]
    assert ticks == [Tick(t.symbol, t.bid, t.ask, t.ts_ms) for t in expected]
    assert "not-the-py37-password" not in refusal
    assert "D37" not in refusal  # the stand-in echoes the user id; the bridge redacts it
    started = [r for r in records if r.getMessage() == "fxcm.bridge.started"]
    assert started
    assert started[0].__dict__["fields"]["python"].startswith("3.7.")


REPO_ROOT = BRIDGE.parents[6]


def _python37_with_numpy() -> str | None:
    """A Python 3.7 that can import numpy (ForexConnect's get_history returns numpy arrays):
    the repo's .venv37 (`make venv`), FXCONNECTOR_TEST_PYTHON37, or one found on the machine."""
    candidates = [str(REPO_ROOT / ".venv37" / "bin" / "python")]
    candidates += [os.environ.get("FXCONNECTOR_TEST_PYTHON37", "")]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.7*/bin/python3.7")))
    for candidate in filter(None, candidates):
        try:
            done = subprocess.run(
                [candidate, "-c", "import sys, numpy; print(sys.version_info[:2] == (3, 7))"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except OSError:
            continue
        if done.stdout.strip() == "True":
            return candidate
    return None


HISTORY_SYMBOL = "EURUSD"
HISTORY_START = 1709733600000  # Wednesday 2024-03-06 14:00 UTC
HISTORY_MINUTES = 30


def _recorded_history(tmp_path: Path) -> tuple[Path, list[wire.WireBar]]:
    """Recorded ticks of 30 minutes (with two quiet minutes) and FXCM's bid candles of them."""
    calendars = {HISTORY_SYMBOL: calendar_profile("always_open").for_symbol(HISTORY_SYMBOL)}
    generator = TickGenerator(23, calendars, ticks_per_minute=40)
    quiet = {HISTORY_START + 12 * 60_000, HISTORY_START + 13 * 60_000}
    ticks = [
        tick
        for minute in range(HISTORY_MINUTES)
        if HISTORY_START + minute * 60_000 not in quiet
        for tick in generator.minute(HISTORY_SYMBOL, HISTORY_START + minute * 60_000).ticks()
    ]
    feed = tmp_path / "history.jsonl"
    feed.write_text(
        "".join(
            json.dumps({"instrument": "EUR/USD", "bid": t.bid, "ask": t.ask, "ts_ms": t.ts_ms})
            + "\n"
            for t in ticks
        )
    )
    candles: list[wire.WireBar] = []
    for minute in sorted({t.ts_ms - t.ts_ms % 60_000 for t in ticks}):
        bids = [t.bid for t in ticks if minute <= t.ts_ms < minute + 60_000]
        candles.append(
            wire.WireBar(minute, bids[0], max(bids), min(bids), bids[-1], volume=len(bids))
        )
    return feed, candles


def test_the_bridge_history_path_under_a_real_python_37_reaches_the_store(
    tmp_path: Path,
) -> None:
    """get_history's numpy rows → bridge → adapter → pipeline → store, under 3.7, with FXCM's
    faults: a row with NaN prices, a chunk that fails after the first, a truncated answer, and a
    row with an unreadable Date. Good rows are stored; a bad row's minute stays missing; no
    minute after an answer's end, nor any minute of an answer with an unreadable row, is quiet;
    with the faults gone the range completes (the two minutes without ticks become quiet)."""
    python37 = _python37_with_numpy()
    if python37 is None:
        pytest.skip(
            "no Python 3.7 with numpy found (make venv builds .venv37 when python3.7 exists)"
        )
    from fxconnector.core.builders.spec import BarSpec
    from fxconnector.core.coverage import MinuteState, classify
    from fxconnector.core.time_geom import Timeframe
    from fxconnector.core.validation.ticks import TickRails
    from fxconnector.runtime.ingest.polling.pipeline import Pipeline
    from fxconnector.runtime.store.ssot_jsonl import JsonlStore

    feed, candles = _recorded_history(tmp_path)
    truth = wire.bars_to_events(HISTORY_SYMBOL, candles, 0, 2**62, now_ms=2**62).bars
    truth_by_open = {bar.open_ms: bar for bar in truth}
    minute = 60_000
    bad_row = HISTORY_START + 5 * minute
    control = tmp_path / "control.json"

    def faults(**values: Any) -> None:
        staging = control.with_suffix(".tmp")
        staging.write_text(json.dumps(values))
        staging.replace(control)

    # chunks of 10 minutes: [0,10) has the NaN row, [10,20) is cut to its first half by the
    # partial answer, [20,30) fails
    faults(
        history_bad_rows=[bad_row],
        history_fail_from_ms=HISTORY_START + 20 * minute,
        history_partial=True,
    )
    environment = {
        "PYTHONPATH": str(STANDIN),
        "FXCM_STANDIN_FEED": f"recorded:{feed}",
        "FXCM_STANDIN_INSTRUMENTS": "EUR/USD",
        "FXCM_STANDIN_USER": "D37",
        "FXCM_STANDIN_PASSWORD": "py37-secret-pass",
        "FXCM_STANDIN_CONTROL": str(control),
    }
    calendars = {HISTORY_SYMBOL: calendar_profile("always_open").for_symbol(HISTORY_SYMBOL)}
    broker = FxcmBroker(
        FxcmBrokerConfig(python=python37, url="http://standin.invalid/Hosts.jsp"),
        Secrets(fxcm_user=Secret("D37"), fxcm_password=Secret("py37-secret-pass")),
        (HISTORY_SYMBOL,),
        calendars,
        SystemClock(),
        bridge_env=environment,
        watchdog_silence_s=30.0,
        backoff=Backoff(base_s=0.05, cap_s=0.5),
        connect_timeout_s=30.0,
        history_chunk_mins=10,
    )
    store = JsonlStore(tmp_path / "ssot")
    store.open()

    class Sink:
        def finals(self, events: Any) -> None:
            pass

        def previews(self, events: Any) -> None:
            pass

    pipeline = Pipeline(
        history=broker.history_1m,
        store=store,
        calendars=calendars,
        timeframes=(Timeframe.M1, Timeframe.M5),
        spec=BarSpec(),
        rails=TickRails(frozenset({HISTORY_SYMBOL})),
        sink=Sink(),
        start_ms={HISTORY_SYMBOL: HISTORY_START},
        max_chunk_minutes=HISTORY_MINUTES,
    )
    end = HISTORY_START + HISTORY_MINUTES * minute
    now = 2_000_000_000_000  # long after the recorded range

    def states() -> list[MinuteState]:
        finals = [b.open_ms for b in store.bars(HISTORY_SYMBOL, Timeframe.M1)]
        fetched = store.fetched_intervals(HISTORY_SYMBOL, HISTORY_START, end)
        found = classify(
            HISTORY_START, end, calendars[HISTORY_SYMBOL], np.asarray(finals, np.int64), fetched
        )
        return [MinuteState(int(s)) for s in found]

    async def scenario() -> list[list[MinuteState]]:
        seen: list[list[MinuteState]] = []
        await broker.connect()
        try:
            await pipeline.fetch_range(
                HISTORY_SYMBOL, HISTORY_START, end, caller="backfill", now_ms=now
            )
            seen.append(states())
            faults(history_bad_dates=[HISTORY_START + 3 * minute])
            await pipeline.fetch_range(
                HISTORY_SYMBOL, HISTORY_START, end, caller="backfill", now_ms=now
            )
            seen.append(states())
            faults()
            await pipeline.fetch_range(
                HISTORY_SYMBOL, HISTORY_START, end, caller="backfill", now_ms=now
            )
            seen.append(states())
        finally:
            await broker.close()
        return seen

    first, second, last = _run(scenario())
    # Every stored bar is the broker's own candle, whatever the faults.
    for bar in store.bars(HISTORY_SYMBOL, Timeframe.M1):
        for revision in store.revisions(HISTORY_SYMBOL, Timeframe.M1, bar.open_ms):
            assert revision.event() == msgspec.structs.replace(
                truth_by_open[bar.open_ms], rev=revision.rev
            )
    final, quiet, missing = MinuteState.FINAL, MinuteState.QUIET, MinuteState.MISSING
    # 1st: minutes 0-9 but the NaN row (5) are final, 5 is missing; the truncated answers
    # reach into [10, 20) only partly and [20, 30) failed: nothing after the last bar is quiet.
    assert first[:5] == [final] * 5
    assert first[5] is missing
    assert first[6:10] == [final] * 4
    assert quiet not in first[max(i for i, s in enumerate(first) if s is final) :]
    assert all(s is missing for s in first[20:])

    # 2nd: a row with an unreadable Date proves nothing quiet, yet its good rows are stored.
    def quiet_minutes(found: list[MinuteState]) -> set[int]:
        return {i for i, state in enumerate(found) if state is quiet}

    assert quiet_minutes(second) <= quiet_minutes(first)
    assert second.count(final) > first.count(final)
    # With the faults gone: all final, the two minutes without ticks quiet, 5 repaired.
    expected = [quiet if m in (12, 13) else final for m in range(HISTORY_MINUTES)]
    assert last == expected
    assert pipeline.stats.candles_refused["price_not_finite"] >= 1
    assert pipeline.stats.candles_refused["bad_time"] >= 1
    store.close()
