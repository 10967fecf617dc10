// The chart's pure helpers: timeframes, colours, the drawn timeline (bars and the empty slots of
// gaps), which library call a bar needs, prices' precision, chart times and data points.
// No DOM, no library, no clock reads: tested by node (tests/ui/chart_adapter.test.mjs).

export const TF_MS = Object.freeze({
  "1m": 60_000,
  "3m": 180_000,
  "5m": 300_000,
  "15m": 900_000,
  "30m": 1_800_000,
  "1h": 3_600_000,
  "4h": 14_400_000,
  "1d": 86_400_000,
});

export const MAX_GAP_SLOTS = 240;

export const COLORS = Object.freeze({
  up: "#26a69a",
  down: "#ef5350",
  upPreview: "rgba(38, 166, 154, 0.25)",
  downPreview: "rgba(239, 83, 80, 0.25)",
  previewOutline: "#f5b700",
  upVolume: "rgba(38, 166, 154, 0.5)",
  downVolume: "rgba(239, 83, 80, 0.5)",
  previewVolume: "rgba(245, 183, 0, 0.45)",
  gap: "#9598a1",
  revision: "#42a5f5",
});

/** "2d 1h", "3h 5m", "4m": a duration for a gap marker. */
export function formatDuration(ms) {
  const minutes = Math.round(ms / 60_000);
  const days = Math.floor(minutes / 1440);
  const hours = Math.floor((minutes % 1440) / 60);
  const rest = minutes % 60;
  const parts = [];
  if (days) parts.push(`${days}d`);
  if (hours) parts.push(`${hours}h`);
  if (rest && !days) parts.push(`${rest}m`);
  return parts.join(" ") || "0m";
}

/** The empty slots between two bars, or `long: true` when the gap is too long to widen. */
export function gapBetween(prevOpenMs, nextOpenMs, tfMs, maxGapSlots = MAX_GAP_SLOTS) {
  // Round: 4h and 1d buckets follow the trading day, which moves by an hour at DST changes.
  const missing = Math.round((nextOpenMs - prevOpenMs) / tfMs) - 1;
  if (missing <= 0) return { slots: [], long: false, missing: 0 };
  if (missing > maxGapSlots) return { slots: [], long: true, missing };
  const slots = [];
  for (let k = 1; k <= missing; k++) {
    const openMs = prevOpenMs + k * tfMs;
    if (openMs < nextOpenMs) slots.push(openMs);
  }
  return { slots, long: false, missing };
}

/**
 * The drawn timeline of ascending bars: `items` ({openMs, bar}; bar null for an empty slot) and
 * `gaps` (the long gaps: {openMs of the bar after, spanMs}).
 */
export function buildTimeline(bars, tfMs, maxGapSlots = MAX_GAP_SLOTS) {
  const items = [];
  const gaps = [];
  let prev = null;
  for (const bar of bars) {
    if (prev !== null) {
      const gap = gapBetween(prev.open_ms, bar.open_ms, tfMs, maxGapSlots);
      for (const openMs of gap.slots) items.push({ openMs, bar: null });
      if (gap.long) gaps.push({ openMs: bar.open_ms, spanMs: bar.open_ms - prev.open_ms - tfMs });
    }
    items.push({ openMs: bar.open_ms, bar });
    prev = bar;
  }
  return { items, gaps };
}

/** Index of the item at `openMs` in ascending `items`, or -1. */
export function findItem(items, openMs) {
  let lo = 0;
  let hi = items.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const at = items[mid].openMs;
    if (at === openMs) return mid;
    if (at < openMs) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/**
 * Which library call draws `bar` on the timeline `items`:
 * "append" (after the last item), "last" (replaces the last item), "historical" (replaces an
 * older drawn bar) or "rebuild" (setData: the bar needs a slot that holds no bar).
 */
export function planUpsert(items, bar) {
  if (items.length === 0 || bar.open_ms > items[items.length - 1].openMs) return "append";
  const index = findItem(items, bar.open_ms);
  if (index < 0 || items[index].bar === null) return "rebuild";
  return index === items.length - 1 ? "last" : "historical";
}

/**
 * The pip of a symbol by the market's convention: 0.01 for pairs quoted in JPY, 0.1 for gold,
 * 0.01 for silver, else 0.0001. Prices are shown to a tenth of a pip (the "pipette": EURUSD
 * 1.10123, USDJPY 150.123, XAUUSD 2000.12), the point every broker quotes in.
 */
export function pipSize(symbol) {
  if (symbol.endsWith("JPY")) return 0.01;
  if (symbol.startsWith("XAU")) return 0.1;
  if (symbol.startsWith("XAG")) return 0.01;
  return 0.0001;
}

/** Decimals shown for `symbol`'s prices: one more than its pip's. */
export function symbolPrecision(symbol) {
  return Math.round(-Math.log10(pipSize(symbol))) + 1;
}

/** Decimals to show: the most any of the (last 200) bars' prices needs, at most 6. */
export function pricePrecision(bars) {
  let precision = 2;
  for (const bar of bars.slice(-200)) {
    for (const price of [bar.open, bar.high, bar.low, bar.close]) {
      const text = String(price);
      const dot = text.indexOf(".");
      if (dot >= 0 && !text.includes("e")) precision = Math.max(precision, text.length - dot - 1);
    }
  }
  return Math.min(precision, 6);
}

/** The browser's UTC offset now, in ms (positive east of Greenwich). */
export function localOffsetMs(date = new Date()) {
  return -date.getTimezoneOffset() * 60_000;
}

/** A chart time (UTC seconds, shifted by `offsetMs` so the library's UTC labels read local). */
export function chartTime(openMs, offsetMs) {
  return Math.floor((openMs + offsetMs) / 1000);
}

/** The candle data point of one bar (per-bar colours: previews translucent, amber outline). */
export function candleOf(bar, time) {
  const up = bar.close >= bar.open;
  if (bar.complete) {
    const color = up ? COLORS.up : COLORS.down;
    return { time, open: bar.open, high: bar.high, low: bar.low, close: bar.close, color,
      borderColor: color, wickColor: color };
  }
  return { time, open: bar.open, high: bar.high, low: bar.low, close: bar.close,
    color: up ? COLORS.upPreview : COLORS.downPreview, borderColor: COLORS.previewOutline,
    wickColor: COLORS.previewOutline };
}

/** The volume data point of one bar. */
export function volumeOf(bar, time) {
  let color = bar.close >= bar.open ? COLORS.upVolume : COLORS.downVolume;
  if (!bar.complete) color = COLORS.previewVolume;
  return { time, value: bar.volume, color };
}

/** The bar of the last item at or before `openMs` in ascending `items`, or null. */
export function findBarAtOrBefore(items, openMs) {
  let lo = 0;
  let hi = items.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (items[mid].openMs <= openMs) lo = mid + 1;
    else hi = mid - 1;
  }
  for (let k = hi; k >= 0; k--) if (items[k].bar !== null) return items[k].bar;
  return null;
}
