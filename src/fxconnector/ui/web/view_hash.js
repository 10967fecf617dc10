// The view in the location hash:
// `#symbol=EURUSD&tf=1m&tz=utc&layout=2&charts=GBPUSD.5m&ma=sma20,ema50&from=..&to=..`
// (pure: parse and build; app.js reads and writes location). The first chart's symbol and
// timeframe are `symbol` and `tf`; `charts` lists the others (`SYMBOL.TF`, comma-separated);
// `ma` the moving averages shown; `from`/`to` are the visible span in UTC epoch seconds. Anything unknown or malformed falls
// back to a default instead of failing: a hand-edited hash must never break the page.

export const LAYOUTS = Object.freeze([1, 2, 4]);
export const AVERAGE_NAMES = Object.freeze(["sma20", "ema50"]);

/** The view of `hash` (with or without the "#") for the served symbols and timeframes. */
export function parseView(hash, served) {
  const params = new URLSearchParams(hash.replace(/^#/, ""));
  const symbol = served.symbols.includes(params.get("symbol")) ? params.get("symbol")
    : served.symbols[0];
  const tf = served.timeframes.includes(params.get("tf")) ? params.get("tf") : served.timeframes[0];
  const layoutNumber = Number(params.get("layout"));
  const layout = LAYOUTS.includes(layoutNumber) ? layoutNumber : 1;
  const charts = [{ symbol, tf }];
  const listed = (params.get("charts") ?? "").split(",").filter(Boolean);
  for (let k = 1; k < layout; k++) {
    const [s, t] = (listed[k - 1] ?? "").split(".");
    charts.push(served.symbols.includes(s) && served.timeframes.includes(t) ? { symbol: s, tf: t }
      : defaultChart(charts[0], k, served));
  }
  const from = Number(params.get("from"));
  const to = Number(params.get("to"));
  const range = Number.isInteger(from) && Number.isInteger(to) && from > 0 && to > from
    ? { from: from * 1000, to: to * 1000 } : null;
  const averages = AVERAGE_NAMES.filter((name) =>
    (params.get("ma") ?? "").split(",").includes(name));
  return { charts, layout, utc: params.get("tz") !== "local", range, averages };
}

/** The hash of a view (without the "#"). */
export function formatView({ charts, layout, utc, range, averages = [] }) {
  const params = new URLSearchParams({ symbol: charts[0].symbol, tf: charts[0].tf,
    tz: utc ? "utc" : "local" });
  if (layout > 1) {
    params.set("layout", String(layout));
    params.set("charts", charts.slice(1, layout).map((c) => `${c.symbol}.${c.tf}`).join(","));
  }
  if (averages.length) params.set("ma", averages.join(","));
  if (range) {
    params.set("from", String(Math.floor(range.from / 1000)));
    params.set("to", String(Math.ceil(range.to / 1000)));
  }
  return params.toString();
}

/** The k-th extra chart by default: the first chart's symbol on the next timeframes. */
export function defaultChart(first, k, served) {
  const at = served.timeframes.indexOf(first.tf);
  const tf = served.timeframes[(at + k) % served.timeframes.length];
  return { symbol: first.symbol, tf };
}
