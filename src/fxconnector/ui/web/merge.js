// The merge policy every consumer applies to bar update events (DESIGN §3), for the chart.
//
// The JavaScript twin of src/fxconnector/client/merge.py (BarBook): the same rules, run against
// the same vectors (tests/vectors/merge/*.json, by tests/ui/merge.test.mjs). A behaviour change
// goes into the vectors first, then into both implementations.
//
// Rules, per series (symbol, tf) and key open_ms:
// - final > preview. A final replaces a preview of its key (`replaced`).
// - NoMix: once a key has a final, no preview changes it (`ignored`, `no_mix`).
// - A final with a higher `rev` replaces the final of its key (`revised`); the same rev is a
//   duplicate (`duplicate`, or `conflict` when its content differs, a producer bug), a lower rev
//   is stale out-of-order delivery (`stale_revision`).
// - A preview replaces the preview of its key only when it is newer in the data's own terms: its
//   latest tick (`event_ts`) is not older and it counts no fewer ticks, and one of the two grew.
//   An older one is stale (`stale_preview`); a later one with fewer ticks (`thinner_preview`)
//   comes from a producer restarted inside the bucket and must not collapse the fuller bar held
//   (O=H=L=C, V=1 after a server restart); it replaces it once it has caught up in ticks.
// - A preview for a bucket older than the newest final of its series is late (`late_preview`),
//   even when the key holds no final. A preview already held for an older bucket stays until its
//   final arrives.
// - loadSnapshot replaces a series' finals with the snapshot's (highest rev per key); of the held
//   previews it keeps only those for buckets newer than the snapshot's newest final.
// - maxBars (optional) bounds memory: past it the oldest bars are dropped, and an event for a key
//   older than every bar kept is ignored (`out_of_window`).
//
// Pure: no DOM, no network, no clock. The state is a plain object that these functions mutate;
// events are canonical ohlcv_event_v1 objects (as JSON.parse gives them) and are kept as given.

export const ChangeKind = Object.freeze({
  INSERTED: "inserted",
  REPLACED: "replaced",
  REVISED: "revised",
  IGNORED: "ignored",
});

export const IgnoreReason = Object.freeze({
  NO_MIX: "no_mix",
  LATE_PREVIEW: "late_preview",
  STALE_PREVIEW: "stale_preview",
  THINNER_PREVIEW: "thinner_preview",
  DUPLICATE: "duplicate",
  CONFLICT: "conflict",
  STALE_REVISION: "stale_revision",
  OUT_OF_WINDOW: "out_of_window",
});

// The contract's field order (ohlcv_event_v1): what "the same content" compares.
export const FIELDS = Object.freeze([
  "symbol", "tf", "open_ms", "close_ms", "open", "high", "low", "close",
  "volume", "tick_count", "complete", "source", "event_ts", "rev",
]);

/** A new, empty book. `maxBars` (a positive integer or null) bounds every series. */
export function createState({ maxBars = null } = {}) {
  if (maxBars !== null && !(Number.isInteger(maxBars) && maxBars >= 1)) {
    throw new RangeError(`maxBars must be a positive integer or null, got ${maxBars}`);
  }
  return { maxBars, series: new Map() };
}

export function seriesKey(symbol, tf) {
  return `${symbol}\u0000${tf}`;
}

function newSeries() {
  // byOpen: open_ms -> bar; opens: the keys ascending; newestFinalMs: open of the newest final.
  return { byOpen: new Map(), opens: [], newestFinalMs: null };
}

function lowerBound(sorted, value) {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid] < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function put(series, bar) {
  if (!series.byOpen.has(bar.open_ms)) {
    const opens = series.opens;
    // Live bars arrive at the end, so this is an append almost always.
    if (opens.length === 0 || bar.open_ms > opens[opens.length - 1]) opens.push(bar.open_ms);
    else opens.splice(lowerBound(opens, bar.open_ms), 0, bar.open_ms);
  }
  series.byOpen.set(bar.open_ms, bar);
  if (bar.complete && (series.newestFinalMs === null || bar.open_ms > series.newestFinalMs)) {
    series.newestFinalMs = bar.open_ms;
  }
}

function trim(series, maxBars) {
  const excess = series.opens.length - maxBars;
  if (excess > 0) {
    for (const openMs of series.opens.slice(0, excess)) series.byOpen.delete(openMs);
    series.opens.splice(0, excess);
  }
}

function sameContent(a, b) {
  return FIELDS.every((name) => a[name] === b[name]);
}

function previewOrder(candidate, held) {
  // null when candidate is a newer preview of the key than held, else why it is not. Previews
  // carry the time of their latest tick (the builder keeps the maximum) and their tick count; a
  // producer's publishes of one bucket grow in both, ticks sharing a millisecond in the count.
  const later =
    candidate.event_ts !== held.event_ts
      ? candidate.event_ts > held.event_ts
      : candidate.tick_count > held.tick_count;
  if (!later) return IgnoreReason.STALE_PREVIEW;
  if (candidate.tick_count < held.tick_count) return IgnoreReason.THINNER_PREVIEW;
  return null;
}

function ignoreReason(event, held, series) {
  if (event.complete) {
    if (!held.complete || event.rev > held.rev) return null;
    if (event.rev < held.rev) return IgnoreReason.STALE_REVISION;
    return sameContent(event, held) ? IgnoreReason.DUPLICATE : IgnoreReason.CONFLICT;
  }
  if (held.complete) return IgnoreReason.NO_MIX;
  if (series.newestFinalMs !== null && event.open_ms < series.newestFinalMs) {
    return IgnoreReason.LATE_PREVIEW;
  }
  return previewOrder(event, held);
}

function change(kind, event, previous = null, reason = null) {
  return { kind, reason, event, previous, changed: kind !== ChangeKind.IGNORED };
}

/** Merge one event into its series; the change says what happened. */
export function applyUpdate(state, event) {
  const key = seriesKey(event.symbol, event.tf);
  let series = state.series.get(key);
  if (series === undefined) {
    series = newSeries();
    state.series.set(key, series);
  }
  const held = series.byOpen.get(event.open_ms);
  if (held === undefined) {
    if (
      state.maxBars !== null &&
      series.opens.length >= state.maxBars &&
      event.open_ms < series.opens[0]
    ) {
      return change(ChangeKind.IGNORED, event, null, IgnoreReason.OUT_OF_WINDOW);
    }
    if (
      !event.complete &&
      series.newestFinalMs !== null &&
      event.open_ms < series.newestFinalMs
    ) {
      return change(ChangeKind.IGNORED, event, null, IgnoreReason.LATE_PREVIEW);
    }
    put(series, event);
    if (state.maxBars !== null) trim(series, state.maxBars);
    return change(ChangeKind.INSERTED, event);
  }
  const reason = ignoreReason(event, held, series);
  if (reason !== null) return change(ChangeKind.IGNORED, event, held, reason);
  put(series, event);
  return change(held.complete ? ChangeKind.REVISED : ChangeKind.REPLACED, event, held);
}

/** Merge events in order; one change per event, in the same order. */
export function applyUpdates(state, events) {
  return events.map((event) => applyUpdate(state, event));
}

/**
 * Replace the series' finals with a snapshot of final bars (any order; highest rev wins).
 * Held previews survive only for buckets newer than the snapshot's newest final (all of them
 * when the snapshot is empty). Throws when a bar is not a final of this series.
 */
export function loadSnapshot(state, symbol, tf, bars) {
  const finals = new Map();
  for (const bar of bars) {
    if (bar.symbol !== symbol || bar.tf !== tf || bar.complete !== true) {
      throw new Error(
        `snapshot of ${symbol} ${tf} holds a bar that is not one of its finals: ` +
          `${bar.symbol} ${bar.tf} open_ms=${bar.open_ms} complete=${bar.complete}`,
      );
    }
    const known = finals.get(bar.open_ms);
    if (known === undefined || bar.rev > known.rev) finals.set(bar.open_ms, bar);
  }
  const fresh = newSeries();
  for (const openMs of [...finals.keys()].sort((a, b) => a - b)) put(fresh, finals.get(openMs));
  const key = seriesKey(symbol, tf);
  const old = state.series.get(key);
  if (old !== undefined) {
    for (const openMs of old.opens) {
      const bar = old.byOpen.get(openMs);
      if (!bar.complete && (fresh.newestFinalMs === null || openMs > fresh.newestFinalMs)) {
        put(fresh, bar);
      }
    }
  }
  if (state.maxBars !== null) trim(fresh, state.maxBars);
  state.series.set(key, fresh);
}

/** Every bar held for the series (finals and previews), ascending open_ms. */
export function seriesBars(state, symbol, tf) {
  const series = state.series.get(seriesKey(symbol, tf));
  return series === undefined ? [] : series.opens.map((openMs) => series.byOpen.get(openMs));
}

/** The bar held for one key, or null. */
export function getBar(state, symbol, tf, openMs) {
  const series = state.series.get(seriesKey(symbol, tf));
  return series?.byOpen.get(openMs) ?? null;
}

/** open_ms of the series' newest final, or null. */
export function newestFinalMs(state, symbol, tf) {
  return state.series.get(seriesKey(symbol, tf))?.newestFinalMs ?? null;
}
