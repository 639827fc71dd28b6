// Sales: the list (filters in the address, so a filtered view can be bookmarked; keyset
// pages, newest first), the CSV export of what the filters select, and one sale's detail
// (sale-detail.js) at #/sales/<id>.

import * as api from "../api.js";
import { field, fill, h, table } from "../dom.js";
import { localToIso, money, when, words } from "../format.js";
import { problem } from "../notices.js";
import { showSale } from "./sale-detail.js";

const STATES = ["completed", "needs_review", "voided", "dispense_failed", "declined",
                "cancelled", "created", "authorizing", "authorized", "dispensing", "dispensed"];
const PAGE = 25;
const FILTERS = ["from", "to", "state", "method", "slot", "resolved"];

const el = {};
let cursors = [null]; // cursors[i] opens page i
let pageIndex = 0;
let query = {};

export default {
  title: "Sales",
  mount(section) {
    el.heading = h("h2", { id: "title-sales" }, "Sales");
    el.list = h("div", { id: "sales-list", class: "page" });
    el.detail = h("div", { id: "sale-detail", class: "page", hidden: true });
    el.form = filterForm();
    el.export = h("a", { class: "button", id: "sales-export", download: "" }, "Export CSV");
    el.table = h("div", { id: "sales-table" });
    el.pager = h("div", { class: "actions pager" });
    fill(el.list, el.form, el.table, el.pager);
    fill(section, h("div", { class: "page-head" }, el.heading,
                    h("div", { class: "actions" }, el.export)),
         el.list, el.detail);
  },
  show({ rest, params }) {
    if (rest[0]) {
      el.list.hidden = true;
      el.export.hidden = true;
      el.detail.hidden = false;
      el.heading.textContent = "Sale";
      showSale(el.detail, rest[0]);
      return;
    }
    el.list.hidden = false;
    el.export.hidden = false;
    el.detail.hidden = true;
    el.heading.textContent = "Sales";
    const wanted = Object.fromEntries(FILTERS.map((name) => [name, params.get(name) ?? ""]));
    if (JSON.stringify(wanted) !== JSON.stringify(query)) {
      query = wanted;
      cursors = [null];
      pageIndex = 0;
    }
    setForm(query);
    el.export.href = api.url("/sales.csv", apiFilters(query));
    load();
  },
  hide() {},
};

function filterForm() {
  const form = h("form", { class: "filters card", role: "search", "aria-label": "Filter sales" },
    h("div", { class: "row" },
      field("From", h("input", { type: "datetime-local", name: "from" })),
      field("To", h("input", { type: "datetime-local", name: "to" })),
      field("State", h("select", { name: "state" },
        h("option", { value: "" }, "any state"),
        h("option", { value: "review" }, "waiting for review"),
        STATES.map((state) => h("option", { value: state }, words(state))))),
      field("Payment", h("select", { name: "method" },
        h("option", { value: "" }, "any payment"),
        h("option", { value: "card" }, "card"),
        h("option", { value: "account" }, "member account"))),
      field("Slot", h("input", { name: "slot", maxlength: 8, placeholder: "A1", size: 4,
                                 autocapitalize: "characters", spellcheck: "false" }))),
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "primary" }, "Show sales"),
      h("button", { type: "reset" }, "Clear filters")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const values = {};
    for (const name of ["from", "to", "state", "method", "slot"]) {
      const value = form.elements[name].value.trim();
      if (value) values[name] = name === "slot" ? value.toUpperCase() : value;
    }
    if (values.state === "review") {
      values.state = "needs_review";
      values.resolved = "false";
    }
    location.hash = `#/sales${Object.keys(values).length ? `?${new URLSearchParams(values)}` : ""}`;
  });
  form.addEventListener("reset", () => setTimeout(() => { location.hash = "#/sales"; }));
  return form;
}

function setForm(values) {
  const form = el.form;
  form.elements.from.value = values.from;
  form.elements.to.value = values.to;
  form.elements.state.value = values.state === "needs_review" && values.resolved === "false"
    ? "review" : values.state;
  form.elements.method.value = values.method;
  form.elements.slot.value = values.slot;
}

/** The address's filters as the API wants them (times in UTC). */
function apiFilters(values) {
  return {
    from: localToIso(values.from), to: localToIso(values.to), state: values.state,
    method: values.method, slot: values.slot, resolved: values.resolved,
  };
}

async function load() {
  const asked = { ...apiFilters(query), limit: PAGE, cursor: cursors[pageIndex] };
  el.table.setAttribute("aria-busy", "true");
  try {
    const page = await api.get("/sales", asked);
    cursors[pageIndex + 1] = page.next_cursor;
    drawTable(page.sales);
    drawPager(page.next_cursor);
  } catch (error) {
    if (error.status !== 401) fill(el.table, h("p", { class: "error" }, problem(error, "No sales")));
  } finally {
    el.table.removeAttribute("aria-busy");
  }
}

function stateBadge(sale) {
  const label = sale.awaiting_review ? "needs review" : words(sale.state);
  return h("span", { class: `badge ${sale.state}` }, label);
}

function drawTable(sales) {
  fill(el.table, table(null, ["Time", "Slot", "Product", "Price", "Payment", "State", ""],
    sales.map((sale) => h("tr", { dataset: { sale: sale.id, state: sale.state } },
      h("td", {}, when(sale.created_at)),
      h("td", {}, sale.slot),
      h("td", {}, sale.product),
      h("td", { class: "number" }, money(sale.price_cents)),
      h("td", {}, sale.method === "account" ? "member" : sale.method),
      h("td", {}, stateBadge(sale), sale.resolution
        ? h("small", { class: "muted" }, ` resolved: ${sale.resolution}`) : null),
      h("td", {}, h("a", { href: `#/sales/${encodeURIComponent(sale.id)}`,
                           "aria-label": `Sale ${sale.id.slice(0, 8)} details` },
                    sale.awaiting_review ? "Review" : "Details")))),
    { empty: "No sales match these filters." }));
}

function drawPager(next) {
  fill(el.pager,
    h("button", { type: "button", disabled: pageIndex === 0,
                  onclick: () => { pageIndex -= 1; load(); } }, "← Newer"),
    h("span", { class: "muted" }, `Page ${pageIndex + 1}`),
    h("button", { type: "button", disabled: !next,
                  onclick: () => { pageIndex += 1; load(); } }, "Older →"));
}
