// One chart pane: a symbol and timeframe, its legend, its chart (chart_adapter.js), its merge
// book (merge.js), its bootstrap from /api/bars, its push stream and its history scroll-back.
//
// Rules:
// - Every bar drawn comes out of the pane's merge book (final > preview, NoMix, revisions by
//   rev), the same policy as the Python BarBook; the chart only draws merged bars.
// - Bootstrap: /api/bars?include_preview=true gives the finals, the current preview and the
//   stream cursor they reflect; the stream is read from that cursor, so nothing is missed and
//   nothing is doubled. On a dropped connection EventSource resumes with Last-Event-ID; when it
//   gives up, we reconnect ourselves with `cursor=<last event id>` (the same thing). A
//   `cursor_expired` notice (the server restarted, or the trimmed stream lost our place) means
//   bootstrap again: the snapshot replaces the finals and keeps only newer previews. When that
//   notice follows a load before any update arrived, the pane waits before reloading (capped
//   exponential backoff with jitter, resync.js) and the status panel says so in words.
// - History: when the view comes within HISTORY_MARGIN bars of the oldest bar drawn, the page
//   before it is fetched (`/api/bars?to_ms=<oldest open_ms>`, finals only), merged into the book
//   and prepended without moving the view. A page shorter than asked means the store has no
//   more: the pane says "start of data" there and asks no more.
// - Switching symbol or timeframe bumps `generation`: callbacks of the old stream or fetches
//   see a stale generation and do nothing.
// - Server data reaches the DOM as text only (textContent), never as HTML.

import { createChartAdapter, symbolPrecision, TF_MS } from "./chart_adapter.js";
import { bucketOpen, formatCountdown } from "./format.js";
import { ema, sma } from "./indicators.js";
import { applyUpdates, createState, getBar, loadSnapshot, seriesBars } from "./merge.js";
import { createResync, expiredDelayMs, noteLoad, noteUpdate } from "./resync.js";

export const BARS_LIMIT = 1500;
export const HISTORY_PAGE = 1500;
export const HISTORY_MARGIN = 60; // bars left of the view that trigger the next page
const FETCH_TIMEOUT_MS = 8000;
const RETRY_MS = 1500;
const FLUSH_MS = 40; // SSE events are merged and drawn in small batches

export const AVERAGES = Object.freeze({
  sma20: { label: "SMA 20", color: "#42a5f5", compute: (bars) => sma(bars, 20) },
  ema50: { label: "EMA 50", color: "#ab47bc", compute: (bars) => ema(bars, 50) },
});

export async function getJson(path) {
  const response = await fetch(path, { cache: "no-store", signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
  const body = await response.json();
  if (!response.ok) {
    const error = body?.error;
    const failure = new Error(error ? `${error.code}: ${error.message}` : `HTTP ${response.status}`);
    failure.code = error?.code ?? "http";
    throw failure;
  }
  return body;
}

/**
 * A pane in `element` showing `symbol`/`tf`. `hooks`: onHover(pane, openMs|null),
 * onRange(pane), onChange(pane) (stream state, counts), onLoaded(pane) (after a bootstrap),
 * formatTime(ms).
 */
export function createPane(element, { symbol, tf, offsetMs = 0, averages = [] }, hooks) {
  element.classList.add("pane");
  element.replaceChildren();
  const legend = document.createElement("div");
  legend.className = "legend";
  const holder = document.createElement("div");
  holder.className = "pane-chart";
  const history = document.createElement("div");
  history.className = "history-state";
  history.hidden = true;
  element.append(legend, holder, history);

  const pane = {
    element,
    symbol,
    tf,
    offsetMs,
    averages: [...averages],
    book: createState(),
    generation: 0,
    source: null,
    cursor: null,
    lastEventId: null,
    pending: [],
    flushTimer: null,
    stream: "connecting", // connecting | open | lost
    barsOk: true,
    events: 0,
    loads: 0,
    lastEventAt: null,
    notice: null, // {code, message} of the last stream notice
    resync: createResync(), // when to reload after `cursor_expired` (resync.js)
    hovered: null,
    history: { loading: false, start: false, pages: 0, lastPrepend: null },
    chart: null,
  };

  pane.chart = createChartAdapter(holder, {
    onHover: (bar, time) => {
      pane.hovered = bar;
      renderLegend(pane, hooks);
      hooks.onHover(pane, time === null ? null : time * 1000 - pane.offsetMs);
    },
    onRange: (range) => {
      if (range !== null && range.from < HISTORY_MARGIN) loadOlder(pane, hooks);
      hooks.onRange(pane);
    },
  });
  return pane;
}

// --- bootstrap and the push stream ----------------------------------------------------------------

export async function load(pane, hooks) {
  const generation = ++pane.generation;
  closeStream(pane);
  pane.pending = [];
  pane.lastEventId = null;
  pane.notice = null;
  pane.history = { loading: false, start: false, pages: 0, lastPrepend: null };
  setStream(pane, hooks, "connecting");
  const query = new URLSearchParams({
    symbol: pane.symbol, tf: pane.tf, limit: String(BARS_LIMIT), include_preview: "true",
  });
  let body;
  try {
    body = await getJson(`/api/bars?${query}`);
  } catch (error) {
    if (generation !== pane.generation) return;
    pane.barsOk = false;
    pane.notice = { code: "bars", message: error.message };
    hooks.onChange(pane);
    setTimeout(() => generation === pane.generation && load(pane, hooks), RETRY_MS);
    return;
  }
  if (generation !== pane.generation) return;
  pane.barsOk = true;
  pane.loads += 1;
  noteLoad(pane.resync);
  loadSnapshot(pane.book, pane.symbol, pane.tf, body.bars);
  if (body.preview) applyUpdates(pane.book, [body.preview]);
  pane.cursor = body.cursor;
  const bars = seriesBars(pane.book, pane.symbol, pane.tf);
  pane.chart.reset(bars, { tf: pane.tf, utcOffsetMs: pane.offsetMs,
    precision: symbolPrecision(pane.symbol) });
  if (body.bars.length < BARS_LIMIT) markStart(pane);
  drawAverages(pane);
  renderLegend(pane, hooks);
  renderHistory(pane);
  hooks.onChange(pane);
  hooks.onLoaded(pane);
  openStream(pane, hooks, generation);
}

function openStream(pane, hooks, generation) {
  const params = new URLSearchParams({ symbols: pane.symbol, tfs: pane.tf });
  const from = pane.lastEventId ?? pane.cursor;
  if (from) params.set("cursor", from);
  const source = new EventSource(`/api/stream?${params}`);
  pane.source = source;
  source.addEventListener("open", () => {
    if (generation !== pane.generation) return;
    pane.notice = null;
    setStream(pane, hooks, "open");
  });
  source.addEventListener("bar", (event) => {
    if (generation !== pane.generation) return;
    pane.lastEventId = event.lastEventId || pane.lastEventId;
    noteUpdate(pane.resync);
    pane.pending.push(JSON.parse(event.data));
    if (pane.flushTimer === null) pane.flushTimer = setTimeout(() => flush(pane, hooks), FLUSH_MS);
  });
  source.addEventListener("error", (event) => {
    if (generation !== pane.generation) return;
    if (typeof event.data === "string") {
      // A notice from the server (`event: error`): the stream itself goes on.
      const notice = JSON.parse(event.data).error ?? { code: "unknown", message: event.data };
      if (notice.code === "cursor_expired") {
        reloadAfterExpired(pane, hooks, generation);
        return;
      }
      pane.notice = notice;
      hooks.onChange(pane);
      return;
    }
    setStream(pane, hooks, "lost");
    if (source.readyState === EventSource.CLOSED) {
      // The browser gave up (e.g. an HTTP error while the server restarts): resume ourselves.
      source.close();
      setTimeout(() => generation === pane.generation && openStream(pane, hooks, generation),
        RETRY_MS);
    }
  });
}

/** Reload now, or, when the stream lost our place again right after a load, a bit later. */
function reloadAfterExpired(pane, hooks, generation) {
  const delayMs = expiredDelayMs(pane.resync);
  if (delayMs === 0) {
    load(pane, hooks);
    return;
  }
  closeStream(pane);
  pane.notice = { code: "resync_wait", message: `cursor expired again right after a reload; ` +
    `reload ${pane.resync.inARow} in a row in ${delayMs} ms`, delayMs, inARow: pane.resync.inARow };
  setStream(pane, hooks, "connecting");
  setTimeout(() => generation === pane.generation && load(pane, hooks), delayMs);
}

export function closeStream(pane) {
  if (pane.source !== null) {
    pane.source.close();
    pane.source = null;
  }
  if (pane.flushTimer !== null) {
    clearTimeout(pane.flushTimer);
    pane.flushTimer = null;
  }
}

function flush(pane, hooks) {
  pane.flushTimer = null;
  const events = pane.pending;
  pane.pending = [];
  const mine = events.filter((e) => e.symbol === pane.symbol && e.tf === pane.tf);
  pane.events += events.length;
  pane.lastEventAt = Date.now();
  const changedKeys = new Set();
  for (const change of applyUpdates(pane.book, mine)) {
    if (change.changed) changedKeys.add(change.event.open_ms);
  }
  if (changedKeys.size > 0) {
    // Draw each changed key once, as the book holds it now, oldest first.
    const bars = [...changedKeys].sort((a, b) => a - b)
      .map((openMs) => getBar(pane.book, pane.symbol, pane.tf, openMs))
      .filter((bar) => bar !== null);
    pane.chart.upsert(bars);
    drawAverages(pane);
    if (pane.hovered === null) renderLegend(pane, hooks);
  }
  hooks.onChange(pane);
}

function setStream(pane, hooks, state) {
  pane.stream = state;
  hooks.onChange(pane);
}

// --- history ------------------------------------------------------------------------------------

/** Fetch the page before the oldest bar drawn and prepend it (module rules). */
export async function loadOlder(pane, hooks) {
  if (pane.history.loading || pane.history.start || pane.loads === 0) return false;
  const firstMs = pane.chart.firstOpenMs();
  if (firstMs === null) return false;
  const generation = pane.generation;
  pane.history.loading = true;
  renderHistory(pane);
  const query = new URLSearchParams({ symbol: pane.symbol, tf: pane.tf, to_ms: String(firstMs),
    limit: String(HISTORY_PAGE) });
  let body;
  try {
    body = await getJson(`/api/bars?${query}`);
  } catch (error) {
    if (generation !== pane.generation) return false;
    pane.history.loading = false;
    if (error.code === "foreign_symbol_range") {
      // Another process of the namespace publishes this symbol: only it can read its store.
      pane.history.start = true;
      pane.notice = { code: "foreign_symbol_range", message: error.message };
    } else {
      pane.notice = { code: "history", message: error.message };
    }
    renderHistory(pane);
    hooks.onChange(pane);
    return false;
  }
  if (generation !== pane.generation) return false;
  pane.history.loading = false;
  pane.history.pages += 1;
  applyUpdates(pane.book, body.bars);
  const older = seriesBars(pane.book, pane.symbol, pane.tf).filter((b) => b.open_ms < firstMs);
  const before = pane.chart.visibleMs();
  pane.chart.prepend(older);
  // What the view showed before and after the prepend (the browser tests check they agree).
  pane.history.lastPrepend = { before, after: pane.chart.visibleMs(), bars: older.length };
  if (body.bars.length < HISTORY_PAGE) markStart(pane);
  drawAverages(pane);
  renderHistory(pane);
  hooks.onChange(pane);
  // Still near the left edge (a wide view, a short page): the next page.
  const range = pane.chart.chart.timeScale().getVisibleLogicalRange();
  if (range !== null && range.from < HISTORY_MARGIN && !pane.history.start) {
    setTimeout(() => loadOlder(pane, hooks), 0);
  }
  return true;
}

/** Load older pages until the bars reach back to `fromMs` (or the start of the data). */
export async function loadBackTo(pane, hooks, fromMs) {
  for (let k = 0; k < 50; k++) {
    const first = pane.chart.firstOpenMs();
    if (first === null || first <= fromMs || pane.history.start) return;
    if (pane.history.loading) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      continue;
    }
    if (!(await loadOlder(pane, hooks))) return;
  }
}

function markStart(pane) {
  pane.history.start = true;
  pane.chart.setStartOfData(true);
}

function renderHistory(pane) {
  const el = pane.element.querySelector(".history-state");
  if (pane.history.loading) {
    el.hidden = false;
    el.textContent = "loading older bars…";
  } else {
    el.hidden = true;
  }
}

// --- moving averages ------------------------------------------------------------------------------

export function drawAverages(pane) {
  const bars = seriesBars(pane.book, pane.symbol, pane.tf);
  for (const [name, average] of Object.entries(AVERAGES)) {
    if (pane.averages.includes(name)) {
      pane.chart.setLine(name, average.compute(bars), { color: average.color, title: "" });
    } else {
      pane.chart.removeLine(name);
    }
  }
}

// --- the legend ---------------------------------------------------------------------------------

function lastBar(pane) {
  const bars = seriesBars(pane.book, pane.symbol, pane.tf);
  return bars.length ? bars[bars.length - 1] : null;
}

function item(legend, label, value, className = "legend-item") {
  const el = document.createElement("span");
  el.className = className;
  if (label) {
    const name = document.createElement("b");
    name.textContent = label;
    el.append(name, ` ${value}`);
  } else {
    el.textContent = value;
  }
  legend.append(el);
  return el;
}

export function renderLegend(pane, hooks) {
  const shown = pane.hovered ?? lastBar(pane);
  const legend = pane.element.querySelector(".legend");
  legend.replaceChildren();
  item(legend, null, `${pane.symbol} · ${pane.tf}`, "legend-title");
  if (shown) {
    const precision = symbolPrecision(pane.symbol);
    for (const [label, key] of [["O", "open"], ["H", "high"], ["L", "low"], ["C", "close"]]) {
      item(legend, label, shown[key].toFixed(precision));
    }
    item(legend, "V", String(shown.volume));
    item(legend, null, shown.complete
      ? `final ${shown.source}${shown.rev > 0 ? ` rev ${shown.rev}` : ""}`
      : "preview", shown.complete ? "badge final" : "badge preview");
    item(legend, null, hooks.formatTime(shown.open_ms), "legend-time");
  }
  for (const name of pane.averages) {
    const average = AVERAGES[name];
    const el = item(legend, null, average.label, "legend-average");
    el.style.color = average.color;
  }
  const countdown = document.createElement("span");
  countdown.className = "countdown";
  legend.append(countdown);
  renderCountdown(pane, Date.now());
}

/** "closes in m:ss" for the bar being built (from the wall clock `nowMs`). */
export function renderCountdown(pane, nowMs) {
  const el = pane.element.querySelector(".countdown");
  if (el === null) return;
  const tfMs = TF_MS[pane.tf];
  // Up to 1h the buckets follow the clock; 4h and 1d follow the trading day: the preview says
  // when its bucket opened.
  const last = lastBar(pane);
  let openMs = null;
  if (tfMs <= TF_MS["1h"]) openMs = bucketOpen(nowMs, tfMs);
  else if (last !== null && !last.complete) openMs = last.open_ms;
  // No bar for three buckets (a closed market, a silent feed): nothing is building.
  const quiet = last === null || last.open_ms < nowMs - 3 * tfMs;
  if (openMs === null || openMs + tfMs <= nowMs || quiet) {
    el.textContent = "";
    return;
  }
  el.textContent = `closes in ${formatCountdown(openMs, tfMs, nowMs)}`;
  el.title = "time left until the current bar closes (wall clock)";
}
