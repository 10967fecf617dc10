// When a pane reloads after `cursor_expired` (src/fxconnector/ui/web/resync.js), and what the
// status panel says while it waits (status_panel.js).
import assert from "node:assert/strict";
import { test } from "node:test";

import { createResync, expiredDelayMs, noteLoad, noteUpdate, RESYNC_CAP_MS, RESYNC_INITIAL_MS }
  from "../../src/fxconnector/ui/web/resync.js";
import { describeNotice } from "../../src/fxconnector/ui/web/status_panel.js";

/** A fixed sequence of random numbers in [0, 1), repeated. */
function randoms(...values) {
  let k = 0;
  return () => values[k++ % values.length];
}

test("expired after updates arrived: reload at once", () => {
  const state = createResync({ random: randoms(0.5) });
  noteLoad(state);
  noteUpdate(state);
  assert.equal(expiredDelayMs(state), 0);
  assert.equal(state.inARow, 0);
});

test("expired again right after each reload: capped exponential backoff with jitter", () => {
  const state = createResync({ initialMs: 1000, capMs: 8000, random: randoms(0, 0.999999, 0.5) });
  const delays = [];
  for (let k = 0; k < 8; k++) {
    noteLoad(state); // the reload succeeded, and the stream lost our place before any update
    delays.push(expiredDelayMs(state));
  }
  // jitter factor 0.5 + 0.5 * random: 0.5, ~1, 0.75, then again
  assert.deepEqual(delays, [500, 2000, 3000, 4000, 8000, 6000, 4000, 8000]);
  assert.equal(state.inARow, 8);
  for (const [k, delay] of delays.entries()) {
    const ceiling = Math.min(8000, 1000 * 2 ** k);
    assert.ok(delay >= ceiling / 2 && delay <= ceiling, `${k}: ${delay}`);
  }
});

test("the first update after a reload resets the count", () => {
  const state = createResync({ random: randoms(0.999999) });
  noteLoad(state);
  expiredDelayMs(state);
  noteLoad(state);
  expiredDelayMs(state);
  assert.equal(state.inARow, 2);
  noteLoad(state);
  noteUpdate(state);
  assert.equal(state.inARow, 0);
  assert.equal(expiredDelayMs(state), 0); // updates came: a new loss reloads at once
  noteLoad(state);
  assert.equal(expiredDelayMs(state), RESYNC_INITIAL_MS); // and the backoff starts over
});

test("a long loop stays at the cap and every wait is finite", () => {
  const state = createResync({ random: randoms(0.999999) });
  let last = 0;
  for (let k = 0; k < 2000; k++) {
    noteLoad(state);
    last = expiredDelayMs(state);
  }
  assert.equal(last, RESYNC_CAP_MS);
  assert.throws(() => createResync({ initialMs: 0 }), RangeError);
  assert.throws(() => createResync({ initialMs: 5, capMs: 1 }), RangeError);
});

test("the wait is said in words, not as a raw error", () => {
  const words = describeNotice({ code: "resync_wait", message: "cursor expired ...",
    delayMs: 4000, inARow: 3 });
  assert.equal(words, "The server lost this chart's place in its stream again right after a " +
    "reload; the chart waits 4 s before reloading (to spare the server).");
  assert.ok(!words.includes("cursor"));
});
