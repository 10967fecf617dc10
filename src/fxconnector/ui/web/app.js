// The chart page: the composition of the panes (pane.js: one chart each, with its bootstrap,
// stream, history and legend), the header pickers, the 1/2/4-chart layout with synced crosshair
// and time scale, the view in the location hash (view_hash.js), the keyboard, the watchlist
// (watchlist.js, from /api/ticks), the trades overlay (exec_overlay.js), the status panel (status_panel.js, from /api/status and
// /api/status?symbol=) and the lost-connection banner.
//
// Rules:
// - The header pickers act on the active pane (the first one unless another was clicked).
// - Panes are made in one place, `makePane`; overlays that attach to a chart hook in there.
// - Sync: only the pane under the pointer (or the one being touched) drives the others'
//   crosshair and visible span, so a synced pane never echoes back into a loop. Panes of other
//   timeframes follow by time.
// - The hash holds symbol, tf, time mode, layout, the other charts and the visible span. A change
//   of symbol, timeframe, layout or averages is a new history entry (Back undoes it); scrolling
//   replaces the entry. Editing the hash or Back/Forward applies it.
// - Operations detail (stream counts, ids, raw server errors) goes to the status panel in
//   words, never into the header; the header keeps one pill: live, connecting or disconnected.
// - Server data reaches the DOM as text only (textContent), never as HTML.
// - `window.__fx` is a small read-only debug hook (debug_hook.js: the browser tests read the
//   chart's data through it).

import { localOffsetMs, symbolPrecision } from "./chart_adapter.js";
import { installDebugHook } from "./debug_hook.js";
import { attachExecOverlay } from "./exec_overlay.js";
import { bindKeys } from "./keys.js";
import { seriesBars } from "./merge.js";
import { formatAge, formatTime as formatTimeIn, offsetLabel } from "./format.js";
import {
  closeStream, createPane, drawAverages, getJson, load, loadBackTo, renderCountdown, renderLegend,
} from "./pane.js";
import { describeNotice, renderConnection, renderPanel } from "./status_panel.js";
import { attachSmcOverlay } from "./smc_overlay.js";
import { defaultChart, formatView, parseView } from "./view_hash.js";
import { renderWatchlist } from "./watchlist.js";

const STATUS_PERIOD_MS = 3000;
const TICKS_PERIOD_MS = 1000;
const RETRY_MS = 1500;
const HASH_DELAY_MS = 400; // the hash follows scrolling once it settles
const SIDE_KEY = "fxconnector.side"; // the side panel's open/closed sections, remembered

const $ = (id) => document.getElementById(id);

const app = {
  served: null,
  panes: [],
  active: 0,
  layout: 1,
  utc: true,
  offsetMs: 0,
  averages: [],
  statusOk: null, // null: not asked yet
  lostSince: null,
  status: null,
  symbolStatus: null, // the active symbol's detail (status_symbol_v1)
  ticks: new Map(),
  driver: null, // the pane under the pointer: it drives the synced ones
  hashTimer: null,
  lastHash: null,
};

const formatTime = (ms, options) => formatTimeIn(ms, app.offsetMs, app.utc, options);
const activePane = () => app.panes[app.active] ?? app.panes[0];

// --- panes ----------------------------------------------------------------------------------------

const hooks = {
  formatTime,
  onHover(pane, openMs) {
    if (pane !== app.driver) return;
    for (const other of app.panes) if (other !== pane) other.chart.setCrosshair(openMs);
  },
  onRange(pane) {
    renderRealtime();
    if (pane !== app.driver) return;
    const span = pane.chart.visibleMs();
    if (span !== null) for (const other of app.panes) if (other !== pane) other.chart.setVisibleMs(span);
    scheduleHash();
  },
  onLoaded(pane) {
    // A pane that (re)loads takes the first pane's span; the first pane gives its own to the
    // rest. After a frame: a chart that was just created has no width before its first layout.
    requestAnimationFrame(() => {
      const leader = app.panes[0];
      if (app.panes.length < 2 || leader.loads === 0) return;
      const span = leader.chart.visibleMs();
      if (span === null) return;
      for (const other of pane === leader ? app.panes.slice(1) : [pane]) {
        if (other.loads > 0) other.chart.setVisibleMs(span);
      }
    });
  },
  onChange(pane) {
    renderStreamState();
    updateBanner();
    if (pane === activePane()) renderConnectionPanel();
  },
};

/** A new pane in a new grid cell: THE place a chart pane is created. */
function makePane(index, { symbol, tf }) {
  const element = document.createElement("div");
  element.dataset.index = String(index);
  $("charts").append(element);
  const pane = createPane(element, { symbol, tf, offsetMs: app.offsetMs, averages: app.averages },
    hooks);
  const drive = () => { app.driver = pane; };
  element.addEventListener("pointerenter", drive);
  element.addEventListener("pointerdown", () => {
    drive();
    setActive(app.panes.indexOf(pane));
  });
  element.addEventListener("pointerleave", () => {
    if (app.driver !== pane) return;
    for (const other of app.panes) if (other !== pane) other.chart.setCrosshair(null);
  });
  return pane;
}

function setLayout(layout, charts = null) {
  const wanted = charts ?? Array.from({ length: layout }, (_, k) =>
    app.panes[k] ? { symbol: app.panes[k].symbol, tf: app.panes[k].tf }
      : defaultChart(app.panes[0], k, app.served));
  while (app.panes.length > layout) {
    const pane = app.panes.pop();
    closeStream(pane);
    pane.chart.destroy();
    pane.element.remove();
  }
  for (let k = 0; k < layout; k++) {
    if (app.panes[k] === undefined) {
      app.panes[k] = makePane(k, wanted[k]);
      load(app.panes[k], hooks);
    } else if (app.panes[k].symbol !== wanted[k].symbol || app.panes[k].tf !== wanted[k].tf) {
      showSeries(app.panes[k], wanted[k].symbol, wanted[k].tf);
    }
  }
  app.layout = layout;
  $("charts").className = `layout-${layout}`;
  $("layout").value = String(layout);
  if (app.active >= layout) setActive(0);
  else setActive(app.active);
}

function showSeries(pane, symbol, tf) {
  pane.symbol = symbol;
  pane.tf = tf;
  pane.hovered = null;
  load(pane, hooks);
}

function setActive(index) {
  app.active = Math.max(index, 0);
  app.panes.forEach((pane, k) => pane.element.classList.toggle("active", k === app.active));
  const pane = activePane();
  $("symbol").value = pane.symbol;
  $("tf").value = pane.tf;
  renderConnectionPanel();
  renderWatch();
}

function chooseSeries({ symbol = activePane().symbol, tf = activePane().tf }) {
  const pane = activePane();
  if (symbol === pane.symbol && tf === pane.tf) return;
  const symbolChanged = symbol !== pane.symbol;
  showSeries(pane, symbol, tf);
  $("symbol").value = symbol;
  $("tf").value = tf;
  writeHash({ push: true, range: false });
  if (symbolChanged) {
    renderStatus();
    loadSymbolStatus();
    renderWatch();
  }
}

function setAverages(names, { write = true } = {}) {
  app.averages = names;
  $("averages").value = names.join(",");
  for (const pane of app.panes) {
    pane.averages = [...names];
    drawAverages(pane);
    renderLegend(pane, hooks);
  }
  if (write) writeHash({ push: true });
}

// --- the hash ---------------------------------------------------------------------------------------

function currentView(withRange) {
  const span = withRange ? app.panes[0]?.chart.visibleMs() ?? null : null;
  return {
    charts: app.panes.map((p) => ({ symbol: p.symbol, tf: p.tf })),
    layout: app.layout,
    utc: app.utc,
    range: span,
    averages: app.averages,
  };
}

function writeHash({ push = false, range = true } = {}) {
  const text = formatView(currentView(range && !app.panes[0]?.chart.atRealtime()));
  app.lastHash = text;
  if (location.hash.slice(1) === text) return;
  if (push) history.pushState(null, "", `#${text}`);
  else history.replaceState(null, "", `#${text}`);
}

function scheduleHash() {
  if (app.hashTimer !== null) clearTimeout(app.hashTimer);
  app.hashTimer = setTimeout(() => {
    app.hashTimer = null;
    writeHash();
  }, HASH_DELAY_MS);
}

/** Apply the location's hash (Back/Forward, an edited hash). */
async function applyHash() {
  const text = location.hash.slice(1);
  if (text === app.lastHash) return;
  app.lastHash = text;
  const view = parseView(text, app.served);
  if (view.utc !== app.utc) setTimeMode(view.utc, { write: false });
  setLayout(view.layout, view.charts);
  if (view.averages.join(",") !== app.averages.join(",")) {
    setAverages(view.averages, { write: false });
  }
  renderStatus();
  loadSymbolStatus();
  if (view.range !== null) await showRange(view.range);
  else for (const pane of app.panes) pane.chart.scrollToRealtime();
}

/** Show the span {from, to} (UTC ms) on every pane, loading older bars first when needed. */
async function showRange(range) {
  await Promise.all(app.panes.map(async (pane) => {
    await waitLoaded(pane);
    await loadBackTo(pane, hooks, range.from);
    pane.chart.setVisibleMs(range);
  }));
}

async function waitLoaded(pane) {
  const generation = pane.generation;
  while (pane.loads === 0 || pane.generation !== generation || pane.stream === "connecting") {
    if (pane.loads > 0 && pane.generation === generation) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// --- the banner, the stream pill, the connection panel ---------------------------------------------

function streamState() {
  if (app.panes.some((p) => p.stream === "lost")) return "lost";
  if (app.panes.every((p) => p.stream === "open")) return "open";
  return "connecting";
}

function updateBanner() {
  const lost = streamState() === "lost" || app.statusOk === false ||
    app.panes.some((p) => !p.barsOk);
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

function renderStreamState() {
  const state = streamState();
  const el = $("stream-state");
  const labels = { open: "live", connecting: "connecting…", lost: "disconnected" };
  el.textContent = labels[state];
  el.className = `pill ${state}`;
  const notice = app.panes.map((p) => p.notice).find((n) => n) ?? null;
  el.title = describeNotice(notice) ?? "the live stream of bar updates";
}

function renderConnectionPanel() {
  const pane = activePane();
  if (!pane) return;
  renderConnection($("connection"), {
    stream: pane.stream, events: pane.events, lastEventAt: pane.lastEventAt,
    lastEventId: pane.lastEventId, cursor: pane.cursor, notice: pane.notice, nowMs: Date.now(),
  }, { formatAge });
}

function renderRealtime() {
  const away = app.panes.some((p) => !p.chart.atRealtime());
  $("realtime").classList.toggle("away", away);
}

// --- the status panel ----------------------------------------------------------------------------

// The summary (status_v2) counts every symbol; the active symbol's detail (status_symbol_v1)
// comes from /api/status?symbol=.
async function pollStatus() {
  const symbol = activePane().symbol;
  try {
    const [summary, detail] = await Promise.all([
      getJson("/api/status"),
      getJson(`/api/status?symbol=${encodeURIComponent(symbol)}`),
    ]);
    app.status = summary;
    if (symbol === activePane().symbol) app.symbolStatus = detail;
    app.statusOk = true;
  } catch {
    app.statusOk = false;
  }
  renderStatus();
  renderConnectionPanel();
  updateBanner();
  setTimeout(pollStatus, STATUS_PERIOD_MS);
}

/** The detail of a newly chosen symbol, at once (the poll refreshes it afterwards). */
async function loadSymbolStatus() {
  const symbol = activePane().symbol;
  try {
    const detail = await getJson(`/api/status?symbol=${encodeURIComponent(symbol)}`);
    if (symbol === activePane().symbol) app.symbolStatus = detail;
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
  const pane = activePane();
  renderPanel($("status-body"), s, app.symbolStatus, {
    symbol: pane.symbol, tf: pane.tf, formatTime, formatAge,
  });
}

// --- the watchlist --------------------------------------------------------------------------------

async function pollTicks() {
  try {
    const body = await getJson("/api/ticks");
    app.ticks = new Map(body.ticks.map((tick) => [tick.symbol, tick]));
  } catch {
    // the status poll reports a lost server; the rows keep their last prices
  }
  renderWatch();
  setTimeout(pollTicks, TICKS_PERIOD_MS);
}

function renderWatch() {
  if (app.served === null) return;
  renderWatchlist($("watch-rows"), app.served.symbols, app.ticks, {
    active: activePane()?.symbol, nowMs: Date.now(), onPick: (symbol) => chooseSeries({ symbol }),
  });
}

// --- pickers and keys ------------------------------------------------------------------------------

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

function setTimeMode(utc, { write = true } = {}) {
  app.utc = utc;
  app.offsetMs = utc ? 0 : localOffsetMs();
  for (const pane of app.panes) {
    pane.offsetMs = app.offsetMs;
    pane.chart.setOffset(app.offsetMs);
    drawAverages(pane);
    renderLegend(pane, hooks);
  }
  renderTimeMode();
  renderStatus();
  if (write) writeHash({ push: true });
}

function step(values, current, by) {
  const at = values.indexOf(current);
  return values[(at + by + values.length) % values.length];
}

/** What each key does (keys.js maps the keys). */
const keyActions = {
  symbol: (by) => chooseSeries({ symbol: step(app.served.symbols, activePane().symbol, by) }),
  timeframe: (by) => chooseSeries({ tf: step(app.served.timeframes, activePane().tf, by) }),
  realtime: () => goRealtime(),
  layout: (by) => {
    setLayout(step([1, 2, 4], app.layout, by));
    writeHash({ push: true, range: false });
  },
  averages: (by) => {
    const choices = [...$("averages").options].map((o) => o.value);
    setAverages(step(choices, app.averages.join(","), by).split(",").filter(Boolean));
  },
};

function goRealtime() {
  for (const pane of app.panes) pane.chart.scrollToRealtime();
  writeHash({ range: false });
}

function rememberSide() {
  let saved = {};
  try {
    saved = JSON.parse(localStorage.getItem(SIDE_KEY) ?? "{}");
  } catch {
    saved = {};
  }
  for (const id of ["watch", "status"]) {
    const details = $(id);
    if (typeof saved[id] === "boolean") details.open = saved[id];
    details.addEventListener("toggle", () => {
      saved[id] = details.open;
      localStorage.setItem(SIDE_KEY, JSON.stringify(saved));
    });
  }
}

async function start() {
  if (globalThis.LightweightCharts === undefined) {
    $("charts").textContent = "lightweight-charts did not load (vendor/lightweight-charts.standalone.production.js)";
    throw new Error("lightweight-charts is not loaded");
  }
  rememberSide();
  for (;;) {
    try {
      app.served = await getJson("/api/symbols");
      break;
    } catch {
      $("banner").hidden = false;
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
  }
  const view = parseView(location.hash, app.served);
  app.utc = view.utc;
  app.offsetMs = app.utc ? 0 : localOffsetMs();
  app.averages = view.averages;
  $("averages").value = view.averages.join(",");
  fillSelect($("symbol"), app.served.symbols, view.charts[0].symbol);
  fillSelect($("tf"), app.served.timeframes, view.charts[0].tf);
  renderTimeMode();
  app.panes[0] = makePane(0, view.charts[0]);
  const first = load(app.panes[0], hooks);
  setLayout(view.layout, view.charts);
  app.lastHash = location.hash.slice(1);
  $("symbol").addEventListener("change", (event) => chooseSeries({ symbol: event.target.value }));
  $("tf").addEventListener("change", (event) => chooseSeries({ tf: event.target.value }));
  $("layout").addEventListener("change", (event) => {
    setLayout(Number(event.target.value));
    writeHash({ push: true, range: false });
  });
  $("averages").addEventListener("change", (event) =>
    setAverages(event.target.value.split(",").filter(Boolean)));
  $("tz").addEventListener("click", () => setTimeMode(!app.utc));
  $("realtime").addEventListener("click", goRealtime);
  bindKeys(document, keyActions);
  window.addEventListener("hashchange", applyHash);
  window.addEventListener("popstate", applyHash);
  setInterval(() => {
    if (app.lostSince !== null) updateBanner();
    const now = Date.now();
    for (const pane of app.panes) renderCountdown(pane, now);
    renderConnectionPanel();
  }, 1000);
  // SMC hints (smc_overlay.js) are drawn on the first chart, which every layout keeps.
  attachSmcOverlay(app.panes[0].chart, () => {
    const pane = app.panes[0];
    const last = seriesBars(pane.book, pane.symbol, pane.tf).findLast((bar) => bar.complete);
    return { symbol: pane.symbol, tf: pane.tf, offsetMs: pane.offsetMs,
      edgeMs: last?.close_ms ?? null };
  });
  // Fills and open positions (exec_overlay.js) on the first chart showing their symbol.
  attachExecOverlay(() => app.panes.map((pane) => ({
    symbol: pane.symbol, tf: pane.tf, chart: pane.chart, offsetMs: pane.offsetMs,
    precision: symbolPrecision(pane.symbol), bars: () => seriesBars(pane.book, pane.symbol, pane.tf),
    ready: pane.loads > 0 && pane.stream !== "connecting",
  })));
  pollStatus();
  pollTicks();
  await first;
  if (view.range !== null) await showRange(view.range);
  writeHash({ range: view.range !== null });
}

installDebugHook({ app, activePane, streamState });

start();
