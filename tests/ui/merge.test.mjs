// The chart's merge policy (src/fxconnector/ui/web/merge.js) against every shared vector in
// tests/vectors/merge/: the same files the Python BarBook passes (tests/client/test_merge.py).
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import {
  applyUpdate,
  applyUpdates,
  ChangeKind,
  createState,
  FIELDS,
  IgnoreReason,
  loadSnapshot,
  seriesBars,
} from "../../src/fxconnector/ui/web/merge.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const VECTORS = join(HERE, "..", "vectors", "merge");
const FILES = readdirSync(VECTORS)
  .filter((name) => name.endsWith(".json"))
  .sort();

test("there are vector files to run", () => {
  assert.ok(FILES.length >= 8, `only ${FILES.length} vector files in ${VECTORS}`);
});

for (const file of FILES) {
  test(`vector ${file}`, () => {
    const vector = JSON.parse(readFileSync(join(VECTORS, file), "utf8"));
    assert.deepEqual(Object.keys(vector), ["name", "description", "steps"]);
    assert.equal(`${vector.name}.json`, file);
    const state = createState();
    vector.steps.forEach((step, number) => {
      let symbol;
      let tf;
      if ("event" in step) {
        assert.deepEqual(Object.keys(step), ["event", "change", "expect"], `step ${number}`);
        assert.deepEqual(Object.keys(step.event), FIELDS, `step ${number}: event fields`);
        const [change] = applyUpdates(state, [step.event]);
        assert.deepEqual(
          { kind: change.kind, reason: change.reason },
          step.change,
          `step ${number}: change`,
        );
        assert.equal(change.changed, step.change.kind !== ChangeKind.IGNORED);
        ({ symbol, tf } = step.event);
      } else {
        assert.deepEqual(Object.keys(step), ["snapshot", "expect"], `step ${number}`);
        ({ symbol, tf } = step.snapshot);
        loadSnapshot(state, symbol, tf, step.snapshot.bars);
      }
      assert.deepEqual(seriesBars(state, symbol, tf), step.expect, `step ${number}: bars`);
    });
  });
}

// --- beyond the vectors: what the Python book also does ------------------------------------

const T0 = 1_549_238_400_000; // 2019-02-04 00:00 UTC
const MINUTE = 60_000;

function final(k, rev = 0) {
  const base = 1.1456 + k * 0.0001;
  return {
    symbol: "EURUSD", tf: "1m", open_ms: T0 + k * MINUTE, close_ms: T0 + (k + 1) * MINUTE - 1,
    open: base, high: base + 0.0002 + rev * 0.00001, low: base - 0.0001, close: base + 0.0001,
    volume: 100 + rev, tick_count: 100 + rev, complete: true, source: "history",
    event_ts: T0 + (k + 1) * MINUTE - 1, rev,
  };
}

test("the same events twice change nothing the second time", () => {
  const events = [final(2), final(0), final(1, 1), final(1), final(3)];
  const state = createState();
  applyUpdates(state, events);
  const once = seriesBars(state, "EURUSD", "1m");
  const again = applyUpdates(state, events);
  assert.ok(again.every((change) => !change.changed));
  assert.deepEqual(seriesBars(state, "EURUSD", "1m"), once);
  assert.deepEqual(once.map((bar) => bar.rev), [0, 1, 0, 0]);
});

test("maxBars keeps the newest bars and ignores older keys", () => {
  const state = createState({ maxBars: 2 });
  applyUpdates(state, [final(1), final(2), final(3)]);
  assert.deepEqual(seriesBars(state, "EURUSD", "1m").map((bar) => bar.open_ms), [
    T0 + 2 * MINUTE,
    T0 + 3 * MINUTE,
  ]);
  const change = applyUpdate(state, final(0));
  assert.equal(change.reason, IgnoreReason.OUT_OF_WINDOW);
  assert.throws(() => createState({ maxBars: 0 }), RangeError);
});

test("a snapshot holding a preview or another series is refused", () => {
  const state = createState();
  const preview = { ...final(0), complete: false, source: "stream", event_ts: T0 + 5 };
  assert.throws(() => loadSnapshot(state, "EURUSD", "1m", [preview]), /not one of its finals/);
  assert.throws(() => loadSnapshot(state, "EURUSD", "5m", [final(0)]), /not one of its finals/);
});
