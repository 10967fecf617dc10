// The execution overlay: the paper/broker fills of `fxconnector exec` as series markers and its
// open positions as price lines, on the chart (lightweight-charts' own API: series markers and
// price lines, drawn through chart_adapter.js).
//
// Rules:
// - Read-only: the data comes from the HTTP API's read routes, polled: `/api/fills` (the fills
//   of the execution events stream, then only those after the answer's `seq`; a `seq` that went
//   back means a new journal: read again from scratch), `/api/positions` and `/api/ticks` (the
//   mark for the unrealised P&L). Nothing here writes: intents go only through the exec
//   process's control socket.
// - A fill is drawn on the bar that holds its time for the chart's timeframe, by the core's
//   bucket geometry (core/buckets.py): up to 1h the buckets align to the UTC epoch; 4h and 1d
//   align to the trading day (17:00 New York), which the page cannot compute, so there the fill
//   goes on the drawn bar whose [open_ms, close_ms] holds it. A fill whose bar is not drawn yet
//   waits for it (the library would put it on the nearest bar: a wrong bar is worse than none).
// - A marker is an arrow at the fill price (up below it for a buy, down above it for a sell),
//   labelled with side, units and price. An open position (units != 0) is a dashed price line
//   at its average price, labelled with trader, direction, units and unrealised P&L in the
//   quote currency at the current bid (long) or ask (short); a flat position has no line.
// - Where: each symbol's fills and positions go on the first chart of the layout that shows the
//   symbol, once it has loaded it (while a chart loads a series it may still show the previous
//   one: it shows no trades then). A toggle ("Trades") next to the charts hides and shows them.
// - `window.__fxExec` is the test hook (what is known, what each chart has drawn, as the
//   library holds it).
//
// The helpers above `attachExecOverlay` are pure (no DOM, no library), tested by node.

import { TF_MS } from "./timeline.js";

export const EXEC_COLORS = Object.freeze({ buy: "#2962ff", sell: "#ff6d00",
  long: "#2962ff", short: "#ff6d00" });
const SESSION_ALIGNED = new Set(["4h", "1d"]);

/**
 * open_ms of the `tf` bar that holds a fill at `fillMs`, or null when it cannot be told yet.
 * `bars`: the chart's merged bars, ascending (needed only for the session-aligned 4h and 1d).
 */
export function fillBarOpen(fillMs, tf, bars = []) {
  const tfMs = TF_MS[tf];
  if (tfMs === undefined || !Number.isFinite(fillMs)) return null;
  if (!SESSION_ALIGNED.has(tf)) return fillMs - (((fillMs % tfMs) + tfMs) % tfMs);
  let lo = 0;
  let hi = bars.length - 1;
  while (lo <= hi) { // the last bar opening at or before the fill
    const mid = (lo + hi) >> 1;
    if (bars[mid].open_ms <= fillMs) lo = mid + 1;
    else hi = mid - 1;
  }
  const bar = hi >= 0 ? bars[hi] : null;
  return bar !== null && fillMs <= bar.close_ms ? bar.open_ms : null;
}

/** "1,000" (units with thousands separators, no sign). */
export function formatUnits(units) {
  return Math.abs(units).toLocaleString("en-US");
}

/** The quote currency of an FX pair ("USD" of "EURUSD"), or "" for another symbol. */
export function quoteCurrency(symbol) {
  return /^[A-Z]{6}$/.test(symbol) ? symbol.slice(3) : "";
}

/**
 * The markers of `fills` (fill events of one symbol) on a `tf` chart holding `bars`: those
 * whose bar is drawn, [{openMs, id, position, price, shape, color, text}], by time.
 */
export function fillMarkers(fills, tf, bars, precision) {
  const drawn = new Set(bars.map((b) => b.open_ms));
  const out = [];
  for (const fill of fills) {
    const openMs = fillBarOpen(fill.ts, tf, bars);
    if (openMs === null || !drawn.has(openMs)) continue;
    const buy = fill.side === "buy";
    out.push({
      openMs,
      id: `fill:${fill.intent_id}:${fill.fill_id}`,
      position: buy ? "atPriceBottom" : "atPriceTop",
      price: fill.price,
      shape: buy ? "arrowUp" : "arrowDown",
      color: buy ? EXEC_COLORS.buy : EXEC_COLORS.sell,
      text: `${buy ? "B" : "S"} ${formatUnits(fill.units)} @ ${fill.price.toFixed(precision)}`,
    });
  }
  out.sort((a, b) => a.openMs - b.openMs || (a.id < b.id ? -1 : 1));
  return out;
}

/** Unrealised P&L of `position` at `tick` (bid for a long, ask for a short), or null. */
export function unrealisedPnl(position, tick) {
  if (!tick || position.avg_price === null || position.units === 0) return null;
  const mark = position.units > 0 ? tick.bid : tick.ask;
  return position.units * (mark - position.avg_price);
}

/**
 * The price line of an open position ({id, price, color, title}), or null when it is flat.
 * `tick`: the symbol's last tick (or null: the P&L is then unknown, "—").
 */
export function positionLine(position, tick, precision) {
  if (position.units === 0 || position.avg_price === null) return null;
  const long = position.units > 0;
  const pnl = unrealisedPnl(position, tick);
  const currency = quoteCurrency(position.symbol);
  const pnlText = pnl === null ? "—"
    : `${pnl >= 0 ? "+" : "−"}${Math.abs(pnl).toFixed(2)}${currency ? ` ${currency}` : ""}`;
  return {
    id: `position:${position.trader}:${position.symbol}`,
    price: position.avg_price,
    color: long ? EXEC_COLORS.long : EXEC_COLORS.short,
    title: `${position.trader} ${long ? "long" : "short"} ${formatUnits(position.units)} @ ` +
      `${position.avg_price.toFixed(precision)} uPnL ${pnlText}`,
  };
}

/** Keep the fills of a `/api/fills` answer in `byId` (a fill is applied once, by its id). */
export function addFills(byId, fills) {
  let added = 0;
  for (const fill of fills) {
    const id = `${fill.intent_id}:${fill.fill_id}`;
    if (!byId.has(id)) {
      byId.set(id, fill);
      added += 1;
    }
  }
  return added;
}

/** Which chart shows each symbol's trades: the first in layout order showing it. */
export function targetsOf(panes) {
  const out = new Map();
  for (const pane of panes) if (!out.has(pane.symbol)) out.set(pane.symbol, pane);
  return out;
}

// --- the overlay ---------------------------------------------------------------------------------

const POLL_MS = 1000;
const VIEW_POLL_MS = 250;
const FETCH_TIMEOUT_MS = 8000;

async function getJson(path) {
  const response = await fetch(path, { cache: "no-store", signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

function addToggle(state, onChange) {
  const bar = document.createElement("div");
  bar.id = "exec-toggles";
  bar.style.cssText = "display:flex;gap:8px;font-size:12px;padding:2px 6px;";
  const label = document.createElement("label");
  const box = document.createElement("input");
  box.type = "checkbox";
  box.checked = state.enabled;
  box.id = "exec-toggle";
  box.addEventListener("change", () => {
    state.enabled = box.checked;
    onChange();
  });
  label.append(box, " Trades (fills, positions)");
  bar.append(label);
  const area = document.getElementById("chart-area") ?? document.body;
  area.append(bar);
}

/**
 * Draw the trades on the charts (see the rules at the top). `view()` -> the panes in layout
 * order, [{symbol, tf, chart (the adapter), bars() (merged, ascending), precision, ready}],
 * read a few times a second; a pane that is not `ready` (loading a series: its chart may still
 * show the previous one) shows no trades until it is.
 */
export function attachExecOverlay(view) {
  const state = { enabled: true, fills: new Map(), seq: null, positions: [], ticks: new Map(),
    drawn: new Map(), errors: 0, polls: 0 };

  async function pollData() {
    try {
      const after = state.seq === null ? "" : `?after_seq=${state.seq}`;
      const [fillsBody, positionsBody, ticksBody] = await Promise.all([
        getJson(`/api/fills${after}`), getJson("/api/positions"), getJson("/api/ticks"),
      ]);
      if (state.seq !== null && fillsBody.seq < state.seq) {
        state.fills = new Map(); // a new journal: its fills are read again from the start
        state.seq = null;
      } else {
        addFills(state.fills, fillsBody.fills);
        state.seq = fillsBody.seq;
      }
      state.positions = positionsBody.positions;
      state.ticks = new Map(ticksBody.ticks.map((tick) => [tick.symbol, tick]));
      state.polls += 1;
      redraw();
    } catch {
      state.errors += 1; // the exec routes or the server are away: keep what is drawn
    }
    setTimeout(pollData, POLL_MS);
  }

  // chart adapter -> {key, markers, lines} drawn on it (a key: what it was drawn from).
  function redraw() {
    const panes = view();
    const charts = new Set(panes.map((p) => p.chart));
    for (const chart of [...state.drawn.keys()]) if (!charts.has(chart)) state.drawn.delete(chart);
    const targets = targetsOf(panes);
    for (const pane of panes) {
      const target = state.enabled && pane.ready && targets.get(pane.symbol) === pane;
      let markers = [];
      let lines = [];
      if (target) {
        const fills = [...state.fills.values()].filter((f) => f.symbol === pane.symbol);
        if (fills.length > 0) markers = fillMarkers(fills, pane.tf, pane.bars(), pane.precision);
        lines = state.positions.filter((p) => p.symbol === pane.symbol)
          .map((p) => positionLine(p, state.ticks.get(p.symbol) ?? null, pane.precision))
          .filter((line) => line !== null);
      }
      const key = JSON.stringify([pane.offsetMs, markers, lines]);
      if (state.drawn.get(pane.chart)?.key === key) continue;
      pane.chart.setOverlayMarkers(markers);
      pane.chart.setPriceLines(lines);
      state.drawn.set(pane.chart, { key, symbol: pane.symbol, tf: pane.tf });
    }
  }

  addToggle(state, redraw);
  pollData();
  setInterval(redraw, VIEW_POLL_MS);

  const hook = Object.freeze({
    /** The fills known (every symbol), oldest first. */
    fills: () => [...state.fills.values()].sort((a, b) => a.seq - b.seq).map((f) => ({ ...f })),
    /** The positions known. */
    positions: () => state.positions.map((p) => ({ ...p })),
    /** Per pane in layout order: its symbol, tf and the fill markers and price lines its chart
     * holds (as the library holds them: markers with chart times). */
    drawn: () => view().map((pane) => ({
      symbol: pane.symbol, tf: pane.tf, offsetMs: pane.offsetMs,
      markers: pane.chart.markers().filter((m) => String(m.id ?? "").startsWith("fill:")),
      lines: pane.chart.priceLines(),
    })),
    /** The y coordinate (px in its chart) of a price on pane `index`'s candle scale. */
    yOf: (index, price) => view()[index]?.chart.yOf(price) ?? null,
    enabled: () => state.enabled,
    polls: () => state.polls,
    seq: () => state.seq,
  });
  window.__fxExec = hook;
  return hook;
}
