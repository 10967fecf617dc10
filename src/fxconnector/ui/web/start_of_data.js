// A series primitive (lightweight-charts' plugin API) marking the start of the data: the area
// left of the first bar is shaded, with a dashed line and the words "start of data".

import { COLORS } from "./timeline.js";

/**
 * A series primitive (the library's plugin API) that marks the start of the data: the area
 * left of the first bar is shaded, with a dashed line and the words "start of data".
 */
export class StartOfData {
  constructor() {
    this.time = null;
    this.chart = null;
    this.requestUpdate = () => {};
  }

  attached({ chart, requestUpdate }) {
    this.chart = chart;
    this.requestUpdate = requestUpdate;
  }

  detached() {
    this.chart = null;
  }

  set(time) {
    this.time = time;
    this.requestUpdate();
  }

  updateAllViews() {}

  paneViews() {
    const self = this;
    return [{
      zOrder: () => "bottom",
      renderer: () => ({
        draw(target) {
          if (self.time === null || self.chart === null) return;
          const x = self.chart.timeScale().timeToCoordinate(self.time);
          if (x === null) return;
          target.useMediaCoordinateSpace(({ context, mediaSize }) => {
            const edge = Math.round(x) - 6;
            if (edge <= 0) return;
            context.fillStyle = "rgba(149, 152, 161, 0.08)";
            context.fillRect(0, 0, edge, mediaSize.height);
            context.strokeStyle = COLORS.gap;
            context.setLineDash([4, 4]);
            context.beginPath();
            context.moveTo(edge + 0.5, 0);
            context.lineTo(edge + 0.5, mediaSize.height);
            context.stroke();
            context.setLineDash([]);
            context.fillStyle = COLORS.gap;
            context.font = "12px system-ui, sans-serif";
            context.textAlign = "left";
            context.fillText("◂ start of data", edge + 6, 16);
          });
        },
      }),
    }];
  }
}
