// The chart: the ONLY module that calls TradingView lightweight-charts (v5, the standalone build
// vendored at vendor/lightweight-charts.standalone.production.js, loaded by index.html as the
// global `LightweightCharts`).
//
// Rules:
// - The adapter draws what it is given: bars already merged by merge.js (final > preview). It
//   keeps its own copy of the drawn timeline (`items`: bars and the empty slots of gaps, ascending
//   open_ms) so that it can tell which of the library's three update paths a bar needs:
//     * the last item or a new item after it: `series.update(item)`;
//     * an older bar that is drawn already: `series.update(item, true)` (historical update);
//     * anything else (a bar for a slot that holds no bar: a filled gap, a repaired or late final
//       between two bars): `setData` of the whole timeline, with the visible logical range saved
//       before and restored after, shifted by the number of items that appeared left of it, so
//       the viewport does not move. (A historical update of a whitespace slot would overwrite
//       the next bar in v5.2, so filled gaps go this way too.)
// - Gaps: a bucket with no bar between two bars is a gap (missing or quiet minutes: the API does
//   not say which). Up to MAX_GAP_SLOTS missing buckets are drawn as empty slots (whitespace data
//   points: a hole in the candles and the volume pane); a longer run (a market closure such as
//   the weekend, or a long outage) is not widened but marked on the bar after it ("gap 2d 1h").
// - Time: the library has no time zones and labels times as UTC. In local mode every time is
//   shifted by one offset (the browser's current UTC offset, taken when local mode is chosen);
//   a per-bar offset would fold the repeated hour of a DST change into non-increasing times,
//   which the library rejects. So in local mode bars older than a DST change are an hour off.
// - Previews (complete=false) are drawn with a translucent body and an amber outline and wick;
//   finals are solid. A revised final (rev > 0) gets a small "r<rev>" marker.
//
// The pure helpers live in timeline.js (re-exported here); the start-of-data mark is a
// primitive of start_of_data.js.

import { StartOfData } from "./start_of_data.js";
import {
  COLORS,
  TF_MS,
  buildTimeline,
  candleOf,
  chartTime,
  findBarAtOrBefore,
  findItem,
  formatDuration,
  gapBetween,
  planUpsert,
  pricePrecision,
  volumeOf,
} from "./timeline.js";

export {
  TF_MS,
  MAX_GAP_SLOTS,
  COLORS,
  formatDuration,
  gapBetween,
  buildTimeline,
  findItem,
  planUpsert,
  pipSize,
  symbolPrecision,
  pricePrecision,
  localOffsetMs,
  chartTime,
  candleOf,
  volumeOf,
  findBarAtOrBefore,
} from "./timeline.js";

const RIGHT_OFFSET = 6; // empty bars right of the newest one

// --- the library ----------------------------------------------------------------------------

function library() {
  const lib = globalThis.LightweightCharts;
  if (lib === undefined) {
    throw new Error("lightweight-charts is not loaded (vendor/lightweight-charts.standalone.production.js did not load)");
  }
  return lib;
}

const THEME = {
  background: "#131722",
  text: "#d1d4dc",
  grid: "#1f2430",
  border: "#2a2e39",
};

/**
 * A candlestick chart with a volume pane in `container`: THE place a chart is created.
 * `onHover(bar | null, time | null)` is called with the bar under the crosshair;
 * `onRange(logicalRange)` when the visible range changes (scrolling, zooming).
 * The returned adapter exposes `chart` and `candles` (the library's objects) for overlays that
 * attach their own primitives (e.g. smc_overlay.js).
 */
export function createChartAdapter(container, { onHover = () => {}, onRange = () => {} } = {}) {
  const lib = library();
  const chart = lib.createChart(container, {
    autoSize: true,
    layout: {
      background: { type: lib.ColorType.Solid, color: THEME.background },
      textColor: THEME.text,
      panes: { separatorColor: THEME.border },
    },
    grid: { vertLines: { color: THEME.grid }, horzLines: { color: THEME.grid } },
    rightPriceScale: { borderColor: THEME.border },
    timeScale: { borderColor: THEME.border, timeVisible: true, secondsVisible: false,
      rightOffset: RIGHT_OFFSET },
    crosshair: { mode: lib.CrosshairMode.Normal },
  });
  const candles = chart.addSeries(lib.CandlestickSeries, {
    upColor: COLORS.up, downColor: COLORS.down, borderVisible: true,
    wickUpColor: COLORS.up, wickDownColor: COLORS.down,
  });
  const volume = chart.addSeries(lib.HistogramSeries, {
    priceFormat: { type: "volume" }, priceLineVisible: false, lastValueVisible: true,
  }, 1);
  const panes = chart.panes();
  panes[0].setStretchFactor(3);
  panes[1].setStretchFactor(1);
  const markerApi = lib.createSeriesMarkers(candles, []);
  const startOfData = new StartOfData();
  candles.attachPrimitive(startOfData);
  const lines = new Map(); // name -> line series (moving averages)
  let overlayMarkers = []; // an overlay's markers, times as UTC open_ms (exec_overlay.js)
  const priceLines = new Map(); // id -> the library's price line (exec_overlay.js)

  let tfMs = TF_MS["1m"];
  let offsetMs = 0;
  let items = [];
  let gaps = [];
  const byTime = new Map(); // chart time -> bar, for the crosshair

  const timeOf = (openMs) => chartTime(openMs, offsetMs);

  function pointsOf(item) {
    const time = timeOf(item.openMs);
    if (item.bar === null) return [{ time }, { time }];
    return [candleOf(item.bar, time), volumeOf(item.bar, time)];
  }

  function drawMarkers() {
    const markers = [];
    for (const gap of gaps) {
      markers.push({ time: timeOf(gap.openMs), position: "aboveBar", shape: "arrowDown",
        color: COLORS.gap, text: `gap ${formatDuration(gap.spanMs)}` });
    }
    for (const item of items) {
      if (item.bar !== null && item.bar.rev > 0) {
        markers.push({ time: timeOf(item.openMs), position: "belowBar", shape: "circle",
          color: COLORS.revision, text: `r${item.bar.rev}`, size: 0.6 });
      }
    }
    for (const { openMs, ...marker } of overlayMarkers) {
      // Only on a drawn bar: the library would move a marker to the nearest one.
      const time = timeOf(openMs);
      if (byTime.has(time)) markers.push({ ...marker, time });
    }
    markers.sort((a, b) => a.time - b.time);
    markerApi.setMarkers(markers);
  }

  function indexByTime() {
    byTime.clear();
    for (const item of items) if (item.bar !== null) byTime.set(timeOf(item.openMs), item.bar);
  }

  // setData with the viewport kept. A view scrolled into history keeps its first visible item
  // in place; a view that shows the newest item keeps showing it (it follows the live bar).
  function redraw(previousItems, anchorLeft = false) {
    const range = chart.timeScale().getVisibleLogicalRange();
    let shift = null;
    if (range !== null && previousItems.length > 0) {
      if (range.to >= previousItems.length - 1 && !anchorLeft) {
        shift = items.length - previousItems.length;
      } else {
        const anchorIndex = Math.min(Math.max(Math.round(range.from), 0),
          previousItems.length - 1);
        const newIndex = findItem(items, previousItems[anchorIndex].openMs);
        shift = newIndex < 0 ? 0 : newIndex - anchorIndex;
      }
    }
    const points = items.map(pointsOf);
    candles.setData(points.map((p) => p[0]));
    volume.setData(points.map((p) => p[1]));
    indexByTime();
    drawMarkers();
    if (shift !== null) {
      chart.timeScale().setVisibleLogicalRange({ from: range.from + shift, to: range.to + shift });
    }
  }

  let syncing = false; // a crosshair set by setCrosshair must not echo back as a hover
  let syncedAt = null; // open_ms of the bar under a synced crosshair
  chart.subscribeCrosshairMove((param) => {
    if (syncing) return;
    const time = param.time ?? null;
    onHover(time === null ? null : byTime.get(time) ?? null, time);
  });
  chart.timeScale().subscribeVisibleLogicalRangeChange((range) => onRange(range));
  // A tap (touch has no hover) puts the crosshair on the bar tapped; a mouse click, the same.
  chart.subscribeClick((param) => {
    if (param.time === undefined || param.point === undefined) return;
    const price = candles.coordinateToPrice(param.point.y);
    if (price !== null) chart.setCrosshairPosition(price, param.time, candles);
    onHover(byTime.get(param.time) ?? null, param.time);
  });

  return {
    chart,
    candles,

    /** Draw `bars` (ascending, merged) from scratch and show the newest part. */
    reset(bars, { tf, utcOffsetMs = 0, precision = pricePrecision(bars) }) {
      tfMs = TF_MS[tf] ?? TF_MS["1m"];
      offsetMs = utcOffsetMs;
      ({ items, gaps } = buildTimeline(bars, tfMs));
      startOfData.set(null);
      candles.applyOptions({ priceFormat: { type: "price", precision,
        minMove: 10 ** -precision } });
      const points = items.map(pointsOf);
      candles.setData(points.map((p) => p[0]));
      volume.setData(points.map((p) => p[1]));
      indexByTime();
      drawMarkers();
      const count = items.length;
      if (count > 0) {
        chart.timeScale().setVisibleLogicalRange({ from: Math.max(count - 150, 0) - 0.5,
          to: count - 1 + RIGHT_OFFSET });
      }
    },

    /** Draw merged bars that changed (each an upsert of its key), in order. */
    upsert(bars) {
      const before = items;
      const working = items.slice();
      const ops = [];
      let marksChanged = bars.some((bar) => bar.rev > 0);
      for (const bar of bars) {
        const plan = planUpsert(working, bar);
        if (plan === "rebuild") {
          // One setData draws the whole batch: the union of what is drawn and the batch.
          const byOpen = new Map(before.filter((it) => it.bar !== null)
            .map((it) => [it.openMs, it.bar]));
          for (const changed of bars) byOpen.set(changed.open_ms, changed);
          const all = [...byOpen.values()].sort((a, b) => a.open_ms - b.open_ms);
          ({ items, gaps } = buildTimeline(all, tfMs));
          redraw(before);
          return;
        }
        if (plan === "append") {
          const changed = [];
          if (working.length > 0) {
            const last = working[working.length - 1].openMs;
            const gap = gapBetween(last, bar.open_ms, tfMs);
            for (const openMs of gap.slots) changed.push({ openMs, bar: null });
            if (gap.long) {
              gaps.push({ openMs: bar.open_ms, spanMs: bar.open_ms - last - tfMs });
              marksChanged = true;
            }
          }
          changed.push({ openMs: bar.open_ms, bar });
          working.push(...changed);
          ops.push([false, changed]);
        } else {
          const index = findItem(working, bar.open_ms);
          working[index] = { openMs: bar.open_ms, bar };
          ops.push([plan === "historical", [working[index]]]);
        }
      }
      items = working;
      for (const [historical, changed] of ops) {
        for (const item of changed) {
          const [candle, vol] = pointsOf(item);
          candles.update(candle, historical);
          volume.update(vol, historical);
          if (item.bar !== null) byTime.set(candle.time, item.bar);
        }
      }
      if (marksChanged) drawMarkers();
    },

    /**
     * Add older bars (ascending, merged, all before the first drawn one) left of the drawn
     * timeline, keeping the view where it is (the same bars stay under the same pixels).
     */
    prepend(older) {
      if (older.length === 0) return;
      const before = items;
      const all = older.concat(before.filter((it) => it.bar !== null).map((it) => it.bar));
      ({ items, gaps } = buildTimeline(all, tfMs));
      redraw(before, true);
    },

    /** Mark the first drawn bar as the start of the data (null: there may be more). */
    setStartOfData(isStart) {
      const first = items.find((it) => it.bar !== null);
      startOfData.set(isStart && first ? timeOf(first.openMs) : null);
    },

    /** The open_ms of the first drawn bar, or null. */
    firstOpenMs: () => (items.length ? items[0].openMs : null),

    /**
     * Draw (or replace) a line `name` with points [{open_ms, value, preview}]: the finals' part
     * solid, the step to a preview point (the live bar's) dashed amber, drawn apart.
     */
    setLine(name, points, { color, title }) {
      const addLine = (options) => chart.addSeries(lib.LineSeries, { lineWidth: 1, title,
        priceLineVisible: false, lastValueVisible: false, crosshairMarkerVisible: false,
        ...options });
      if (!lines.has(name)) {
        lines.set(name, { finals: addLine({ color }),
          preview: addLine({ color: COLORS.previewOutline, lineStyle: lib.LineStyle.Dashed }) });
      }
      const { finals, preview } = lines.get(name);
      const data = points.map((p) => ({ time: timeOf(p.open_ms), value: p.value,
        ...(p.preview ? { color: COLORS.previewOutline } : {}) }));
      finals.setData(data);
      const live = data.length >= 2 && points[points.length - 1].preview ? data.slice(-2) : [];
      preview.setData(live.map((p) => ({ time: p.time, value: p.value })));
    },

    /** Remove the line `name` (if drawn). */
    removeLine(name) {
      const line = lines.get(name);
      if (line !== undefined) {
        chart.removeSeries(line.finals);
        chart.removeSeries(line.preview);
        lines.delete(name);
      }
    },

    /** The line series' data as the library holds it. */
    lineData: (name) => (lines.has(name) ? lines.get(name).finals.data().map((p) => ({ ...p }))
      : []),
    /** The dashed preview step of line `name` (two points, or none). */
    linePreview: (name) => (lines.has(name)
      ? lines.get(name).preview.data().map((p) => ({ ...p })) : []),

    /**
     * An overlay's markers, drawn with the gaps' and revisions' ({openMs: the bar's UTC open,
     * then the library's marker fields}); [] removes them.
     */
    setOverlayMarkers(markers) {
      overlayMarkers = markers.map((m) => ({ ...m }));
      drawMarkers();
    },

    /** Horizontal price lines on the candles, [{id, price, color, title}]: those not given go. */
    setPriceLines(wanted) {
      const ids = new Set(wanted.map((w) => w.id));
      for (const [id, line] of priceLines) {
        if (!ids.has(id)) {
          candles.removePriceLine(line);
          priceLines.delete(id);
        }
      }
      for (const { id, price, color, title } of wanted) {
        const options = { price, color, title, lineWidth: 1, lineStyle: lib.LineStyle.Dashed,
          axisLabelVisible: true };
        if (priceLines.has(id)) priceLines.get(id).applyOptions(options);
        else priceLines.set(id, candles.createPriceLine(options));
      }
    },

    /** The price lines as the library holds them ({price, color, title, ...}). */
    priceLines: () => candles.priceLines().map((line) => ({ ...line.options() })),
    /** The y coordinate (px) of a price on the candles' scale, or null. */
    yOf: (price) => candles.priceToCoordinate(price),

    /** Scroll to the newest bar (the live edge), keeping the zoom. */
    scrollToRealtime() {
      // Not the library's scrollToRealTime(): it animates, over seconds from far back.
      const range = chart.timeScale().getVisibleLogicalRange();
      if (range === null || items.length === 0) return;
      const width = range.to - range.from;
      const to = items.length - 1 + RIGHT_OFFSET;
      chart.timeScale().setVisibleLogicalRange({ from: to - width, to });
    },

    /** Whether the newest bar is in view. */
    atRealtime() {
      const range = chart.timeScale().getVisibleLogicalRange();
      return range === null || range.to >= items.length - 1 - 0.5;
    },

    /** Show the crosshair at UTC epoch ms `openMs` (a synced chart's), or hide it (null). */
    setCrosshair(openMs) {
      syncing = true;
      try {
        const bar = openMs === null ? null : findBarAtOrBefore(items, openMs);
        syncedAt = bar === null ? null : bar.open_ms;
        if (bar === null) {
          chart.clearCrosshairPosition();
          return;
        }
        chart.setCrosshairPosition(bar.close, timeOf(bar.open_ms), candles);
      } finally {
        syncing = false;
      }
    },

    /** open_ms of the bar under the crosshair set by setCrosshair, or null. */
    syncedCrosshair: () => syncedAt,

    /** The time of the start-of-data mark (chart seconds), or null. */
    startOfDataTime: () => startOfData.time,

    /** The visible span as UTC epoch ms {from, to}, or null. */
    visibleMs() {
      const range = chart.timeScale().getVisibleRange();
      if (range === null) return null;
      return { from: range.from * 1000 - offsetMs, to: range.to * 1000 - offsetMs };
    },

    /** Show the UTC epoch ms span {from, to} (a synced chart's, or a restored view). */
    setVisibleMs({ from, to }) {
      if (items.length === 0) return;
      chart.timeScale().setVisibleRange({ from: timeOf(from), to: timeOf(to) });
    },

    /** Shift every time by `utcOffsetMs` (0: UTC) keeping the viewport. */
    setOffset(utcOffsetMs) {
      if (utcOffsetMs === offsetMs) return;
      offsetMs = utcOffsetMs;
      redraw(items);
    },

    /** The candle series' data as the library holds it (bars; it leaves whitespace out). */
    candles: () => candles.data().map((point) => ({ ...point })),
    /** The volume series' data as the library holds it. */
    volumes: () => volume.data().map((point) => ({ ...point })),
    /** The markers drawn (gaps, revisions). */
    markers: () => markerApi.markers().map((marker) => ({ ...marker })),
    /** The visible logical range and the times at its ends (for tests of the viewport). */
    visibleRange: () => chart.timeScale().getVisibleLogicalRange(),
    visibleTimes: () => chart.timeScale().getVisibleRange(),
    /** The time scale's logical index of a chart time (whitespace slots count), or null. */
    indexOf: (time) => chart.timeScale().timeToIndex(time, false),

    /** Attach a series primitive (a plugin drawing over the candles, e.g. the SMC overlay). */
    attachPrimitive: (primitive) => candles.attachPrimitive(primitive),

    destroy() {
      startOfData.detached();
      chart.remove();
    },
  };
}
