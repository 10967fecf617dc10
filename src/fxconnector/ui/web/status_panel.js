// The status panel: the connector's summary (status_v2: every symbol counted by state, the worst
// named) and the shown symbol's detail (status_symbol_v1), drawn as tables into one element.
// Pure DOM building: no fetch, no timers, no globals (app.js polls /api/status and calls it).

import { TF_MS } from "./chart_adapter.js";

const ERRORS_SHOWN = 5;

/** A stream or fetch notice ({code, message}) in words for a trader; the raw text goes in a tooltip. */
export function describeNotice(notice) {
  if (notice === null || notice === undefined) return null;
  if (notice.code === "resync_wait") {
    const seconds = Math.max(1, Math.round((notice.delayMs ?? 0) / 1000));
    return "The server lost this chart's place in its stream again right after a reload; " +
      `the chart waits ${seconds} s before reloading (to spare the server).`;
  }
  const words = {
    unavailable: "The server cannot read its data store (Redis) right now; it keeps retrying.",
    bars: "The chart could not load its bars; retrying.",
    history: "Older bars could not be loaded; scroll left again to retry.",
    cursor_expired: "The server restarted or trimmed its stream; the chart reloaded.",
    foreign_symbol_range: "Older bars of this symbol come only from the process that " +
      "publishes it; this server has its newest bars.",
  };
  return words[notice.code] ?? `The server reported a problem (${notice.code}).`;
}

const ERROR_WORDS = Object.freeze({
  "redis.unavailable": "The data store (Redis) did not answer; the connector retries.",
  "redis.auth_failed": "The data store (Redis) refused the connector's credentials.",
  "lease.lost": "Another process took over a symbol this one published.",
  "ssot.corrupt_line": "A damaged line in the bar store was skipped at start.",
});
const AREA_WORDS = Object.freeze({
  redis: "Data store (Redis)",
  ssot: "Bar store",
  broker: "Broker",
  history: "Broker history",
  lease: "Symbol ownership",
});

/** A status error (`{code, message}`) in words; the raw code and message go in a tooltip. */
export function describeError(error) {
  const known = ERROR_WORDS[error.code];
  if (known) return known;
  if (error.code.startsWith("redis.invalid_")) {
    return `The data store (Redis) held an invalid ${error.code.slice(14)}; it was not served.`;
  }
  const area = AREA_WORDS[error.code.split(".")[0]] ?? "Connector";
  const detail = error.code.split(".").slice(1).join(" ").replaceAll("_", " ");
  return `${area}: ${detail || "a problem"}.`;
}

/**
 * The connection section: the live stream's state and counts, in words.
 * `connection`: {stream: open|connecting|lost, events, lastEventAt, lastEventId, notice, nowMs}.
 */
export function renderConnection(body, connection, view) {
  body.replaceChildren();
  const table = section(body, "Connection");
  const states = {
    open: ["live: updates arrive as they happen", "good"],
    connecting: ["connecting…", null],
    lost: ["disconnected: retrying; the chart shows the last data received", "bad"],
  };
  const [text, tone] = states[connection.stream];
  row(table, "stream", text, tone);
  row(table, "updates received", String(connection.events));
  row(table, "last update", connection.lastEventAt === null ? "none yet"
    : `${view.formatAge(connection.nowMs - connection.lastEventAt)} ago`);
  const words = describeNotice(connection.notice);
  if (words !== null) {
    const tr = row(table, "problem", words, "warn");
    tr.title = `${connection.notice.code}: ${connection.notice.message}`;
    tr.classList.add("notice");
  }
  const position = row(table, "position", connection.lastEventId ? "following the stream"
    : "at the snapshot");
  position.title = connection.lastEventId ? `last event id ${connection.lastEventId}`
    : `cursor ${connection.cursor ?? "none"}`;
}

function row(table, label, value, tone = null) {
  const doc = table.ownerDocument;
  const tr = doc.createElement("tr");
  const th = doc.createElement("th");
  th.textContent = label;
  const td = doc.createElement("td");
  td.textContent = value;
  if (tone) td.className = tone;
  tr.append(th, td);
  table.append(tr);
  return tr;
}

function section(body, title) {
  const doc = body.ownerDocument;
  const box = doc.createElement("section");
  const h = doc.createElement("h2");
  h.textContent = title;
  const table = doc.createElement("table");
  box.append(h, table);
  body.append(box);
  return table;
}

function parseMoment(value) {
  if (value === null || value === undefined) return null;
  const ms = typeof value === "number" ? value : Date.parse(value);
  return Number.isFinite(ms) ? ms : null;
}

/**
 * Draw `status` (status_v2) and `detail` (status_symbol_v1 of `view.symbol`, or null while it
 * loads) into `body`, replacing what was there. `view`: {symbol, tf, formatTime, formatAge}.
 */
export function renderPanel(body, s, detail, view) {
  body.replaceChildren();

  const market = section(body, "Market");
  row(market, "market", s.market.is_open ? "open" : "closed", s.market.is_open ? "good" : "warn");
  if (!s.market.is_open) {
    row(market, "next open", view.formatTime(parseMoment(s.market.next_open_utc)));
  } else if (s.market.next_pause_utc) {
    row(market, "next pause", view.formatTime(parseMoment(s.market.next_pause_utc)));
  }
  row(market, "calendar", s.market.calendar_tag);

  const broker = section(body, "Broker");
  const brokerTone = s.broker.state === "connected" ? "good" : "bad";
  row(broker, s.broker.kind, s.broker.state, brokerTone);
  const tickAge = s.broker.last_tick_ts_ms === null ? null : s.ts - s.broker.last_tick_ts_ms;
  row(broker, "last tick", tickAge === null ? "none yet" : `${view.formatAge(tickAge)} ago`);
  row(broker, "reconnects", String(s.broker.reconnects));

  const surface = section(body, "Surface and store");
  row(surface, "redis surface", `${s.surface.state} (backlog ${s.surface.backlog})`,
    s.surface.state === "ok" ? "good" : "bad");
  row(surface, "ssot", s.ssot.state, s.ssot.state === "ok" ? "good" : "warn");

  const n = s.symbols;
  const symbols = section(body, `Symbols · ${n.total}`);
  const unwell = n.lagging + n.stalled + n.no_final;
  row(symbols, "current", `${n.current} of ${n.total}`, unwell ? "warn" : "good");
  if (unwell) {
    row(symbols, "not current",
      `${n.stalled} stalled · ${n.lagging} lagging · ${n.no_final} no final yet`,
      n.stalled ? "bad" : "warn");
  }
  if (n.with_missing_minutes || n.with_underived) {
    row(symbols, "gaps", `${n.with_missing_minutes} with missing minutes · ` +
      `${n.with_underived} with derived bars pending`, "warn");
  }
  for (const w of n.worst) {
    row(symbols, w.symbol, w.state.replace("_", " ") +
      (w.final_lag_ms ? ` · lag ${view.formatAge(w.final_lag_ms)}` : "") +
      (w.missing_minutes ? ` · ${w.missing_minutes} min missing` : "") +
      (w.underived ? ` · ${w.underived} derived pending` : ""),
      w.state === "stalled" ? "bad" : "warn").classList.add("worst");
  }

  const d = detail?.symbol === view.symbol ? detail : null;
  const mine = section(body, `This symbol · ${view.symbol}`);
  if (!d) {
    row(mine, "status", "loading…");
  } else {
    row(mine, "state", d.state.replace("_", " "), d.state === "current" ? "good" : "warn");
    const tickAgeOf = d.last_tick_ts_ms === null ? null : d.ts - d.last_tick_ts_ms;
    row(mine, "last tick", tickAgeOf === null ? "none yet" : `${view.formatAge(tickAgeOf)} ago`);
    const coverage = d.coverage;
    if (coverage) {
      row(mine, "last 24 h minutes",
        `${coverage.final} final · ${coverage.quiet} quiet · ${coverage.missing} missing · ` +
        `${coverage.closed} closed`, coverage.missing ? "warn" : null);
    }
  }

  const finals = section(body, `Last final bar (open time) · ${view.symbol}`);
  const lastFinal = d?.last_final_ms ?? {};
  const tfs = Object.keys(lastFinal).sort((a, b) => (TF_MS[a] ?? 0) - (TF_MS[b] ?? 0));
  for (const tf of tfs) {
    const closeMs = lastFinal[tf];
    if (closeMs === null) {
      row(finals, tf, "none yet", "warn");
      continue;
    }
    const lag = d.ts - closeMs;
    // A final is due a little after its bucket closes; more than a bucket late is worth a look.
    const late = s.market.is_open && lag > (TF_MS[tf] ?? 60_000) + 120_000;
    const openMs = closeMs + 1 - (TF_MS[tf] ?? 0);
    const tr = row(finals, tf, `${view.formatTime(openMs)} · lag ${view.formatAge(lag)}`,
      late ? "warn" : null);
    if (tf === view.tf) tr.classList.add("current");
  }

  const preview = section(body, "Live previews");
  row(preview, "late ticks dropped", String(s.preview.late_ticks_dropped),
    s.preview.late_ticks_dropped ? "warn" : null);
  const rejected = Object.entries(s.preview.rejected);
  row(preview, "rejected ticks",
    rejected.length ? rejected.map(([reason, n]) => `${reason} ${n}`).join(" · ") : "none",
    rejected.length ? "warn" : null);

  const command = section(body, "Last command");
  const last = s.last_command;
  if (last) {
    row(command, last.cmd, `${last.state} (${last.req_id})`,
      last.state === "failed" ? "bad" : null);
    row(command, "finished",
      last.finished_ts ? view.formatTime(last.finished_ts, { seconds: true }) : "—");
  } else {
    row(command, "command", "none");
  }

  const errors = section(body, "Recent errors");
  if (s.errors.length === 0) row(errors, "errors", "none", "good");
  for (const error of s.errors.slice(-ERRORS_SHOWN).reverse()) {
    const tr = row(errors,
      view.formatTime(error.ts, { seconds: true }).replace(/ (UTC|local)$/, ""),
      describeError(error), "bad");
    tr.title = `${error.code}: ${error.message}`;
  }
  if (s.degraded.length) row(errors, "degraded", s.degraded.join(", "), "warn");
}
