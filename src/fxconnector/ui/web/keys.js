// Keyboard shortcuts: S / Shift+S next / previous symbol, T / Shift+T timeframe, R or End the
// live edge (realtime), L / Shift+L charts (1, 2, 4), M / Shift+M moving averages. Keys typed
// into a form control, or with Ctrl, Meta or Alt, are left alone.

/** The action name of a key, or null. */
export function actionOf(key) {
  switch (key.toLowerCase()) {
    case "s": return "symbol";
    case "t": return "timeframe";
    case "r":
    case "end": return "realtime";
    case "l": return "layout";
    case "m": return "averages";
    default: return null;
  }
}

/** Call `actions[name](by)` (by: +1, or -1 with Shift) for the keys pressed on `target`. */
export function bindKeys(target, actions) {
  target.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const from = event.target;
    if (from instanceof HTMLElement && from.closest("input, select, textarea")) return;
    const name = actionOf(event.key);
    if (name === null) return;
    actions[name](event.shiftKey ? -1 : 1);
    event.preventDefault();
  });
}
