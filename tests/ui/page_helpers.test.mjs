// The page's pure helpers: formatting (format.js), moving averages (indicators.js), the view in
// the hash (view_hash.js), the watchlist's spread (watchlist.js), notices in words
// (status_panel.js).
import assert from "node:assert/strict";
import { test } from "node:test";

import { bucketOpen, formatCountdown, formatTime } from "../../src/fxconnector/ui/web/format.js";
import { ema, sma } from "../../src/fxconnector/ui/web/indicators.js";
import { describeNotice } from "../../src/fxconnector/ui/web/status_panel.js";
import { formatView, parseView } from "../../src/fxconnector/ui/web/view_hash.js";
import { actionOf } from "../../src/fxconnector/ui/web/keys.js";
import { spreadPips } from "../../src/fxconnector/ui/web/watchlist.js";

const T0 = 1_549_238_400_000; // 2019-02-04 00:00 UTC
const M = 60_000;
const SERVED = { symbols: ["EURUSD", "GBPUSD", "USDJPY"], timeframes: ["1m", "5m", "1h"] };

function bar(k, close, complete = true) {
  return { open_ms: T0 + k * M, close, complete };
}

test("countdown to the close of the current bar", () => {
  assert.equal(formatCountdown(T0, M, T0 + 37_000), "0:23");
  assert.equal(formatCountdown(T0, 3_600_000, T0 + 1000), "59:59");
  assert.equal(formatCountdown(T0, 14_400_000, T0), "4:00:00");
  assert.equal(formatCountdown(T0, M, T0 + 2 * M), "0:00");
  assert.equal(bucketOpen(T0 + 5 * M + 7, 5 * M), T0 + 5 * M);
  assert.equal(formatTime(T0, 0, true), "2019-02-04 00:00 UTC");
  assert.equal(formatTime(T0, 7_200_000, false, { seconds: true }), "2019-02-04 02:00:00 local");
});

test("SMA and EMA over finals; a preview at the end is one more point, flagged", () => {
  const bars = [bar(0, 1), bar(1, 2), bar(2, 3), bar(3, 4), bar(4, 10, false)];
  assert.deepEqual(sma(bars, 3), [
    { open_ms: T0 + 2 * M, value: 2, preview: false },
    { open_ms: T0 + 3 * M, value: 3, preview: false },
    { open_ms: T0 + 4 * M, value: (3 + 4 + 10) / 3, preview: true },
  ]);
  const averages = ema(bars, 3);
  assert.deepEqual(averages.map((p) => p.preview), [false, false, true]);
  assert.equal(averages[0].value, 2); // seeded with the SMA
  assert.equal(averages[1].value, 0.5 * 4 + 0.5 * 2);
  assert.equal(averages[2].value, 0.5 * 10 + 0.5 * 3);
  // Finals only: no preview point without a preview, nothing before `period` finals.
  assert.equal(sma(bars.slice(0, 4), 3).at(-1).preview, false);
  assert.deepEqual(sma(bars.slice(0, 2), 3), []);
});

test("the view survives a round trip through the hash", () => {
  const view = {
    charts: [{ symbol: "GBPUSD", tf: "5m" }, { symbol: "USDJPY", tf: "1h" }],
    layout: 2, utc: false, range: { from: T0, to: T0 + 90 * M }, averages: ["sma20", "ema50"],
  };
  const text = formatView(view);
  assert.deepEqual(parseView(`#${text}`, SERVED), view);
  assert.equal(formatView({ ...view, layout: 1, charts: view.charts.slice(0, 1), range: null,
    averages: [] }), "symbol=GBPUSD&tf=5m&tz=local");
});

test("a hand-edited hash falls back to defaults instead of failing", () => {
  assert.deepEqual(parseView("#symbol=NOPE&tf=7m&layout=3&from=x&ma=sma20,wma9", SERVED), {
    charts: [{ symbol: "EURUSD", tf: "1m" }], layout: 1, utc: true, range: null,
    averages: ["sma20"],
  });
  const four = parseView("symbol=USDJPY&tf=5m&layout=4&charts=GBPUSD.1m,BAD.1m", SERVED);
  // A bad or missing extra chart: the first chart's symbol on the timeframes after its own.
  assert.deepEqual(four.charts, [
    { symbol: "USDJPY", tf: "5m" }, { symbol: "GBPUSD", tf: "1m" },
    { symbol: "USDJPY", tf: "1m" }, { symbol: "USDJPY", tf: "5m" },
  ]);
  assert.equal(parseView("from=200&to=100", SERVED).range, null);
});

test("spread in pips and notices in words", () => {
  assert.equal(spreadPips("EURUSD", 1.10001, 1.10012), "1.1");
  assert.equal(spreadPips("USDJPY", 150.001, 150.013), "1.2");
  assert.match(describeNotice({ code: "unavailable", message: "redis XREAD failed: X" }),
    /data store \(Redis\)/);
  assert.equal(describeNotice(null), null);
  assert.match(describeNotice({ code: "weird", message: "?" }), /weird/);
});

test("keys map to their actions, case-insensitively (Shift gives the capital)", () => {
  assert.deepEqual(["s", "S", "t", "r", "End", "l", "M", "x", "Enter"].map(actionOf),
    ["symbol", "symbol", "timeframe", "realtime", "realtime", "layout", "averages", null, null]);
});
