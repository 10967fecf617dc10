// The execution overlay's pure part (src/fxconnector/ui/web/exec_overlay.js): which bar a fill
// is drawn on per timeframe (the core bucket geometry), its marker, and a position's price line.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  addFills, fillBarOpen, fillMarkers, positionLine, quoteCurrency, targetsOf, unrealisedPnl,
} from "../../src/fxconnector/ui/web/exec_overlay.js";

const M = 60_000;
const H = 60 * M;
// 2026-01-06 14:37:25.500 UTC (a Tuesday)
const FILL_MS = Date.UTC(2026, 0, 6, 14, 37, 25, 500);

function fill(extra = {}) {
  return { kind: "fill", seq: 7, ts: FILL_MS, intent_id: "i-1", trader: "demo", symbol: "EURUSD",
    side: "buy", units: 1000, price: 1.10012, fill_id: "f-1", late: false, ...extra };
}

test("a fill goes on the epoch-aligned bucket that holds it, up to 1h", () => {
  assert.equal(fillBarOpen(FILL_MS, "1m"), Date.UTC(2026, 0, 6, 14, 37));
  assert.equal(fillBarOpen(FILL_MS, "3m"), Date.UTC(2026, 0, 6, 14, 36));
  assert.equal(fillBarOpen(FILL_MS, "5m"), Date.UTC(2026, 0, 6, 14, 35));
  assert.equal(fillBarOpen(FILL_MS, "15m"), Date.UTC(2026, 0, 6, 14, 30));
  assert.equal(fillBarOpen(FILL_MS, "30m"), Date.UTC(2026, 0, 6, 14, 30));
  assert.equal(fillBarOpen(FILL_MS, "1h"), Date.UTC(2026, 0, 6, 14));
  // The bounds are end-inclusive: the last ms of a minute is in it, the next ms opens the next.
  const open = Date.UTC(2026, 0, 6, 14, 37);
  assert.equal(fillBarOpen(open + M - 1, "1m"), open);
  assert.equal(fillBarOpen(open + M, "1m"), open + M);
  assert.equal(fillBarOpen(open, "1h"), Date.UTC(2026, 0, 6, 14));
  assert.equal(fillBarOpen(FILL_MS, "2m"), null); // not a timeframe
  assert.equal(fillBarOpen(Number.NaN, "1m"), null);
});

test("on 4h and 1d (trading-day aligned) a fill goes on the drawn bar holding it, or waits", () => {
  // 17:00 New York in winter is 22:00 UTC: the 4h buckets open at 22, 02, 06, 10, 14, 18 UTC.
  const day = Date.UTC(2026, 0, 5, 22);
  const bars4h = [0, 1, 2, 3, 4].map((k) => ({ open_ms: day + k * 4 * H,
    close_ms: day + (k + 1) * 4 * H - 1 }));
  assert.equal(fillBarOpen(FILL_MS, "4h", bars4h), Date.UTC(2026, 0, 6, 14));
  assert.equal(fillBarOpen(Date.UTC(2026, 0, 6, 14) - 1, "4h", bars4h), Date.UTC(2026, 0, 6, 10));
  // Not an epoch guess: epoch-aligned 4h would say 12:00 UTC.
  assert.notEqual(fillBarOpen(FILL_MS, "4h", bars4h), Date.UTC(2026, 0, 6, 12));
  // Its bar is not drawn (yet): no bar, not the nearest one.
  assert.equal(fillBarOpen(FILL_MS, "4h", bars4h.slice(0, 4)), null);
  assert.equal(fillBarOpen(FILL_MS, "4h", []), null);
  assert.equal(fillBarOpen(day - 1, "4h", bars4h), null);
  const bars1d = [{ open_ms: day, close_ms: day + 24 * H - 1 }];
  assert.equal(fillBarOpen(FILL_MS, "1d", bars1d), day);
  // Summer: 17:00 New York is 21:00 UTC.
  const summer = Date.UTC(2026, 6, 6, 21);
  assert.equal(fillBarOpen(summer + 5 * H, "1d", [{ open_ms: summer, close_ms: summer + 24 * H - 1 }]),
    summer);
});

test("a marker is at the fill price on its bar, labelled with side, units and price", () => {
  const open = Date.UTC(2026, 0, 6, 14, 37);
  const bars = [{ open_ms: open - M }, { open_ms: open }];
  const sell = fill({ intent_id: "i-2", fill_id: "f-2", side: "sell", units: 250000,
    price: 1.1, ts: open - 1 });
  const markers = fillMarkers([fill(), sell], "1m", bars, 5);
  assert.deepEqual(markers, [
    { openMs: open - M, id: "fill:i-2:f-2", position: "atPriceTop", price: 1.1,
      shape: "arrowDown", color: "#ff6d00", text: "S 250,000 @ 1.10000" },
    { openMs: open, id: "fill:i-1:f-1", position: "atPriceBottom", price: 1.10012,
      shape: "arrowUp", color: "#2962ff", text: "B 1,000 @ 1.10012" },
  ]);
  // A fill whose bar is not drawn waits.
  assert.deepEqual(fillMarkers([fill()], "1m", [{ open_ms: open - M }], 5), []);
  // The same fill on 5m: the 14:35 bar.
  const five = fillMarkers([fill()], "5m", [{ open_ms: Date.UTC(2026, 0, 6, 14, 35) }], 5);
  assert.equal(five[0].openMs, Date.UTC(2026, 0, 6, 14, 35));
});

test("a fill is kept once per intent and fill id", () => {
  const byId = new Map();
  assert.equal(addFills(byId, [fill(), fill()]), 1);
  assert.equal(addFills(byId, [fill(), fill({ fill_id: "f-9" })]), 1);
  assert.equal(byId.size, 2);
});

function position(extra = {}) {
  return { kind: "position", seq: 8, ts: FILL_MS, trader: "demo", symbol: "EURUSD", units: 1000,
    avg_price: 1.10012, realised_pnl: 0, day_open_ms: 0, day_realised_pnl: 0, ...extra };
}

test("an open position is a line at its average price with its unrealised P&L", () => {
  const tick = { symbol: "EURUSD", bid: 1.10052, ask: 1.10062, ts_ms: FILL_MS };
  assert.ok(Math.abs(unrealisedPnl(position(), tick) - 0.4) < 1e-9); // long: at the bid
  assert.deepEqual(positionLine(position(), tick, 5), {
    id: "position:demo:EURUSD", price: 1.10012, color: "#2962ff",
    title: "demo long 1,000 @ 1.10012 uPnL +0.40 USD",
  });
  // Short: at the ask, a loss when the ask is above the average.
  const short = position({ units: -20000, avg_price: 1.1005 });
  assert.ok(Math.abs(unrealisedPnl(short, tick) - -20000 * (1.10062 - 1.1005)) < 1e-9);
  assert.equal(positionLine(short, tick, 5).title, "demo short 20,000 @ 1.10050 uPnL −2.40 USD");
  assert.equal(positionLine(short, tick, 5).color, "#ff6d00");
  // No tick yet: the P&L is unknown, not zero.
  assert.equal(positionLine(position(), null, 5).title, "demo long 1,000 @ 1.10012 uPnL —");
  // Flat: no line.
  assert.equal(positionLine(position({ units: 0, avg_price: null }), tick, 5), null);
  assert.equal(positionLine(position({ symbol: "USDJPY", avg_price: 150.123 }),
    { bid: 150.2, ask: 150.22 }, 3).title, "demo long 1,000 @ 150.123 uPnL +77.00 JPY");
  assert.equal(quoteCurrency("XAU/USD"), "");
});

test("each symbol's trades go on the first chart of the layout showing it", () => {
  const panes = [{ symbol: "EURUSD", tf: "1m" }, { symbol: "GBPUSD", tf: "1m" },
    { symbol: "EURUSD", tf: "1h" }];
  const targets = targetsOf(panes);
  assert.equal(targets.get("EURUSD"), panes[0]);
  assert.equal(targets.get("GBPUSD"), panes[1]);
  assert.equal(targets.size, 2);
});
