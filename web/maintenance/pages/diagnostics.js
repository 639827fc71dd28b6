// Diagnostics: test-vend a slot (one revolution, no payment), the fingerprint reader's
// library against the members' pages, the card reader and its re-initialisation, how late the
// kiosk's event loop ran lately, and a live tail of device events from the technician's stream.

import * as api from "../api.js";
import { field, fill, h } from "../dom.js";
import { clock, label, when, words } from "../format.js";
import { TECHNICIAN_EVENTS, follow } from "../live.js";
import { notify, problem } from "../notices.js";

const TAIL_LENGTH = 200;
// A lag a motor's stop can afford; past it the figure is shown as a warning.
const LAG_TARGET_MS = 50;
const el = {};
let stream = null;
let paused = false;

export default {
  title: "Diagnostics",
  mount(section) {
    el.slot = h("select", { name: "slot" });
    el.vend = h("button", { type: "submit", class: "primary" }, "Test vend");
    el.vendResult = h("div", { id: "test-vend-result", role: "status" });
    const vendForm = h("form", { class: "editor", onsubmit: testVend },
      h("p", { class: "muted" }, "Turns the slot one revolution without payment; a product "
                                 + "that drops leaves the stock like a sale."),
      h("div", { class: "row" }, field("Slot", el.slot), el.vend));
    el.fingerprint = h("div", { id: "fingerprint-diagnostics" });
    el.card = h("div", { id: "card-diagnostics" });
    el.loop = h("div", { id: "event-loop-diagnostics" });
    el.tail = h("ol", { class: "tail", id: "event-tail", "aria-live": "off",
                        "aria-label": "Device events, newest first" });
    el.tailState = h("span", { class: "muted", role: "status" });
    el.pause = h("button", { type: "button", class: "small", "aria-pressed": "false",
                             onclick: togglePause }, "Pause");
    fill(section,
      h("div", { class: "page-head" }, h("h2", { id: "title-diagnostics" }, "Diagnostics")),
      h("div", { class: "cards" },
        h("article", { class: "card", "aria-labelledby": "vend-title" },
          h("h3", { id: "vend-title" }, "Test vend"), vendForm, el.vendResult),
        h("article", { class: "card", "aria-labelledby": "fp-title" },
          h("h3", { id: "fp-title" }, "Fingerprint reader"), el.fingerprint),
        h("article", { class: "card", "aria-labelledby": "card-title" },
          h("h3", { id: "card-title" }, "Card reader"), el.card),
        h("article", { class: "card", "aria-labelledby": "loop-title" },
          h("h3", { id: "loop-title" }, "Event loop"), el.loop)),
      h("div", { class: "page-head" }, h("h3", { class: "section-title" }, "Live device events"),
        el.tailState,
        h("div", { class: "actions" }, el.pause,
          h("button", { type: "button", class: "small", onclick: () => fill(el.tail) }, "Clear"))),
      el.tail);
  },
  show() {
    loadSlots();
    loadFingerprint();
    loadCard();
    loadEventLoop();
    stream ??= follow(onEvent, {
      url: TECHNICIAN_EVENTS,
      onOpen: (open) => { el.tailState.textContent = open ? "live" : "reconnecting…"; },
    });
  },
  hide() {
    stream?.stop();
    stream = null;
  },
};

// --- test vend -------------------------------------------------------------------------------

async function loadSlots() {
  try {
    const { slots } = await api.get("/planogram");
    const chosen = el.slot.value;
    fill(el.slot, slots.map((slot) => h("option", { value: slot.code, selected: slot.code === chosen },
      `${slot.code} · ${slot.product?.name ?? "empty"} (${slot.stock}/${slot.capacity})`)));
  } catch (error) {
    if (error.status !== 401) notify(problem(error, "No slots"), "bad");
  }
}

async function testVend(event) {
  event.preventDefault();
  const slot = el.slot.value;
  el.vend.disabled = true;
  el.vend.textContent = `Turning ${slot}…`;
  fill(el.vendResult);
  try {
    const result = await api.post("/diagnostics/test-vend", { slot });
    fill(el.vendResult, h("div", { class: "result" },
      h("p", {}, h("strong", { class: result.delivered ? "good" : "bad" },
        `${result.slot}: ${words(result.outcome)}`)),
      h("dl", { class: "facts compact" },
        h("dt", {}, "Took"), h("dd", {}, `${result.seconds} s (motor ${result.motor_seconds} s)`),
        h("dt", {}, "Nudges"), h("dd", {}, String(result.nudges)),
        h("dt", {}, "Stock"), h("dd", {}, `${result.stock_before ?? "?"} → ${result.stock_after ?? "?"}`),
        Object.entries(result.detail).map(([key, value]) => [h("dt", {}, label(key)),
                                                             h("dd", {}, String(value))]))));
    loadSlots();
  } catch (error) {
    fill(el.vendResult, h("p", { class: "error" }, problem(error, `Test vend of ${slot}`)));
  } finally {
    el.vend.disabled = false;
    el.vend.textContent = "Test vend";
  }
}

// --- readers ---------------------------------------------------------------------------------

function deviceState(device) {
  return h("p", {}, h("span", { class: `badge ${device.state}` }, device.state), " ", device.reason);
}

function deviceRows(device) {
  return [
    h("dt", {}, "Driver"), h("dd", { class: "mono" }, device.driver),
    h("dt", {}, "Since"), h("dd", {}, when(device.since)),
  ];
}

async function loadFingerprint() {
  let info;
  try {
    info = await api.get("/diagnostics/fingerprint");
  } catch (error) {
    if (error.status !== 401) fill(el.fingerprint, h("p", { class: "error" }, problem(error, "No details")));
    return;
  }
  const pages = (list) => (list?.length ? list.join(", ") : "none");
  fill(el.fingerprint, deviceState(info.device),
    h("dl", { class: "facts" }, deviceRows(info.device),
      h("dt", {}, "Templates stored"), h("dd", { id: "fp-templates" }, info.templates ?? "?"),
      h("dt", {}, "Capacity"), h("dd", {}, info.capacity ?? "?"),
      h("dt", {}, "Security level"), h("dd", {}, info.security_level ?? "?"),
      h("dt", {}, "Members enrolled"), h("dd", {}, String(info.enrolled_members)),
      h("dt", {}, "Pages in use"), h("dd", {}, info.used_pages ? pages(info.used_pages) : "?"),
      h("dt", {}, "Orphan pages"), h("dd", { class: info.orphan_pages.length ? "warn" : "" },
                                     pages(info.orphan_pages)),
      h("dt", {}, "Missing pages"), h("dd", { class: info.missing_pages.length ? "bad" : "" },
                                      pages(info.missing_pages))),
    info.error ? h("p", { class: "error" }, info.error) : null,
    info.enrolment ? h("p", { class: "warn" }, `Enrolling ${info.enrolment.name}: `
                                              + `${words(info.enrolment.step)}`) : null,
    h("button", { type: "button", class: "small", onclick: loadFingerprint }, "Ask the reader again"));
}

async function loadCard(answer) {
  let info = answer;
  if (!info) {
    try {
      info = await api.get("/diagnostics/card");
    } catch (error) {
      if (error.status !== 401) fill(el.card, h("p", { class: "error" }, problem(error, "No details")));
      return;
    }
  }
  const again = h("button", { type: "button", onclick: reinitialise }, "Re-initialise");
  fill(el.card, deviceState(info.device),
    h("dl", { class: "facts" }, deviceRows(info.device), Object.entries(info.device.detail).map(([key, value]) => [
      h("dt", {}, label(key)), h("dd", {}, String(value))])),
    h("p", {}, info.enabled ? "Taking cards (the kiosk is in service)."
                            : "Not taking cards (the kiosk is out of service)."),
    again);
}

async function reinitialise(event) {
  const button = event.currentTarget;
  button.disabled = true;
  button.textContent = "Re-initialising…";
  try {
    const info = await api.post("/diagnostics/card/reinitialise");
    notify(`Card reader re-initialised: ${info.device.state}.`);
    loadCard(info);
  } catch (error) {
    notify(problem(error, "Card reader not re-initialised"), "bad");
    loadCard();
  }
}

// --- event loop ------------------------------------------------------------------------------

async function loadEventLoop() {
  let lag;
  try {
    ({ event_loop: lag } = await api.get("/diagnostics/event-loop"));
  } catch (error) {
    if (error.status !== 401) fill(el.loop, h("p", { class: "error" }, problem(error, "No figures")));
    return;
  }
  const ms = (value) => `${Number(value.toFixed(1))} ms`;
  const late = (value) => (value > lag.threshold_ms ? "bad" : value > LAG_TARGET_MS ? "warn" : "");
  const span = lag.window_s % 60 ? `${lag.window_s} s` : `${lag.window_s / 60} min`;
  const times = ["never", "once"][lag.blocked_episodes] ?? `${lag.blocked_episodes} times`;
  fill(el.loop,
    h("p", { class: "muted" }, "How late the kiosk's loop ran: while it is held up, no motor "
                               + "can be stopped and no drop recorded."),
    h("dl", { class: "facts" },
      h("dt", {}, "Lag p99"), h("dd", { id: "loop-lag-p99", class: late(lag.lag_p99_ms) }, ms(lag.lag_p99_ms)),
      h("dt", {}, "Lag max"), h("dd", { id: "loop-lag-max", class: late(lag.lag_max_ms) }, ms(lag.lag_max_ms)),
      h("dt", {}, "Held up"), h("dd", { id: "loop-blocked", class: lag.blocked_episodes ? "bad" : "" },
                                `${times} over ${ms(lag.threshold_ms)}`),
      h("dt", {}, "Window"), h("dd", {}, `the last ${span}`)),
    h("button", { type: "button", class: "small", onclick: loadEventLoop }, "Measure again"));
}

// --- live tail -------------------------------------------------------------------------------

function togglePause() {
  paused = !paused;
  el.pause.textContent = paused ? "Resume" : "Pause";
  el.pause.setAttribute("aria-pressed", String(paused));
}

function onEvent(topic, data) {
  if (topic === "devices") return; // the snapshot on (re)connection
  if (topic === "session_ended") {
    api.request("GET", "/me").catch(() => {}); // shows the login
    return;
  }
  if (topic === "device" && data.state) {
    if (data.device === "card") loadCard();
    if (data.device === "fingerprint") loadFingerprint();
  }
  if (paused) return;
  const text = describe(topic, data);
  const bad = data.state === "offline" || data.state === "failed" || /jam|fail|error/i.test(text);
  el.tail.prepend(h("li", { class: bad ? "bad" : "" },
    h("time", {}, clock()), h("span", { class: "topic" }, topic), text));
  while (el.tail.children.length > TAIL_LENGTH) el.tail.lastChild.remove();
}

function describe(topic, data) {
  if (topic === "enrolment") {
    return `member ${data.member} page ${data.page}: ${words(data.step)} (${data.state})`
      + (data.reason ? ` ${data.reason}` : "");
  }
  const { device, event, state, reason, ...rest } = data;
  const head = [device, event ? words(event) : null, state, reason].filter(Boolean).join(" · ");
  const extra = Object.entries(rest).map(([key, value]) =>
    `${key}=${typeof value === "object" ? JSON.stringify(value) : value}`).join(" ");
  return extra ? `${head} ${extra}` : head;
}
