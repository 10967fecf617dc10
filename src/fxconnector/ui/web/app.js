// The chart page: pickers, bootstrap from /api/bars, live from the SSE push stream, the merge
// policy (merge.js), the status panel (status_panel.js: the summary and the shown symbol's detail,
// polled from /api/status and /api/status?symbol=) and the lost-connection banner.
//
// Rules:
// - Every bar drawn comes out of the merge book (final > preview, NoMix, revisions by rev), the
//   same policy as the Python BarBook; the chart (chart_adapter.js) only draws merged bars.
// - Bootstrap: /api/bars?include_preview=true gives the finals, the current preview and the
//   stream cursor they reflect; the stream is read from that cursor, so nothing is missed and
//   nothing is doubled. On a dropped connection EventSource resumes with Last-Event-ID; when it
//   gives up, we reconnect ourselves with `cursor=<last event id>` (the same thing). A
//   `cursor_expired` notice (the server restarted, or the trimmed stream lost our place) means
//   bootstrap again: the snapshot replaces the finals and keeps only newer previews.
// - Switching symbol or timeframe bumps `generation`: callbacks of the old stream or fetches
//   see a stale generation and do nothing.
// - Server data reaches the DOM as text only (textContent), never as HTML.
// - `window.__fx` is a small read-only debug hook (the browser tests read the chart's data).

import { createChartAdapter, localOffsetMs } from "./chart_adapter.js";
import { applyUpdates, createState, getBar, loadSnapshot, seriesBars } from "./merge.js";
import { renderPanel } from "./status_panel.js";
import { attachSmcOverlay } from "./smc_overlay.js";

const BARS_LIMIT = 1500;
const STATUS_PERIOD_MS = 3000;
const FETCH_TIMEOUT_MS = 4000;
const RETRY_MS = 1500;
const FLUSH_MS = 40; // SSE events are merged and drawn in small batches

const $ = (id) => document.getElementById(id);

const app = {
  symbol: null,
  tf: null,
  utc: true,
  offsetMs: 0,
  book: createState(),
  generation: 0,
  source: null,
  cursor: null,
  lastEventId: null,
  pending: [],
  flushTimer: null,
  stream: "connecting", // connecting | open | lost
  statusOk: null, // null: not asked yet
  barsOk: true,
  lostSince: null,
  events: 0,
  loads: 0,
  lastEventAt: null,
  status: null,
  symbolStatus: null, // the shown symbol's detail (status_symbol_v1)
  streamNotice: null,
  hovered: null,
};

let chart = null;

// --- time -------------------------------------------------------------------------------------

function pad(n, width = 2) {
  return String(n).padStart(width, "0");
}

function offsetLabel(offsetMs) {
  const minutes = Math.round(offsetMs / 60_000);
  const sign = minutes < 0 ? "-" : "+";
  const abs = Math.abs(minutes);
  return `UTC${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

/** A UTC epoch-ms moment in the chosen time mode (the chart's own shift). */
function formatTime(ms, { seconds = false } = {}) {
  if (ms === null || ms === undefined) return "—";
  const d = new Date(ms + app.offsetMs);
  const text = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}` + (seconds ? `:${pad(d.getUTCSeconds())}` : "");
  return `${text} ${app.utc ? "UTC" : "local"}`;
}

function formatAge(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "—";
  const s = Math.max(ms, 0) / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  return `${(s / 86_400).toFixed(1)} d`;
}

// --- fetch ------------------------------------------------------------------------------------

async function getJson(path) {
  const response = await fetch(path, {
    cache: "no-store",
    signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
  });
  const body = await response.json();
  if (!response.ok) {
    const error = body?.error;
    throw new Error(error ? `${error.code}: ${error.message}` : `HTTP ${response.status}`);
  }
  return body;
}

// --- location hash: #symbol=EURUSD&tf=1m&tz=utc -------------------------------------------------

function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  return { symbol: params.get("symbol"), tf: params.get("tf"), tz: params.get("tz") };
}

function writeHash() {
  const params = new URLSearchParams({ symbol: app.symbol, tf: app.tf, tz: app.utc ? "utc" : "local" });
  history.replaceState(null, "", `#${params}`);
}

// --- bootstrap and the push stream ----------------------------------------------------------------

async function load() {
  const generation = ++app.generation;
  closeStream();
  app.pending = [];
  app.lastEventId = null;
  app.streamNotice = null;
  setStream("connecting");
  const query = new URLSearchParams({
    symbol: app.symbol, tf: app.tf, limit: String(BARS_LIMIT), include_preview: "true",
  });
  let body;
  try {
    body = await getJson(`/api/bars?${query}`);
  } catch (error) {
    if (generation !== app.generation) return;
    app.barsOk = false;
    app.streamNotice = `bars: ${error.message}`;
    updateBanner();
    setTimeout(() => generation === app.generation && load(), RETRY_MS);
    return;
  }
  if (generation !== app.generation) return;
  app.barsOk = true;
  app.loads += 1;
  loadSnapshot(app.book, app.symbol, app.tf, body.bars);
  if (body.preview) applyUpdates(app.book, [body.preview]);
  app.cursor = body.cursor;
  chart.reset(seriesBars(app.book, app.symbol, app.tf), { tf: app.tf, utcOffsetMs: app.offsetMs });
  renderLegend();
  updateBanner();
  openStream(generation);
}

function openStream(generation) {
  const params = new URLSearchParams({ symbols: app.symbol, tfs: app.tf });
  const from = app.lastEventId ?? app.cursor;
  if (from) params.set("cursor", from);
  const source = new EventSource(`/api/stream?${params}`);
  app.source = source;
  source.addEventListener("open", () => {
    if (generation !== app.generation) return;
    app.streamNotice = null;
    setStream("open");
  });
  source.addEventListener("bar", (event) => {
    if (generation !== app.generation) return;
    app.lastEventId = event.lastEventId || app.lastEventId;
    app.pending.push(JSON.parse(event.data));
    if (app.flushTimer === null) app.flushTimer = setTimeout(flush, FLUSH_MS);
  });
  source.addEventListener("error", (event) => {
    if (generation !== app.generation) return;
    if (typeof event.data === "string") {
      // A notice from the server (`event: error`): the stream itself goes on.
      const notice = JSON.parse(event.data).error ?? { code: "unknown", message: event.data };
      if (notice.code === "cursor_expired") {
        load();
        return;
      }
      app.streamNotice = `${notice.code}: ${notice.message}`;
      renderStreamState();
      return;
    }
    setStream("lost");
    if (source.readyState === EventSource.CLOSED) {
      // The browser gave up (e.g. an HTTP error while the server restarts): resume ourselves.
      source.close();
      setTimeout(() => generation === app.generation && openStream(generation), RETRY_MS);
    }
  });
}

function closeStream() {
  if (app.source !== null) {
    app.source.close();
    app.source = null;
  }
  if (app.flushTimer !== null) {
    clearTimeout(app.flushTimer);
    app.flushTimer = null;
  }
}

function flush() {
  app.flushTimer = null;
  const events = app.pending;
  app.pending = [];
  const mine = events.filter((e) => e.symbol === app.symbol && e.tf === app.tf);
  app.events += events.length;
  app.lastEventAt = Date.now();
  const changedKeys = new Set();
  for (const change of applyUpdates(app.book, mine)) {
    if (change.changed) changedKeys.add(change.event.open_ms);
  }
  if (changedKeys.size > 0) {
    // Draw each changed key once, as the book holds it now, oldest first.
    const bars = [...changedKeys].sort((a, b) => a - b)
      .map((openMs) => getBar(app.book, app.symbol, app.tf, openMs))
      .filter((bar) => bar !== null);
    chart.upsert(bars);
    if (app.hovered === null) renderLegend();
  }
  renderStreamState();
}

function setStream(state) {
  app.stream = state;
  renderStreamState();
  updateBanner();
}

// --- the banner ---------------------------------------------------------------------------------

function updateBanner() {
  const lost = app.stream === "lost" || app.statusOk === false || !app.barsOk;
  if (lost && app.lostSince === null) app.lostSince = Date.now();
  if (!lost) app.lostSince = null;
  const banner = $("banner");
  banner.hidden = !lost;
  if (lost) {
    const lostFor = Math.floor((Date.now() - app.lostSince) / 1000);
    $("banner-text").textContent =
      `Connection to the server lost ${lostFor} s ago — retrying. ` +
      "The chart shows the last data received.";
  }
  document.body.classList.toggle("offline", lost);
}

// --- the legend ---------------------------------------------------------------------------------

function renderLegend(bar = undefined) {
  const shown = bar ?? app.hovered ?? lastBar();
  const legend = $("legend");
  legend.replaceChildren();
  const title = document.createElement("span");
  title.className = "legend-title";
  title.textContent = `${app.symbol} · ${app.tf}`;
  legend.append(title);
  if (shown) {
    const precision = decimals(shown);
    const parts = [
      ["O", shown.open.toFixed(precision)],
      ["H", shown.high.toFixed(precision)],
      ["L", shown.low.toFixed(precision)],
      ["C", shown.close.toFixed(precision)],
      ["V", String(shown.volume)],
    ];
    for (const [label, value] of parts) {
      const item = document.createElement("span");
      item.className = "legend-item";
      const name = document.createElement("b");
      name.textContent = label;
      item.append(name, ` ${value}`);
      legend.append(item);
    }
    const kind = document.createElement("span");
    kind.className = shown.complete ? "badge final" : "badge preview";
    kind.textContent = shown.complete
      ? `final ${shown.source}${shown.rev > 0 ? ` rev ${shown.rev}` : ""}`
      : "preview";
    const when = document.createElement("span");
    when.className = "legend-time";
    when.textContent = formatTime(shown.open_ms);
    legend.append(kind, when);
  }
}

function lastBar() {
  const bars = seriesBars(app.book, app.symbol, app.tf);
  return bars.length ? bars[bars.length - 1] : null;
}

function decimals(bar) {
  let most = 2;
  for (const price of [bar.open, bar.high, bar.low, bar.close]) {
    const text = String(price);
    const dot = text.indexOf(".");
    if (dot >= 0) most = Math.max(most, text.length - dot - 1);
  }
  return Math.min(most, 6);
}

// --- the status panel ----------------------------------------------------------------------------

// The summary (status_v2) counts every symbol; the shown symbol's detail (status_symbol_v1)
// comes from /api/status?symbol=.
async function pollStatus() {
  const symbol = app.symbol;
  try {
    const [summary, detail] = await Promise.all([
      getJson("/api/status"),
      getJson(`/api/status?symbol=${encodeURIComponent(symbol)}`),
    ]);
    app.status = summary;
    if (symbol === app.symbol) app.symbolStatus = detail;
    app.statusOk = true;
  } catch {
    app.statusOk = false;
  }
  renderStatus();
  updateBanner();
  setTimeout(pollStatus, STATUS_PERIOD_MS);
}

/** The detail of a newly chosen symbol, at once (the poll refreshes it afterwards). */
async function loadSymbolStatus() {
  const symbol = app.symbol;
  try {
    const detail = await getJson(`/api/status?symbol=${encodeURIComponent(symbol)}`);
    if (symbol === app.symbol) app.symbolStatus = detail;
  } catch {
    // the poll says so (statusOk) on its next turn
  }
  renderStatus();
}

function renderStatus() {
  const s = app.status;
  const stale = app.statusOk === false;
  $("status-updated").textContent = stale
    ? `unavailable — last known${s ? ` as of ${formatTime(s.ts, { seconds: true })}` : ": none"}`
    : s ? `as of ${formatTime(s.ts, { seconds: true })}` : "loading…";
  $("status-updated").className = stale ? "bad" : "";
  $("status-body").classList.toggle("stale", stale);
  if (!s) return;
  renderPanel($("status-body"), s, app.symbolStatus, {
    symbol: app.symbol,
    tf: app.tf,
    formatTime,
    formatAge,
  });
}

function renderStreamState() {
  const el = $("stream-state");
  const labels = { open: "live", connecting: "connecting…", lost: "disconnected" };
  el.textContent = labels[app.stream];
  el.className = `pill ${app.stream}`;
  const details = [
    `events ${app.events}`,
    app.lastEventId ? `last id ${app.lastEventId}` : `cursor ${app.cursor ?? "none"}`,
  ];
  if (app.streamNotice) details.push(app.streamNotice);
  $("stream-detail").textContent = details.join(" · ");
}

// --- pickers ------------------------------------------------------------------------------------

function fillSelect(select, values, chosen) {
  select.replaceChildren(...values.map((value) => {
    const option = document.createElement("option");
    option.value = value;
    option.textContent = value;
    return option;
  }));
  select.value = chosen;
}

function renderTimeMode() {
  const button = $("tz");
  button.textContent = app.utc ? "UTC" : `Local (${offsetLabel(app.offsetMs)})`;
  button.setAttribute("aria-pressed", String(!app.utc));
  button.title = app.utc
    ? "Times in UTC; click for your local time"
    : "Times shifted by your current UTC offset; click for UTC";
}

function setTimeMode(utc) {
  app.utc = utc;
  app.offsetMs = utc ? 0 : localOffsetMs();
  chart.setOffset(app.offsetMs);
  renderTimeMode();
  renderLegend();
  renderStatus();
  writeHash();
}

async function start() {
  try {
    chart = createChartAdapter($("chart"), {
      onHover: (bar) => {
        app.hovered = bar;
        renderLegend();
      },
    });
  } catch (error) {
    $("chart").textContent = error.message;
    throw error;
  }
  let served;
  for (;;) {
    try {
      served = await getJson("/api/symbols");
      app.barsOk = true;
      break;
    } catch {
      app.barsOk = false;
      updateBanner();
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
  }
  const wanted = readHash();
  app.symbol = served.symbols.includes(wanted.symbol) ? wanted.symbol : served.symbols[0];
  app.tf = served.timeframes.includes(wanted.tf) ? wanted.tf : served.timeframes[0];
  app.utc = wanted.tz !== "local";
  app.offsetMs = app.utc ? 0 : localOffsetMs();
  fillSelect($("symbol"), served.symbols, app.symbol);
  fillSelect($("tf"), served.timeframes, app.tf);
  renderTimeMode();
  writeHash();
  $("symbol").addEventListener("change", (event) => {
    app.symbol = event.target.value;
    writeHash();
    load();
    renderStatus();
    loadSymbolStatus();
  });
  $("tf").addEventListener("change", (event) => {
    app.tf = event.target.value;
    writeHash();
    load();
    renderStatus();
  });
  $("tz").addEventListener("click", () => setTimeMode(!app.utc));
  attachSmcOverlay(chart, () => ({ symbol: app.symbol, tf: app.tf, offsetMs: app.offsetMs,
    edgeMs: seriesBars(app.book, app.symbol, app.tf).findLast((b) => b.complete)?.close_ms ?? null }));
  setInterval(() => app.lostSince !== null && updateBanner(), 1000);
  pollStatus();
  await load();
}

window.__fx = Object.freeze({
  /** The chart's candle data as the library holds it (bars only: no whitespace points). */
  bars: () => (chart ? chart.candles() : []),
  /** The chart's volume data. */
  volumes: () => (chart ? chart.volumes() : []),
  /** The markers drawn (long gaps, revisions). */
  markers: () => (chart ? chart.markers() : []),
  /** The merged bars of the shown series (ohlcv_event_v1 objects). */
  book: () => (app.symbol ? seriesBars(app.book, app.symbol, app.tf).map((b) => ({ ...b })) : []),
  /** The page's state in short. */
  state: () => ({
    symbol: app.symbol, tf: app.tf, utc: app.utc, offsetMs: app.offsetMs, stream: app.stream,
    statusOk: app.statusOk, lost: app.lostSince !== null, lastEventId: app.lastEventId,
    cursor: app.cursor, events: app.events, loads: app.loads, generation: app.generation,
    visibleRange: chart ? chart.visibleRange() : null,
    visibleTimes: chart ? chart.visibleTimes() : null,
  }),
  /** The time scale's logical index of a chart time (gaps' empty slots have one), or null. */
  indexOf: (time) => (chart ? chart.indexOf(time) : null),
});

start();
