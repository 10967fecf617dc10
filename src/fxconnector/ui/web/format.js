// Formatting for the page: times in the chosen mode, ages, countdowns. Pure (no DOM, no clock
// reads: the caller passes the time in), tested by node.

export function pad(n, width = 2) {
  return String(n).padStart(width, "0");
}

/** "UTC+02:00" for an offset in ms. */
export function offsetLabel(offsetMs) {
  const minutes = Math.round(offsetMs / 60_000);
  const sign = minutes < 0 ? "-" : "+";
  const abs = Math.abs(minutes);
  return `UTC${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

/** A UTC epoch-ms moment shifted by `offsetMs`, labelled UTC or local. */
export function formatTime(ms, offsetMs, utc, { seconds = false } = {}) {
  if (ms === null || ms === undefined) return "—";
  const d = new Date(ms + offsetMs);
  const text = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}` +
    (seconds ? `:${pad(d.getUTCSeconds())}` : "");
  return `${text} ${utc ? "UTC" : "local"}`;
}

/** "4.2 s", "3 min 5 s", "2 h 10 min", "1.5 d". */
export function formatAge(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "—";
  const s = Math.max(ms, 0) / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  return `${(s / 86_400).toFixed(1)} d`;
}

/** Time left until the bar open at `openMs` closes (`tfMs` long), as "m:ss" or "h:mm:ss". */
export function formatCountdown(openMs, tfMs, nowMs) {
  const left = Math.max(openMs + tfMs - nowMs, 0);
  const total = Math.ceil(left / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  return h > 0 ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
}

/** The open_ms of the bucket holding `nowMs` for epoch-aligned timeframes (up to 1h). */
export function bucketOpen(nowMs, tfMs) {
  return nowMs - (((nowMs % tfMs) + tfMs) % tfMs);
}
