// Moving averages over merged bars. Pure (tested by node).
//
// Rules: an average is computed over final bars only; a preview at the end (the live candle)
// gives one more point, flagged `preview: true`, computed as if the preview closed now, so the
// chart can draw it apart (it moves until the final arrives). A preview in the middle of the
// bars (not possible in a merged book, where previews are only the newest keys) is skipped.

/** Simple moving average of `period` closes: [{open_ms, value, preview}]. */
export function sma(bars, period) {
  return movingAverage(bars, period, (window) => window.reduce((a, b) => a + b, 0) / period);
}

/** Exponential moving average (alpha 2/(period+1)), seeded with the SMA of the first period. */
export function ema(bars, period) {
  const alpha = 2 / (period + 1);
  const points = [];
  const finals = bars.filter((b) => b.complete);
  let value = null;
  for (let i = 0; i < finals.length; i++) {
    if (i < period - 1) continue;
    if (value === null) {
      value = finals.slice(0, period).reduce((a, b) => a + b.close, 0) / period;
    } else {
      value = alpha * finals[i].close + (1 - alpha) * value;
    }
    points.push({ open_ms: finals[i].open_ms, value, preview: false });
  }
  const last = bars[bars.length - 1];
  if (last && !last.complete && value !== null) {
    points.push({ open_ms: last.open_ms, value: alpha * last.close + (1 - alpha) * value,
      preview: true });
  }
  return points;
}

function movingAverage(bars, period, average) {
  const points = [];
  const finals = bars.filter((b) => b.complete);
  const closes = finals.map((b) => b.close);
  for (let i = period - 1; i < finals.length; i++) {
    points.push({ open_ms: finals[i].open_ms, value: average(closes.slice(i - period + 1, i + 1)),
      preview: false });
  }
  const last = bars[bars.length - 1];
  if (last && !last.complete && closes.length >= period - 1 && period > 1) {
    const window = closes.slice(closes.length - period + 1).concat(last.close);
    points.push({ open_ms: last.open_ms, value: average(window), preview: true });
  }
  return points;
}
