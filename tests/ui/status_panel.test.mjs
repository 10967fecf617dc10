// The status panel (src/fxconnector/ui/web/status_panel.js) drawn into a minimal DOM: the
// summary of 1,000 symbols (counts, the worst named) and the shown symbol's detail from
// /api/status?symbol=. The payloads follow status_v2 and status_symbol_v1.
import assert from "node:assert/strict";
import { test } from "node:test";

import { renderConnection, renderPanel } from "../../src/fxconnector/ui/web/status_panel.js";

// Just what the panel uses of the DOM: createElement, append, replaceChildren, textContent,
// className, classList.add.
class Node {
  constructor(doc, tag) {
    this.ownerDocument = doc;
    this.tag = tag;
    this.children = [];
    this.textContent = "";
    this.className = "";
    this.classList = { add: (name) => { this.className = `${this.className} ${name}`.trim(); } };
  }
  append(...nodes) { this.children.push(...nodes); }
  replaceChildren(...nodes) { this.children = nodes; }
}

function newBody() {
  const doc = { createElement: (tag) => new Node(doc, tag) };
  return new Node(doc, "div");
}

/** {section title: [[label, value, classes of the value and its row], ...]} of what was drawn. */
function tables(body) {
  const out = {};
  for (const box of body.children) {
    const [h2, table] = box.children;
    out[h2.textContent] = table.children.map((tr) => [
      tr.children[0].textContent,
      tr.children[1].textContent,
      `${tr.children[1].className} ${tr.className}`.trim(),
    ]);
  }
  return out;
}

const TS = 1_709_733_600_000; // Wednesday 2024-03-06 14:00 UTC
const VIEW = {
  symbol: "EURUSD",
  tf: "1m",
  formatTime: (ms) => (ms === null ? "—" : new Date(ms).toISOString()),
  formatAge: (ms) => `${Math.round(ms / 1000)} s`,
};

function summary(overrides = {}) {
  return {
    ts: TS, version: "0.1.0", process: { id: "host-a:42", pid: 42, started_ms: TS - 60_000 },
    market: {
      is_open: true, next_open_utc: null, next_pause_utc: "2024-03-08T22:00:00Z",
      calendar_tag: "fx_ny",
    },
    broker: { kind: "sim", state: "connected", last_tick_ts_ms: TS - 1000, reconnects: 0 },
    surface: { state: "ok", backlog: 0 },
    ssot: { state: "ok" },
    symbols: {
      total: 1000, current: 995, lagging: 3, stalled: 0, no_final: 2, with_missing_minutes: 7,
      with_underived: 0, coverage: { final: 1_400_000, quiet: 30_000, missing: 91, closed: 0 },
      worst: [
        { symbol: "S000XX", state: "no_final", final_lag_ms: 0, missing_minutes: 0, underived: 0 },
        { symbol: "S004XX", state: "lagging", final_lag_ms: 1_800_000, missing_minutes: 12,
          underived: 0 },
      ],
    },
    preview: { late_ticks_dropped: 0, rejected: {} },
    last_command: null, errors: [], degraded: [],
    ...overrides,
  };
}

const DETAIL = {
  ts: TS, symbol: "EURUSD", process_id: "host-a:42", state: "current", final_lag_ms: 0,
  last_final_ms: { "1h": TS - 3_600_001, "1m": TS - 120_001, "5m": null },
  last_tick_ts_ms: TS - 2000,
  coverage: { final: 1400, quiet: 30, missing: 0, closed: 10 }, underived: 0,
};

test("the summary counts every symbol and names the worst", () => {
  const body = newBody();
  renderPanel(body, summary(), DETAIL, VIEW);
  const drawn = tables(body);
  assert.deepEqual(drawn["Broker"][0], ["sim", "connected", "good"]);
  assert.deepEqual(drawn["Symbols · 1000"], [
    ["current", "995 of 1000", "warn"],
    ["not current", "0 stalled · 3 lagging · 2 no final yet", "warn"],
    ["gaps", "7 with missing minutes · 0 with derived bars pending", "warn"],
    ["S000XX", "no final", "warn worst"],
    ["S004XX", "lagging · lag 1800 s · 12 min missing", "warn worst"],
  ]);
});

test("the shown symbol's detail: state, last tick, coverage, last finals by timeframe", () => {
  const body = newBody();
  renderPanel(body, summary(), DETAIL, VIEW);
  const drawn = tables(body);
  assert.deepEqual(drawn["This symbol · EURUSD"], [
    ["state", "current", "good"],
    ["last tick", "2 s ago", ""],
    ["last 24 h minutes", "1400 final · 30 quiet · 0 missing · 10 closed", ""],
  ]);
  const finals = drawn["Last final bar (open time) · EURUSD"];
  assert.deepEqual(finals.map(([tf]) => tf), ["1m", "5m", "1h"]);
  assert.deepEqual(finals[0], ["1m", `${new Date(TS - 180_000).toISOString()} · lag 120 s`,
    "current"]);
  assert.deepEqual(finals[1], ["5m", "none yet", "warn"]);
});

test("a healthy namespace, and a detail not loaded yet or of another symbol", () => {
  const healthy = summary({
    symbols: { ...summary().symbols, current: 1000, lagging: 0, no_final: 0,
      with_missing_minutes: 0, worst: [] },
  });
  for (const detail of [null, { ...DETAIL, symbol: "GBPUSD" }]) {
    const body = newBody();
    renderPanel(body, healthy, detail, VIEW);
    const drawn = tables(body);
    assert.deepEqual(drawn["Symbols · 1000"], [["current", "1000 of 1000", "good"]]);
    assert.deepEqual(drawn["This symbol · EURUSD"], [["status", "loading…", ""]]);
    assert.deepEqual(drawn["Last final bar (open time) · EURUSD"], []);
  }
});

test("drawing again replaces the panel", () => {
  const body = newBody();
  renderPanel(body, summary(), DETAIL, VIEW);
  const sections = body.children.length;
  renderPanel(body, summary(), DETAIL, VIEW);
  assert.equal(body.children.length, sections);
});

test("recent errors and the connection are told in words, the raw text in a tooltip", () => {
  const body = newBody();
  const errors = [
    { ts: TS - 5000, code: "redis.unavailable",
      message: "redis XREAD failed: ConnectionError: Error 111 connecting" },
    { ts: TS - 1000, code: "redis.invalid_tick", message: "price_tik: bad" },
    { ts: TS, code: "history.fetch_failed", message: "timeout" },
  ];
  renderPanel(body, summary({ errors }), DETAIL, VIEW);
  const rows = tables(body)["Recent errors"];
  assert.deepEqual(rows.map(([, value]) => value), [
    "Broker history: fetch failed.",
    "The data store (Redis) held an invalid tick; it was not served.",
    "The data store (Redis) did not answer; the connector retries.",
  ]);
  const box = body.children.find((b) => b.children[0].textContent === "Recent errors");
  assert.equal(box.children[1].children[2].title,
    "redis.unavailable: redis XREAD failed: ConnectionError: Error 111 connecting");
  assert.ok(rows.every(([, value]) => !value.includes("XREAD")));

  const connection = newBody();
  renderConnection(connection, {
    stream: "open", events: 12, lastEventAt: TS - 2000, lastEventId: "1-0", cursor: "0-1",
    notice: { code: "unavailable", message: "redis XREAD failed: ConnectionError" },
    nowMs: TS,
  }, VIEW);
  const drawn = tables(connection).Connection;
  assert.deepEqual(drawn.map(([label]) => label),
    ["stream", "updates received", "last update", "problem", "position"]);
  assert.equal(drawn[1][1], "12");
  assert.equal(drawn[2][1], "2 s ago");
  assert.match(drawn[3][1], /^The server cannot read its data store \(Redis\)/);
  assert.equal(drawn[4][1], "following the stream");
});
