// Money, times and states as a technician reads them.

let currency = "EUR";
const moneyFormats = new Map();

export function setCurrency(code) {
  if (code) currency = code;
}

export function currencyCode() {
  return currency;
}

/** Integer cents -> "€1.20" in the browser's language. */
export function money(cents) {
  if (cents === null || cents === undefined) return "";
  let format = moneyFormats.get(currency);
  if (!format) {
    format = new Intl.NumberFormat(undefined, { style: "currency", currency });
    moneyFormats.set(currency, format);
  }
  return format.format(cents / 100);
}

/** "1.20" or "1,20" typed by a person -> 120 cents; NaN when it is not an amount. */
export function parseCents(text) {
  const cleaned = String(text).trim().replace(/\s/g, "").replace(",", ".");
  if (!/^-?\d+(\.\d{1,2})?$/.test(cleaned)) return Number.NaN;
  return Math.round(Number(cleaned) * 100);
}

/** Cents -> "1.20" for an input's value. */
export function centsInput(cents) {
  return (cents / 100).toFixed(2);
}

const timeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "short", timeStyle: "medium" });
const clockFormat = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });

export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : timeFormat.format(date);
}

export function clock(iso) {
  const date = iso ? new Date(iso) : new Date();
  return Number.isNaN(date.getTime()) ? String(iso) : clockFormat.format(date);
}

/** "3 min ago" for a time in the past. */
export function ago(iso) {
  const seconds = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  if (!Number.isFinite(seconds)) return "";
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

/** A datetime-local input's value ("2024-05-01T10:00", local time) -> ISO UTC, or "". */
export function localToIso(value) {
  if (!value) return "";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? "" : date.toISOString();
}

export function words(code) {
  return String(code ?? "").replaceAll("_", " ");
}

/** A field name from the API as a label: "motor_seconds" -> "motor seconds", "dropped_s" -> "dropped (s)". */
export function label(key) {
  return words(String(key).replace(/_s$/, " (s)").replace(/_cents$/, " (cents)"));
}
