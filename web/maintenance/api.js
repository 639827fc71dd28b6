// The maintenance API: same origin, JSON, one error shape, a session cookie and a CSRF token.
//
// Every request that changes something carries the X-CSRF-Token the login (or /me) gave; an
// answer of 401 means the session is over, and whoever listens (app.js) shows the login.

/** An answer other than 2xx: `code` is the API's error code ("login_failed", "locked"...). */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const BASE = "/api/maintenance";
const TIMEOUT_MS = 20000;
const SAFE = new Set(["GET", "HEAD"]);

let csrfToken = "";
let onLoggedOut = () => {};

export function setCsrfToken(token) {
  csrfToken = token ?? "";
}

export function whenLoggedOut(listener) {
  onLoggedOut = listener;
}

/** `path` is under /api/maintenance unless it starts with /api/. */
export function url(path, query) {
  const full = path.startsWith("/api/") ? path : BASE + path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null && value !== "") params.append(key, value);
  }
  const text = params.toString();
  return text ? `${full}?${text}` : full;
}

export async function request(method, path, { body, query, quiet401 = false } = {}) {
  const options = {
    method,
    headers: { Accept: "application/json" },
    cache: "no-store",
    credentials: "same-origin",
    signal: AbortSignal.timeout(TIMEOUT_MS),
  };
  if (!SAFE.has(method)) options.headers["X-CSRF-Token"] = csrfToken;
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url(path, query), options);
  } catch (error) {
    throw new ApiError(0, "network", `the kiosk did not answer (${error.message ?? error})`);
  }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const detail = data?.error ?? {};
    const error = new ApiError(response.status, detail.code ?? `http_${response.status}`,
                               detail.message ?? (response.statusText || "request failed"));
    if (response.status === 401 && !quiet401) onLoggedOut(error);
    throw error;
  }
  return data;
}

export const get = (path, query) => request("GET", path, { query });
export const post = (path, body) => request("POST", path, { body });
export const patch = (path, body) => request("PATCH", path, { body });
export const remove = (path, body) => request("DELETE", path, { body });
