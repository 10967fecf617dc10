// The SMC overlay's pure part (src/fxconnector/ui/web/smc_overlay.js): which hints become which
// shapes, and that nothing is drawn before the chart holds its confirming final.
import assert from "node:assert/strict";
import { test } from "node:test";

import { addHint, enabledKinds, shapesOf, SMC_GROUPS } from "../../src/fxconnector/ui/web/smc_overlay.js";

const M = 60_000;
const T = 1_700_000_000_000 - (1_700_000_000_000 % M);
const close = (k) => T + (k + 1) * M - 1; // the close of bar k
const all = enabledKinds(Object.fromEntries(SMC_GROUPS.map((g) => [g.key, true])));

function hint(kind, anchorBar, confirmBar, extra = {}) {
  const direction = extra.direction ?? "bull";
  return { symbol: "EURUSD", tf: "1m", kind, id: `EURUSD:1m:${kind}:${direction}:${T + anchorBar * M}`,
    rev: 0, anchor_ts: T + anchorBar * M, confirm_ts: close(confirmBar), direction, ...extra };
}

const fvg = hint("fvg", 1, 2, { top: 1.2, bottom: 1.1 });
const mitigated = hint("fvg_mitigated", 1, 6, { top: 1.2, bottom: 1.1, ref: fvg.id });
const swing = hint("swing_high", 3, 8, { price: 1.3, direction: "bear" });
const bos = hint("bos", 3, 10, { price: 1.3, ref: swing.id });

test("a hint is drawn only once its confirming final is the edge or before it", () => {
  const hints = [fvg, mitigated, swing, bos];
  assert.deepEqual(shapesOf(hints, close(1), all, M), []);
  const atTwo = shapesOf(hints, close(2), all, M);
  assert.deepEqual(atTwo.map((s) => s.id), [fvg.id]);
  assert.equal(atTwo[0].toMs, T + 2 * M); // active: up to the live edge
  const atSeven = shapesOf(hints, close(7), all, M);
  assert.equal(atSeven[0].toMs, T + 6 * M); // ends at the mitigating bar
  assert.ok(!atSeven.some((s) => s.id === swing.id)); // confirmed at bar 8, not yet
  const atTen = shapesOf(hints, close(10), all, M);
  const line = atTen.find((s) => s.id === bos.id);
  assert.deepEqual([line.type, line.fromMs, line.toMs, line.label], ["line", T + 3 * M, T + 10 * M, "BOS"]);
  assert.equal(atTen.find((s) => s.id === swing.id).type, "marker");
  assert.deepEqual(shapesOf(hints, null, all, M), []);
});

test("toggles, revisions and retractions", () => {
  const noSwings = enabledKinds({ swings: false });
  assert.ok(!shapesOf([swing], close(9), noSwings, M).length);
  const byId = new Map();
  assert.ok(addHint(byId, fvg));
  assert.ok(!addHint(byId, fvg));
  assert.ok(addHint(byId, { ...fvg, rev: 1, retracted: true }));
  assert.deepEqual(shapesOf(byId.values(), close(5), all, M), []);
});
