// The watchlist: the last bid, ask and spread of every served symbol, from the tick cache
// (/api/ticks, polled by app.js). Pure DOM building (no fetch, no timers).

import { pipSize, symbolPrecision } from "./chart_adapter.js";
import { formatAge } from "./format.js";

export const STALE_TICK_MS = 60_000;

/** The spread in pips, one decimal: (ask - bid) / pip. */
export function spreadPips(symbol, bid, ask) {
  return ((ask - bid) / pipSize(symbol)).toFixed(1);
}

/**
 * Draw the rows into `table` (a <tbody>): one per symbol of `symbols`, from `ticks`
 * (symbol -> tick_v1). `active` is highlighted; `nowMs` dates the ticks (stale ones dimmed).
 */
export function renderWatchlist(table, symbols, ticks, { active, nowMs, onPick }) {
  const doc = table.ownerDocument;
  table.replaceChildren();
  for (const symbol of symbols) {
    const tick = ticks.get(symbol) ?? null;
    const tr = doc.createElement("tr");
    tr.dataset.symbol = symbol;
    if (symbol === active) tr.classList.add("current");
    const cells = [symbol, "—", "—", "—"];
    if (tick !== null) {
      const precision = symbolPrecision(symbol);
      cells[1] = tick.bid.toFixed(precision);
      cells[2] = tick.ask.toFixed(precision);
      cells[3] = spreadPips(symbol, tick.bid, tick.ask);
      const age = nowMs - tick.ts_ms;
      tr.title = `last tick ${formatAge(age)} ago`;
      if (age > STALE_TICK_MS) tr.classList.add("stale");
    } else {
      tr.title = "no tick yet";
    }
    for (const [k, text] of cells.entries()) {
      const td = doc.createElement(k === 0 ? "th" : "td");
      td.textContent = text;
      tr.append(td);
    }
    tr.addEventListener("click", () => onPick(symbol));
    table.append(tr);
  }
}
