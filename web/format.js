// Small presentation helpers shared by the page's modules: sizes, rates, durations, sentences.

/// `1536` -> "1.5 KiB". Sizes are binary (KiB, MiB, GiB), as a file manager shows them.
export function formatBytes(n) {
  if (!Number.isFinite(n) || n < 0) return '?';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 * 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 / 1024 / 1024).toFixed(2)} GiB`;
}

/// Bytes per second -> "1.2 MiB/s".
export function formatRate(bps) {
  if (!Number.isFinite(bps) || bps <= 0) return '0 B/s';
  return `${formatBytes(Math.round(bps))}/s`;
}

/// Seconds -> "45 s", "3 min 5 s", "2 h 10 min"; null (unknown) -> "unknown".
export function formatDuration(s) {
  if (s === null || s === undefined || !Number.isFinite(s)) return 'unknown';
  const t = Math.max(0, Math.round(s));
  if (t < 60) return `${t} s`;
  if (t < 3600) return `${Math.floor(t / 60)} min ${t % 60} s`;
  return `${Math.floor(t / 3600)} h ${Math.floor((t % 3600) / 60)} min`;
}

/// Capitalised, ending with a full stop: every message the page shows is a sentence.
export function sentence(text) {
  const s = String(text ?? '').trim();
  if (!s) return s;
  return s[0].toUpperCase() + s.slice(1) + (/[.!?]$/.test(s) ? '' : '.');
}

/// The sentence of a thrown or rejected value: the node's `{ code, message }` errors, DOM
/// exceptions, or anything else.
export function errorSentence(err) {
  if (err && typeof err.message === 'string' && err.message) return sentence(err.message);
  return sentence(String(err));
}
