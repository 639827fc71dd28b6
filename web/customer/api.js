// The kiosk's customer API and its live event stream. Same origin, JSON, one error shape.

/** An answer other than 2xx: `code` is the API's error code ("busy", "out_of_service"...). */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const TIMEOUT_MS = 15000;

async function request(method, path, body) {
  const options = { method, headers: { Accept: "application/json" }, cache: "no-store" };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  options.signal = AbortSignal.timeout(TIMEOUT_MS);
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    throw new ApiError(0, "network", String(error));
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const detail = data?.error ?? {};
    throw new ApiError(response.status, detail.code ?? "http_" + response.status,
                       detail.message ?? response.statusText);
  }
  return data;
}

export const api = {
  catalog: () => request("GET", "/api/catalog"),
  startSale: (slot, method) => request("POST", "/api/sales", { slot, method }),
  sale: (id) => request("GET", `/api/sales/${encodeURIComponent(id)}`),
  cancelSale: (id) => request("POST", `/api/sales/${encodeURIComponent(id)}/cancel`),
};

const TOPICS = ["service", "devices", "sale", "catalog", "device"];
const RETRY_MS = 3000;

/**
 * Follow GET /api/events. `handlers` has one function per topic, plus `open()` called on every
 * (re)connection (the server then sends the current state first) and `lost()` when it drops.
 * EventSource reconnects by itself after a network error; after an HTTP error it gives up,
 * so then a new one is made.
 */
export function followEvents(handlers) {
  let source = null;
  const connect = () => {
    source = new EventSource("/api/events");
    for (const topic of TOPICS) {
      source.addEventListener(topic, (message) => {
        let data;
        try {
          data = JSON.parse(message.data);
        } catch {
          return;
        }
        handlers[topic]?.(data);
      });
    }
    source.onopen = () => handlers.open?.();
    source.onerror = () => {
      handlers.lost?.();
      if (source.readyState === EventSource.CLOSED) {
        source.close();
        setTimeout(connect, RETRY_MS);
      }
    };
  };
  connect();
  return { isOpen: () => source !== null && source.readyState === EventSource.OPEN };
}
