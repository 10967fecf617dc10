// The SMC overlay: draws the SMC layer's hints (smc_hint_v1, docs/smc.md) on the chart with ONE
// lightweight-charts series primitive attached to the candle series (no other chart library).
//
// Rules:
// - Data: `/api/smc?symbol&tf` (the series' kept hints and the SMC stream cursor), then the
//   push stream with `kinds=smc` from that cursor (SSE `event: smc`, resumed by Last-Event-ID).
//   One hint id is one object: a revision (higher rev) replaces it, a retracted one is gone.
// - Causality on screen: a hint is drawn only once the chart holds the final bar it was
//   confirmed at (`confirm_ts <= edge`, the close of the newest final drawn). A hint that
//   arrives before its bar waits; nothing is ever drawn back in time that was not there.
// - Shapes: FVG, order blocks and liquidity pools are boxes from their anchor bar to the bar
//   that mitigated/swept them, or to the live edge while they are active; swings are small
//   triangles at their bar; BOS/CHoCH a labelled line from the swing's bar to the breaking bar;
//   previous day/week levels a labelled line from where they became known to the edge (until
//   the next one); sessions a faint box. Each group has a toggle.
// - The hook into the page is small: `attachSmcOverlay(chart, view)` with the chart adapter
//   (its `attachPrimitive`) and `view()` -> {symbol, tf, offsetMs, edgeMs}, read a few times a
//   second; the overlay adds its own toggles next to the chart. `window.__fxSmc` is the test
//   hook (what is drawn now, what is known).
//
// The helpers above `attachSmcOverlay` are pure (no DOM, no library).

export const SMC_GROUPS = Object.freeze([
  { key: "swings", label: "Swings", kinds: ["swing_high", "swing_low"], on: true },
  { key: "structure", label: "BOS/CHoCH", kinds: ["bos", "choch"], on: true },
  { key: "fvg", label: "FVG", kinds: ["fvg"], on: true },
  { key: "ob", label: "Order blocks", kinds: ["ob"], on: true },
  { key: "liquidity", label: "Liquidity", kinds: ["liquidity"], on: false },
  { key: "levels", label: "Prev day/week", on: false,
    kinds: ["prev_day_high", "prev_day_low", "prev_week_high", "prev_week_low"] },
  { key: "sessions", label: "Sessions", on: false,
    kinds: ["session_asia", "session_london", "session_new_york"] },
]);

const ENDS = Object.freeze({ fvg_mitigated: "fvg", ob_mitigated: "ob", liquidity_swept: "liquidity" });
const ZONES = new Set(["fvg", "ob", "liquidity"]);
const LEVEL_LABELS = Object.freeze({ prev_day_high: "PDH", prev_day_low: "PDL",
  prev_week_high: "PWH", prev_week_low: "PWL" });

export const SMC_COLORS = Object.freeze({
  fvg: { bull: "rgba(38, 166, 154, 0.18)", bear: "rgba(239, 83, 80, 0.18)" },
  ob: { bull: "rgba(66, 165, 245, 0.22)", bear: "rgba(255, 152, 0, 0.22)" },
  liquidity: { bull: "rgba(171, 71, 188, 0.18)", bear: "rgba(171, 71, 188, 0.18)" },
  session: "rgba(149, 152, 161, 0.08)",
  line: { bull: "#26a69a", bear: "#ef5350" },
  level: "#9598a1",
});

/** The kinds whose group is on. */
export function enabledKinds(toggles) {
  const kinds = new Set();
  for (const group of SMC_GROUPS) if (toggles[group.key] ?? group.on) group.kinds.forEach((k) => kinds.add(k));
  return kinds;
}

/** Keep `hint` in `byId` unless an equal or newer revision of its id is there. */
export function addHint(byId, hint) {
  const held = byId.get(hint.id);
  if (held !== undefined && held.rev >= hint.rev) return false;
  byId.set(hint.id, hint);
  return true;
}

/**
 * What to draw: the hints confirmed by `edgeMs` (the close of the newest final on the chart),
 * as shapes with times in ms ({type: "box"|"line"|"marker", id, kind, direction, fromMs, toMs,
 * top, bottom, price, label}). `tfMs` turns a confirm close into its bar's open.
 */
export function shapesOf(hints, edgeMs, kinds, tfMs) {
  if (edgeMs === null || edgeMs === undefined) return [];
  const known = [...hints].filter((h) => !h.retracted && h.confirm_ts <= edgeMs);
  known.sort((a, b) => a.confirm_ts - b.confirm_ts || (a.id < b.id ? -1 : 1));
  const barOf = (closeMs) => closeMs + 1 - tfMs;
  const edgeOpen = barOf(edgeMs);
  const ended = new Map();
  const byId = new Map(known.map((h) => [h.id, h]));
  for (const h of known) {
    if (ENDS[h.kind] !== undefined && h.ref && !ended.has(h.ref)) ended.set(h.ref, barOf(h.confirm_ts));
  }
  const nextLevel = new Map(); // a level ends where the next of its kind becomes known
  const shapes = [];
  for (let i = known.length - 1; i >= 0; i--) {
    const h = known[i];
    if (!kinds.has(h.kind)) continue;
    if (ZONES.has(h.kind)) {
      shapes.push({ type: "box", id: h.id, kind: h.kind, direction: h.direction,
        fromMs: h.anchor_ts, toMs: ended.get(h.id) ?? edgeOpen, top: h.top, bottom: h.bottom,
        active: !ended.has(h.id) });
    } else if (h.kind === "swing_high" || h.kind === "swing_low") {
      shapes.push({ type: "marker", id: h.id, kind: h.kind, direction: h.direction,
        fromMs: h.anchor_ts, toMs: h.anchor_ts, price: h.price,
        label: h.kind === "swing_high" ? "H" : "L" });
    } else if (h.kind === "bos" || h.kind === "choch") {
      const swing = h.ref ? byId.get(h.ref) : undefined;
      shapes.push({ type: "line", id: h.id, kind: h.kind, direction: h.direction,
        fromMs: swing ? swing.anchor_ts : h.anchor_ts, toMs: barOf(h.confirm_ts), price: h.price,
        label: h.kind === "bos" ? "BOS" : "CHoCH" });
    } else if (LEVEL_LABELS[h.kind] !== undefined) {
      const from = barOf(h.confirm_ts);
      shapes.push({ type: "line", id: h.id, kind: h.kind, direction: h.direction, fromMs: from,
        toMs: nextLevel.get(h.kind) ?? edgeOpen, price: h.price, label: LEVEL_LABELS[h.kind] });
      nextLevel.set(h.kind, from);
    } else if (h.kind.startsWith("session_")) {
      shapes.push({ type: "box", id: h.id, kind: h.kind, direction: h.direction,
        fromMs: h.anchor_ts, toMs: barOf(h.confirm_ts), top: h.top, bottom: h.bottom, active: false });
    }
  }
  return shapes.reverse();
}

// --- the primitive ------------------------------------------------------------------------------

class SmcRenderer {
  constructor(overlay) {
    this.overlay = overlay;
  }

  draw(target) {
    const o = this.overlay;
    if (o.chart === null || o.series === null) return;
    const timeScale = o.chart.timeScale();
    const xOf = (ms) => {
      const time = Math.floor((ms + o.offsetMs) / 1000);
      const x = timeScale.timeToCoordinate(time);
      if (x !== null) return x;
      const index = timeScale.timeToIndex(time, true);
      return index === null ? null : timeScale.logicalToCoordinate(index);
    };
    const yOf = (price) => o.series.priceToCoordinate(price);
    target.useMediaCoordinateSpace(({ context: ctx }) => {
      ctx.save();
      ctx.font = "10px sans-serif";
      ctx.textBaseline = "bottom";
      for (const s of o.shapes) {
        const x1 = xOf(s.fromMs);
        const x2 = xOf(s.toMs);
        if (x1 === null || x2 === null) continue;
        if (s.type === "box") {
          const yTop = yOf(s.top);
          const yBottom = yOf(s.bottom);
          if (yTop === null || yBottom === null) continue;
          const palette = SMC_COLORS[s.kind];
          ctx.fillStyle = palette ? palette[s.direction] : SMC_COLORS.session;
          ctx.fillRect(x1, yTop, Math.max(x2 - x1, 2), Math.max(yBottom - yTop, 1));
        } else if (s.type === "line") {
          const y = yOf(s.price);
          if (y === null) continue;
          const level = LEVEL_LABELS[s.kind] !== undefined;
          ctx.strokeStyle = level ? SMC_COLORS.level : SMC_COLORS.line[s.direction];
          ctx.setLineDash(level ? [4, 3] : s.kind === "choch" ? [2, 2] : []);
          ctx.lineWidth = 1;
          ctx.beginPath();
          ctx.moveTo(x1, y);
          ctx.lineTo(x2, y);
          ctx.stroke();
          ctx.setLineDash([]);
          ctx.fillStyle = ctx.strokeStyle;
          ctx.fillText(s.label, level ? x1 + 2 : (x1 + x2) / 2 - 10, y - 1);
        } else {
          const y = yOf(s.price);
          if (y === null) continue;
          const high = s.kind === "swing_high";
          ctx.fillStyle = high ? SMC_COLORS.line.bear : SMC_COLORS.line.bull;
          const tip = high ? y - 3 : y + 3;
          const base = high ? y - 9 : y + 9;
          ctx.beginPath();
          ctx.moveTo(x1, tip);
          ctx.lineTo(x1 - 4, base);
          ctx.lineTo(x1 + 4, base);
          ctx.closePath();
          ctx.fill();
        }
      }
      ctx.restore();
    });
  }
}

class SmcPaneView {
  constructor(overlay) {
    this.renderer_ = new SmcRenderer(overlay);
  }

  zOrder() {
    return "normal";
  }

  renderer() {
    return this.renderer_;
  }
}

class SmcPrimitive {
  constructor() {
    this.chart = null;
    this.series = null;
    this.shapes = [];
    this.offsetMs = 0;
    this.requestUpdate = () => {};
    this.views = [new SmcPaneView(this)];
  }

  attached({ chart, series, requestUpdate }) {
    this.chart = chart;
    this.series = series;
    this.requestUpdate = requestUpdate;
  }

  detached() {
    this.chart = null;
    this.series = null;
    this.requestUpdate = () => {};
  }

  updateAllViews() {}

  paneViews() {
    return this.views;
  }
}

// --- the overlay ---------------------------------------------------------------------------------

const TF_MS = Object.freeze({ "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000,
  "30m": 1_800_000, "1h": 3_600_000, "4h": 14_400_000, "1d": 86_400_000 });
const VIEW_POLL_MS = 250;
const RETRY_MS = 2_000;

function addToggles(toggles, onChange) {
  const bar = document.createElement("div");
  bar.id = "smc-toggles";
  bar.style.cssText = "display:flex;gap:8px;flex-wrap:wrap;font-size:12px;padding:2px 6px;";
  bar.append(Object.assign(document.createElement("span"), { textContent: "SMC:" }));
  for (const group of SMC_GROUPS) {
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = toggles[group.key];
    box.dataset.smc = group.key;
    box.addEventListener("change", () => {
      toggles[group.key] = box.checked;
      onChange();
    });
    label.append(box, ` ${group.label}`);
    bar.append(label);
  }
  const area = document.getElementById("chart-area") ?? document.body;
  area.append(bar);
}

/** Draw the SMC hints of the shown series on `chart` (see the rules at the top). */
export function attachSmcOverlay(chart, view) {
  const primitive = new SmcPrimitive();
  chart.attachPrimitive(primitive);
  const toggles = Object.fromEntries(SMC_GROUPS.map((g) => [g.key, g.on]));
  const state = { key: null, byId: new Map(), source: null, edgeMs: null, tf: "1m",
    generation: 0, enabled: true };

  function redraw() {
    primitive.shapes = shapesOf(state.byId.values(), state.edgeMs, enabledKinds(toggles),
      TF_MS[state.tf] ?? 60_000);
    primitive.requestUpdate();
  }

  function openStream(generation, symbol, tf, cursor) {
    const params = new URLSearchParams({ kinds: "smc", symbols: symbol, tfs: tf });
    if (cursor) params.set("cursor", cursor);
    const source = new EventSource(`/api/stream?${params}`);
    state.source = source;
    source.addEventListener("smc", (event) => {
      if (generation !== state.generation) return;
      const hint = JSON.parse(event.data);
      if (hint.symbol === symbol && hint.tf === tf && addHint(state.byId, hint)) redraw();
    });
    source.addEventListener("error", () => {
      if (generation !== state.generation || source.readyState !== EventSource.CLOSED) return;
      source.close();
      setTimeout(() => generation === state.generation && load(symbol, tf), RETRY_MS);
    });
  }

  async function load(symbol, tf) {
    const generation = ++state.generation;
    if (state.source !== null) state.source.close();
    state.source = null;
    state.byId = new Map();
    redraw();
    let body;
    try {
      const response = await fetch(`/api/smc?${new URLSearchParams({ symbol, tf })}`);
      if (response.status === 404) {
        state.enabled = false; // SMC is off, or not run on this timeframe
        return;
      }
      if (!response.ok) throw new Error(`/api/smc: HTTP ${response.status}`);
      body = await response.json();
    } catch {
      setTimeout(() => generation === state.generation && load(symbol, tf), RETRY_MS);
      return;
    }
    if (generation !== state.generation) return;
    state.enabled = true;
    for (const hint of body.hints) addHint(state.byId, hint);
    redraw();
    openStream(generation, symbol, tf, body.cursor);
  }

  function poll() {
    const now = view();
    const key = now.symbol && now.tf ? `${now.symbol} ${now.tf}` : null;
    if (key !== state.key) {
      state.key = key;
      state.tf = now.tf;
      state.edgeMs = now.edgeMs;
      primitive.offsetMs = now.offsetMs;
      if (key !== null) load(now.symbol, now.tf);
      return;
    }
    if (now.edgeMs !== state.edgeMs || now.offsetMs !== primitive.offsetMs) {
      state.edgeMs = now.edgeMs;
      primitive.offsetMs = now.offsetMs;
      redraw();
    }
  }

  addToggles(toggles, redraw);
  poll();
  setInterval(poll, VIEW_POLL_MS);

  const hook = Object.freeze({
    /** The shapes drawn now (ids, kinds, times in ms). */
    drawn: () => primitive.shapes.map((s) => ({ ...s })),
    /** Every hint known for the shown series (drawn or still waiting for its bar). */
    known: () => [...state.byId.values()].map((h) => ({ ...h })),
    /** The close of the newest final on the chart (hints up to it may be drawn). */
    edgeMs: () => state.edgeMs,
    enabled: () => state.enabled,
  });
  window.__fxSmc = hook;
  return hook;
}
