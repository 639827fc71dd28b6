// Dashboard: the kiosk at a glance (service, devices, today's takings, what needs a
// technician) and charts of sales and stock. Polls while shown; the event stream, where the
// network allows it, makes it refresh at once.

import * as api from "../api.js";
import { h, fill, field } from "../dom.js";
import { ago, clock, label, money, when, words } from "../format.js";
import { kioskStreamOpen, subscribe } from "../live.js";
import { notify, problem } from "../notices.js";
import { salesCharts, stockChart } from "./dashboard-charts.js";

const POLL_MS = 5000;
const CHARTS_MS = 60000;
const DEVICE_NAMES = { vending: "Vending mechanism", card: "Card reader",
                       fingerprint: "Fingerprint reader" };

let app = null;
let timer = null;
let chartsTimer = null;
let unsubscribe = null;
let soon = null;
let active = false;
const el = {};

export default {
  title: "Dashboard",
  mount(section, shell) {
    app = shell;
    el.updated = h("p", { class: "muted", id: "dashboard-updated", role: "status" });
    el.status = h("p", { class: "big", id: "service-state" });
    el.reasons = h("ul", { class: "reasons", id: "service-reasons" });
    el.reason = h("input", { name: "reason", maxlength: 200, autocomplete: "off",
                             placeholder: "e.g. restocking, cleaning the drop tray" });
    el.reasonField = field("Reason (shown on the dashboard)", el.reason);
    el.toggle = h("button", { type: "submit", id: "service-toggle", class: "primary" });
    el.serviceForm = h("form", { class: "service-form", onsubmit: toggleService },
                       el.reasonField, el.toggle);
    el.today = h("div", { class: "figures" });
    el.review = h("div", { id: "review" });
    el.attention = h("div", { id: "attention" });
    el.devices = h("div", { class: "devices", id: "devices" });
    el.database = h("p", { id: "database" });
    el.sales = h("div", { class: "charts", id: "sales-charts" });
    el.stock = h("div", { class: "charts", id: "stock-chart" });
    fill(section,
      h("div", { class: "page-head" }, h("h2", { id: "title-dashboard" }, "Dashboard"), el.updated),
      h("div", { class: "cards" },
        h("article", { class: "card service", "aria-labelledby": "service-title" },
          h("h3", { id: "service-title" }, "Service"), el.status, el.reasons, el.serviceForm),
        h("article", { class: "card", "aria-labelledby": "today-title" },
          h("h3", { id: "today-title" }, "Today"), el.today),
        h("article", { class: "card", "aria-labelledby": "review-title" },
          h("h3", { id: "review-title" }, "Sales waiting for review"), el.review),
        h("article", { class: "card", "aria-labelledby": "attention-title" },
          h("h3", { id: "attention-title" }, "Slots needing attention"), el.attention)),
      h("h3", { class: "section-title" }, "Devices"),
      el.devices,
      el.database,
      h("h3", { class: "section-title" }, "Sales"),
      el.sales,
      h("h3", { class: "section-title" }, "Stock per slot"),
      el.stock);
  },
  show() {
    active = true;
    refresh();
    refreshCharts();
    unsubscribe ??= subscribe(onEvent);
  },
  hide() {
    active = false;
    clearTimeout(timer);
    clearTimeout(chartsTimer);
    clearTimeout(soon);
    unsubscribe?.();
    unsubscribe = null;
  },
};

function onEvent(topic) {
  if (topic === "enrolment") return;
  clearTimeout(soon);
  soon = setTimeout(() => {
    refresh();
    if (topic === "sale" || topic === "catalog") refreshCharts();
  }, 250);
}

async function refresh() {
  clearTimeout(timer);
  try {
    const [board, waiting] = await Promise.all([api.get("/dashboard"), waitingForReview()]);
    draw(board, waiting);
    el.updated.textContent = `Updated ${clock()}${kioskStreamOpen() ? " · live" : ""}`;
    el.updated.classList.remove("bad");
  } catch (error) {
    if (error.status === 401) return;
    el.updated.textContent = problem(error, "Not updated");
    el.updated.classList.add("bad");
  }
  clearTimeout(timer);
  if (active) timer = setTimeout(refresh, POLL_MS);
}

async function refreshCharts() {
  clearTimeout(chartsTimer);
  await Promise.all([salesCharts(el.sales), stockChart(el.stock)]);
  clearTimeout(chartsTimer);
  if (active) chartsTimer = setTimeout(refreshCharts, CHARTS_MS);
}

/**
 * Sales under review that no technician has resolved: the dashboard's own `needs_review`
 * counts resolved ones too (a resolved sale stays needs_review), so ask the sales list.
 */
async function waitingForReview() {
  try {
    const page = await api.get("/sales", { state: "needs_review", resolved: "false", limit: 200 });
    return { count: page.sales.length, more: Boolean(page.next_cursor) };
  } catch (error) {
    if (error.status === 401) throw error;
    return null;
  }
}

function draw(board, waiting) {
  app.service(board.service, board.held_by);
  app.simulated(Object.values(board.devices).some((device) => device.simulated));
  drawService(board.service, board.held_by);
  fill(el.today,
    h("p", {}, h("strong", { id: "today-sales" }, String(board.today.sales)), " sales"),
    h("p", {}, h("strong", { id: "today-revenue" }, money(board.today.revenue_cents)), " revenue"));
  const review = waiting ? waiting.count : board.needs_review;
  fill(el.review,
    h("p", { class: review ? "big bad" : "big" },
      h("span", { id: "review-count" }, `${review}${waiting?.more ? "+" : ""}`)),
    review ? h("a", { href: "#/sales?state=needs_review&resolved=false" }, "Review them") : h("p", { class: "muted" },
                                                                                "None: all clear."));
  fill(el.attention, board.attention.length
    ? h("ul", { class: "attention" }, board.attention.map((slot) => h("li", {},
        h("strong", {}, slot.slot), ` ${slot.product || "(empty)"}: ${slot.stock}/${slot.capacity}`,
        slot.fault ? h("span", { class: "bad" }, ` ${slot.fault}`) : null)))
    : h("p", { class: "muted" }, "Every slot is stocked and working."),
    h("a", { href: "#/stock" }, "Stock and prices"));
  fill(el.devices, Object.entries(board.devices).map(([kind, device]) => deviceCard(kind, device)));
  fill(el.database, board.database.writable
    ? h("span", { class: "muted" }, `Database ${board.database.path}: writable`)
    : h("span", { class: "bad" },
      `NOT writable: ${board.database.error}. Nothing is sold until it takes writes again.`));
}

function drawService(service, heldBy) {
  el.status.textContent = service.in_service ? "In service" : "Out of service";
  el.status.className = `big ${service.in_service ? "good" : "bad"}`;
  el.status.dataset.inService = String(service.in_service);
  const reasons = [...(service.reasons ?? [])];
  if (service.in_service && service.payment_methods?.length) {
    reasons.push(`Customers can pay by ${service.payment_methods.map(methodName).join(" or ")}.`);
  }
  fill(el.reasons, reasons.map((reason) => h("li", {}, reason)));
  // Held by a technician: the toggle puts it back; otherwise it takes it out.
  const held = Boolean(heldBy);
  el.serviceForm.dataset.held = String(held);
  el.reasonField.hidden = held;
  if (!el.toggle.disabled) el.toggle.textContent = held ? "Put back in service" : "Take out of service";
  el.toggle.className = held ? "primary" : "danger";
}

function methodName(method) {
  return { card: "card", account: "member fingerprint" }[method] ?? words(method);
}

async function toggleService(event) {
  event.preventDefault();
  const putBack = el.serviceForm.dataset.held === "true";
  el.toggle.disabled = true;
  el.toggle.textContent = putBack ? "Putting back…" : "Taking out…";
  try {
    const answer = await api.post("/service", { in_service: putBack, reason: el.reason.value.trim() });
    el.reason.value = "";
    notify(putBack ? "The kiosk is back in service." : "The kiosk is out of service.");
    el.toggle.disabled = false;
    drawService(answer.service, answer.held_by);
    app.service(answer.service, answer.held_by);
    refresh();
  } catch (error) {
    el.toggle.disabled = false;
    notify(problem(error, "Service not changed"), "bad");
    refresh();
  }
}

function deviceCard(kind, device) {
  const details = Object.entries(device.detail ?? {});
  return h("article", { class: `card device ${device.state}`, dataset: { device: kind },
                        "aria-labelledby": `device-${kind}` },
    h("h4", { id: `device-${kind}` }, DEVICE_NAMES[kind] ?? words(kind), " ",
      h("span", { class: `badge ${device.state}` }, device.state),
      device.simulated ? h("span", { class: "badge sim" }, "simulated") : null),
    h("dl", { class: "facts" },
      h("dt", {}, "Driver"), h("dd", { class: "mono" }, device.driver),
      h("dt", {}, "Since"), h("dd", {}, when(device.since), h("small", { class: "muted" },
                                                               ` (${ago(device.since)})`)),
      device.reason ? [h("dt", {}, "Reason"), h("dd", {}, device.reason)] : null,
      details.map(([key, value]) => [h("dt", {}, label(key)),
                                     h("dd", {}, detailText(value))])));
}

function detailText(value) {
  if (value === null || value === undefined || value === "") return "—";
  if (Array.isArray(value)) return value.length ? value.join(", ") : "none";
  if (typeof value === "object") {
    const entries = Object.entries(value);
    return entries.length ? entries.map(([key, item]) => `${key}: ${item}`).join("; ") : "none";
  }
  return String(value);
}
