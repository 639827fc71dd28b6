// Live event streams (server-sent events) for pages that update as things happen.
//
// The maintenance stream (GET /api/maintenance/diagnostics/events, logged-in only) carries
// service, devices, device, sale, catalog and enrolment events, from any technician network;
// the kiosk's own stream (GET /api/events) is for the touchscreen and trusted networks.
// Pages poll as well; a stream only makes them quicker. EventSource retries by itself after
// a network error; after an HTTP error it gives up, so it is tried again later.

export const KIOSK_EVENTS = "/api/events";
export const TECHNICIAN_EVENTS = "/api/maintenance/diagnostics/events";
const TOPICS = ["service", "devices", "device", "sale", "catalog", "enrolment", "session_ended"];
const RETRY_MS = 15000;

/** Call `listener(topic, data, id)` for every event; returns `{stop(), open}`. */
export function follow(listener, { url = KIOSK_EVENTS, onOpen = null } = {}) {
  let source = null;
  let timer = null;
  let stopped = false;
  const connect = () => {
    source = new EventSource(url);
    for (const topic of TOPICS) {
      source.addEventListener(topic, (message) => {
        let data;
        try {
          data = JSON.parse(message.data);
        } catch {
          return;
        }
        listener(topic, data, message.lastEventId);
      });
    }
    source.onopen = () => onOpen?.(true);
    source.onerror = () => {
      onOpen?.(false);
      if (source.readyState === EventSource.CLOSED && !stopped) {
        source.close();
        timer = setTimeout(connect, RETRY_MS);
      }
    };
  };
  connect();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
      source?.close();
    },
    get open() {
      return source?.readyState === EventSource.OPEN;
    },
  };
}

// One connection to the kiosk's stream for the whole page, shared by whoever listens.
const listeners = new Set();
let shared = null;

/** Listen to the maintenance stream; returns the function that stops listening. */
export function subscribe(listener) {
  listeners.add(listener);
  shared ??= follow((topic, data, id) => {
    for (const each of listeners) each(topic, data, id);
  }, { url: TECHNICIAN_EVENTS });
  return () => {
    listeners.delete(listener);
    if (!listeners.size && shared) {
      shared.stop();
      shared = null;
    }
  };
}

export function kioskStreamOpen() {
  return shared?.open ?? false;
}
