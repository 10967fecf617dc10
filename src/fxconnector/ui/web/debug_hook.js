// `window.__fx`: a small read-only debug hook over the page (the browser tests read the chart's
// data and the page's state through it; nothing in the page depends on it).

import { TF_MS } from "./chart_adapter.js";
import { seriesBars } from "./merge.js";

/** Install `window.__fx` over the page's state (`app`, the active pane, the stream state). */
export function installDebugHook({ app, activePane, streamState }) {
  const paneOf = () => activePane();
  window.__fx = Object.freeze({
    /** The active chart's candle data as the library holds it (bars only: no whitespace). */
    bars: () => (paneOf() ? paneOf().chart.candles() : []),
    /** The active chart's volume data. */
    volumes: () => (paneOf() ? paneOf().chart.volumes() : []),
    /** The markers drawn (long gaps, revisions). */
    markers: () => (paneOf() ? paneOf().chart.markers() : []),
    /** The merged bars of the active series (ohlcv_event_v1 objects). */
    book: () => {
      const pane = paneOf();
      return pane ? seriesBars(pane.book, pane.symbol, pane.tf).map((b) => ({ ...b })) : [];
    },
    /** A moving average's line as drawn on the active chart. */
    line: (name) => (paneOf() ? paneOf().chart.lineData(name) : []),
    /** Its dashed step to the live (preview) bar: two points, or none. */
    linePreview: (name) => (paneOf() ? paneOf().chart.linePreview(name) : []),
    /** Every pane in short. */
    panes: () => app.panes.map((pane) => ({
      symbol: pane.symbol, tf: pane.tf, stream: pane.stream, loads: pane.loads,
      bars: pane.chart.candles().length, visibleMs: pane.chart.visibleMs(),
      hovered: pane.hovered ? pane.hovered.open_ms : null, history: { ...pane.history },
      crosshair: pane.chart.syncedCrosshair(), startOfData: pane.chart.startOfDataTime(),
      firstOpenMs: pane.chart.firstOpenMs(), atRealtime: pane.chart.atRealtime(),
    })),
    /** The page's state in short (the active pane's). */
    state: () => {
      const pane = paneOf();
      return {
        symbol: pane?.symbol ?? null, tf: pane?.tf ?? null, utc: app.utc, offsetMs: app.offsetMs,
        stream: streamState(), statusOk: app.statusOk, lost: app.lostSince !== null,
        lastEventId: pane?.lastEventId ?? null, cursor: pane?.cursor ?? null,
        events: pane?.events ?? 0, loads: pane?.loads ?? 0, generation: pane?.generation ?? 0,
        layout: app.layout, active: app.active, averages: [...app.averages],
        hovered: pane?.hovered ? pane.hovered.open_ms : null,
        history: pane ? { ...pane.history } : null,
        visibleRange: pane ? pane.chart.visibleRange() : null,
        visibleTimes: pane ? pane.chart.visibleTimes() : null,
        tfMs: pane ? TF_MS[pane.tf] : null,
      };
    },
    /** The x coordinate (px in the chart) of a chart time on the active chart, or null. */
    xOf: (time) => (paneOf() ? paneOf().chart.chart.timeScale().timeToCoordinate(time) : null),
    /** The time scale's logical index of a chart time (gaps' empty slots have one), or null. */
    indexOf: (time) => (paneOf() ? paneOf().chart.indexOf(time) : null),
  });
}
