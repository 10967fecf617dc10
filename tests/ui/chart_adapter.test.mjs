// The chart adapter (src/fxconnector/ui/web/chart_adapter.js): its pure timeline helpers, and
// which library call it makes for each kind of change, against a fake lightweight-charts that
// enforces the real library's rules (update() only at or after the last time; update(x, true)
// only on an existing bar; setData keeps the view anchored to the right edge).
import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";

import {
  buildTimeline,
  candleOf,
  chartTime,
  createChartAdapter,
  findBarAtOrBefore,
  formatDuration,
  gapBetween,
  planUpsert,
  pipSize,
  pricePrecision,
  symbolPrecision,
  TF_MS,
} from "../../src/fxconnector/ui/web/chart_adapter.js";

const T0 = 1_549_238_400_000; // 2019-02-04 00:00 UTC
const M = 60_000;

function bar(k, { complete = true, rev = 0, close = 1.1 + k * 0.0001 } = {}) {
  return {
    symbol: "EURUSD", tf: "1m", open_ms: T0 + k * M, close_ms: T0 + (k + 1) * M - 1,
    open: 1.1, high: Math.max(1.1, close) + 0.0002, low: Math.min(1.1, close) - 0.0001, close,
    volume: 10 + k, tick_count: 10 + k, complete, source: complete ? "history" : "stream",
    event_ts: complete ? T0 + (k + 1) * M - 1 : T0 + k * M + 5, rev,
  };
}

// --- pure helpers -------------------------------------------------------------------------------

test("gaps: short ones become empty slots, long ones are only marked", () => {
  assert.deepEqual(gapBetween(T0, T0 + M, M), { slots: [], long: false, missing: 0 });
  assert.deepEqual(gapBetween(T0, T0 + 3 * M, M).slots, [T0 + M, T0 + 2 * M]);
  const weekend = gapBetween(T0, T0 + 49 * 60 * M, M);
  assert.equal(weekend.long, true);
  assert.deepEqual(weekend.slots, []);
  // 1d buckets follow the trading day, which moves by an hour at DST changes.
  const day = TF_MS["1d"];
  assert.deepEqual(gapBetween(T0, T0 + 3 * day + 3_600_000, day).slots, [T0 + day, T0 + 2 * day]);
  assert.equal(formatDuration(49 * 60 * M), "2d 1h");
  assert.equal(formatDuration(3 * M), "3m");
  assert.equal(formatDuration(125 * M), "2h 5m");
});

test("the timeline holds every bar, an empty slot per short-gap bucket, long gaps aside", () => {
  const bars = [bar(0), bar(1), bar(4), bar(400)];
  const { items, gaps } = buildTimeline(bars, M, 240);
  assert.deepEqual(items.map((it) => [it.openMs, it.bar !== null]), [
    [T0, true], [T0 + M, true], [T0 + 2 * M, false], [T0 + 3 * M, false], [T0 + 4 * M, true],
    [T0 + 400 * M, true],
  ]);
  assert.deepEqual(gaps, [{ openMs: T0 + 400 * M, spanMs: 395 * M }]);
});

test("planUpsert picks the library call", () => {
  const { items } = buildTimeline([bar(0), bar(1), bar(3)], M);
  assert.equal(planUpsert([], bar(0)), "append");
  assert.equal(planUpsert(items, bar(4)), "append");
  assert.equal(planUpsert(items, bar(3)), "last");
  assert.equal(planUpsert(items, bar(1)), "historical");
  assert.equal(planUpsert(items, bar(2)), "rebuild"); // an empty slot: no bar to update
  assert.equal(planUpsert(items, bar(-1)), "rebuild"); // before the first: no slot at all
});

test("prices, colours and times", () => {
  assert.equal(pricePrecision([{ open: 1.1, high: 1.10512, low: 1.1, close: 1.1 }]), 5);
  assert.equal(pricePrecision([{ open: 150.1, high: 150.123, low: 150, close: 150 }]), 3);
  assert.equal(candleOf(bar(0), 1).color, "#26a69a");
  assert.match(candleOf(bar(0, { complete: false }), 1).color, /^rgba/);
  assert.equal(chartTime(T0, 0), T0 / 1000);
  assert.equal(chartTime(T0, 7_200_000), T0 / 1000 + 7200);
});

// --- the adapter against a fake library ---------------------------------------------------------

let fake;

function fakeLibrary() {
  const calls = [];
  const state = { range: null, markers: [], primitives: [] };
  const points = []; // the time scale: every time any series holds, ascending
  function rebuildPoints(all) {
    points.splice(0, points.length, ...[...new Set(all)].sort((a, b) => a - b));
  }
  const seriesList = [];
  function makeSeries(name) {
    let data = [];
    const series = {
      name,
      setData(items) {
        calls.push([name, "setData"]);
        const before = points.length;
        data = items.map((p) => ({ ...p }));
        rebuildPoints(seriesList.flatMap((s) => s.raw().map((p) => p.time)));
        // The real library keeps the distance to the right edge: a view scrolled into history
        // moves when points appear right of it.
        if (state.range !== null && name === "candles") {
          const added = points.length - before;
          state.range = { from: state.range.from + added, to: state.range.to + added };
        }
      },
      update(item, historical = false) {
        const last = data.length ? data[data.length - 1].time : -Infinity;
        if (historical) {
          const index = data.findIndex((p) => p.time === item.time);
          if (index < 0) throw new Error("Cannot update non-existing data point");
          if (!("open" in data[index] || "value" in data[index])) {
            throw new Error("fake: a historical update of whitespace overwrites the next bar");
          }
          data[index] = { ...item };
          calls.push([name, "historical", item.time]);
          return;
        }
        if (item.time < last) throw new Error(`Cannot update oldest data, last time=${last}`);
        if (item.time === last) data[data.length - 1] = { ...item };
        else data.push({ ...item });
        rebuildPoints([...points, item.time]);
        calls.push([name, "update", item.time]);
      },
      applyOptions() {},
      attachPrimitive(primitive) {
        state.primitives.push(primitive);
        primitive.attached({ chart, series, requestUpdate() {} });
      },
      data: () => data.filter((p) => "open" in p || "value" in p),
      raw: () => data,
    };
    seriesList.push(series);
    return series;
  }
  const chart = {
    addSeries: (kind) => makeSeries(kind === "CandlestickSeries" ? "candles" : "volume"),
    panes: () => [{ setStretchFactor() {} }, { setStretchFactor() {} }],
    timeScale: () => ({
      getVisibleLogicalRange: () => state.range,
      setVisibleLogicalRange: (range) => {
        state.range = { ...range };
        calls.push(["timeScale", "setVisibleLogicalRange", range.from]);
      },
      getVisibleRange: () => null,
      subscribeVisibleLogicalRangeChange() {},
      timeToIndex: (time) => {
        const index = points.indexOf(time);
        return index < 0 ? null : index;
      },
    }),
    subscribeCrosshairMove() {},
    subscribeClick() {},
    remove() {},
  };
  globalThis.LightweightCharts = {
    createChart: () => chart,
    ColorType: { Solid: "solid" },
    CrosshairMode: { Normal: 0 },
    CandlestickSeries: "CandlestickSeries",
    HistogramSeries: "HistogramSeries",
    createSeriesMarkers: () => ({
      setMarkers: (markers) => { state.markers = markers; },
      markers: () => state.markers,
    }),
  };
  return { calls, state, points, series: seriesList };
}

beforeEach(() => {
  fake = fakeLibrary();
});

function drawn(adapter) {
  return adapter.candles().map((p) => [(p.time * 1000 - T0) / M, p.close]);
}

test("reset draws bars and empty slots and shows the newest part", () => {
  const adapter = createChartAdapter(null);
  adapter.reset([bar(0), bar(1), bar(3)], { tf: "1m" });
  assert.deepEqual(fake.points.map((t) => (t * 1000 - T0) / M), [0, 1, 2, 3]);
  assert.deepEqual(drawn(adapter).map(([k]) => k), [0, 1, 3]);
  assert.ok(fake.state.range.to >= 3);
});

test("the live bar and a new bar use update(); a new bar after a gap brings its slots", () => {
  const adapter = createChartAdapter(null);
  adapter.reset([bar(0), bar(1)], { tf: "1m" });
  fake.calls.length = 0;
  adapter.upsert([bar(1, { close: 1.2 })]);
  adapter.upsert([bar(2, { complete: false })]);
  adapter.upsert([bar(5, { complete: false })]);
  assert.deepEqual(
    fake.calls.filter(([name]) => name === "candles").map(([, call, t]) => [call, (t * 1000 - T0) / M]),
    [["update", 1], ["update", 2], ["update", 3], ["update", 4], ["update", 5]],
  );
  assert.deepEqual(drawn(adapter).map(([k]) => k), [0, 1, 2, 5]);
  assert.equal(drawn(adapter)[1][1], 1.2);
});

test("a final replacing an older preview, or a revision, is a historical update", () => {
  const adapter = createChartAdapter(null);
  adapter.reset([bar(0), bar(1, { complete: false }), bar(2, { complete: false })], { tf: "1m" });
  fake.calls.length = 0;
  adapter.upsert([bar(1), bar(0, { rev: 1, close: 1.3 })]);
  const calls = fake.calls.filter(([name]) => name === "candles").map(([, call]) => call);
  assert.deepEqual(calls, ["historical", "historical"]);
  assert.equal(drawn(adapter)[0][1], 1.3);
  assert.equal(adapter.candles()[1].color, "#26a69a");
  assert.deepEqual(adapter.markers().map((m) => m.text), ["r1"]);
});

test("a bar for an empty slot or a missing older key redraws and keeps the view", () => {
  const bars = [];
  for (let k = 0; k < 100; k++) if (k !== 50) bars.push(bar(k));
  const adapter = createChartAdapter(null);
  adapter.reset(bars, { tf: "1m" });
  // Scrolled into history: items 20..40 in view, the empty slot (50) right of it.
  fake.state.range = { from: 20, to: 40 };
  adapter.upsert([bar(50)]);
  assert.deepEqual(fake.state.range, { from: 20, to: 40 });
  assert.ok(drawn(adapter).some(([k]) => k === 50));
  // A missing key inside a long gap (no slot: a new time point right of the view).
  const far = [bar(0), bar(1), bar(2), bar(1000), bar(1001)];
  adapter.reset(far, { tf: "1m" });
  fake.state.range = { from: 0, to: 2 };
  adapter.upsert([bar(600)]);
  assert.deepEqual(fake.state.range, { from: 0, to: 2 }); // the fake library alone would move it
  assert.deepEqual(drawn(adapter).map(([k]) => k), [0, 1, 2, 600, 1000, 1001]);
  // An older bar before the first: the view follows its bars (shifted by the new items).
  fake.state.range = { from: 1, to: 3 };
  adapter.upsert([bar(-3)]);
  assert.deepEqual(drawn(adapter).map(([k]) => k), [-3, 0, 1, 2, 600, 1000, 1001]);
  assert.equal(fake.state.range.from, 1 + 3); // one bar and two empty slots came in left of it
  // A view showing the newest bar keeps showing it when a bar comes in inside the view.
  fake.state.range = { from: 5, to: 12 };
  adapter.upsert([bar(999)]); // inside the long gap 600..1000: one more time point
  assert.deepEqual(fake.state.range, { from: 6, to: 13 });
});

test("the local-time offset shifts every time and keeps the view", () => {
  const adapter = createChartAdapter(null);
  adapter.reset([bar(0), bar(1)], { tf: "1m" });
  fake.state.range = { from: 0, to: 1 };
  adapter.setOffset(7_200_000);
  assert.deepEqual(adapter.candles().map((p) => p.time), [T0 / 1000 + 7200, T0 / 1000 + 7260]);
  assert.deepEqual(fake.state.range, { from: 0, to: 1 });
});

test("prepend adds older bars left and keeps the same bars in view, even at the live edge", () => {
  const adapter = createChartAdapter(null);
  adapter.reset([bar(100), bar(101), bar(102), bar(103)], { tf: "1m" });
  // The whole (short) series in view, the newest bar included: the view must not jump to the
  // right edge, it keeps showing bars 100..103.
  fake.state.range = { from: 0, to: 3 };
  adapter.prepend([bar(96), bar(97), bar(98), bar(99)]);
  assert.deepEqual(drawn(adapter).map(([k]) => k), [96, 97, 98, 99, 100, 101, 102, 103]);
  assert.deepEqual(fake.state.range, { from: 4, to: 7 });
  assert.equal(adapter.firstOpenMs(), T0 + 96 * M);
  // An older page with a gap before the first bar: its empty slots count too.
  adapter.prepend([bar(90)]);
  assert.deepEqual(fake.state.range, { from: 10, to: 13 });
  adapter.prepend([]);
  assert.deepEqual(fake.state.range, { from: 10, to: 13 });
});

test("the start of data is marked by a primitive at the first bar", () => {
  const adapter = createChartAdapter(null);
  adapter.reset([bar(5), bar(6)], { tf: "1m" });
  const [primitive] = fake.state.primitives;
  assert.equal(primitive.time, null);
  adapter.setStartOfData(true);
  assert.equal(primitive.time, (T0 + 5 * M) / 1000);
  adapter.reset([bar(5), bar(6)], { tf: "1m" });
  assert.equal(primitive.time, null); // a new series: unknown until its history says so
});

test("pip size and price precision follow the symbol", () => {
  assert.equal(pipSize("EURUSD"), 0.0001);
  assert.equal(pipSize("USDJPY"), 0.01);
  assert.equal(pipSize("XAUUSD"), 0.1);
  assert.deepEqual(["EURUSD", "GBPJPY", "XAUUSD", "XAGUSD"].map(symbolPrecision), [5, 3, 2, 3]);
});

test("findBarAtOrBefore skips empty slots and finds nothing before the first bar", () => {
  const { items } = buildTimeline([bar(0), bar(3)], M);
  assert.equal(findBarAtOrBefore(items, T0 + 2 * M).open_ms, T0);
  assert.equal(findBarAtOrBefore(items, T0 + 3 * M + 5).open_ms, T0 + 3 * M);
  assert.equal(findBarAtOrBefore(items, T0 - 1), null);
});
