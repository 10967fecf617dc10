// When to reload a pane after the push stream said it lost our place (`cursor_expired`).
//
// Rules:
// - A `cursor_expired` after updates arrived since the last load reloads at once: the stream
//   lost our place once (a server restart, a long sleep of the laptop).
// - A `cursor_expired` before any update followed the last load (a resync right after a
//   reload) waits first: the n-th in a row waits min(capMs, initialMs * 2^(n-1)), times a
//   jitter in [0.5, 1] so many pages do not reload in step. Without it a server that keeps
//   handing out a lost cursor makes the page reload /api/bars in a tight loop.
// - The first update after a load resets the count.
// - Pure: no timers, no DOM, no globals; the random source is injected.

export const RESYNC_INITIAL_MS = 1000;
export const RESYNC_CAP_MS = 60_000;

export function createResync({ initialMs = RESYNC_INITIAL_MS, capMs = RESYNC_CAP_MS,
  random = Math.random } = {}) {
  if (!(initialMs > 0 && initialMs <= capMs)) {
    throw new RangeError(`need 0 < initialMs <= capMs, got ${initialMs}, ${capMs}`);
  }
  return { initialMs, capMs, random, inARow: 0, updatesSinceLoad: 0 };
}

/** A load of /api/bars succeeded. */
export function noteLoad(state) {
  state.updatesSinceLoad = 0;
}

/** An update arrived on the stream. */
export function noteUpdate(state) {
  state.updatesSinceLoad += 1;
  state.inARow = 0;
}

/** The stream said `cursor_expired`: how long to wait before reloading (0: reload now). */
export function expiredDelayMs(state) {
  if (state.updatesSinceLoad > 0) {
    state.inARow = 0;
    return 0;
  }
  state.inARow += 1;
  // The exponent is bounded so the number stays finite whatever the count.
  const ceiling = Math.min(state.capMs, state.initialMs * 2 ** Math.min(state.inARow - 1, 30));
  return Math.round(ceiling * (0.5 + 0.5 * state.random()));
}
