// The audit report in the vending industry's EVA-DTS / DEX format: download it for the
// vending-management software, look at it here, and reset its "since reset" counters.

import * as api from "../api.js";
import { confirmButton, fill, h } from "../dom.js";
import { when } from "../format.js";
import { notify, problem } from "../notices.js";

const REPORT = "/dex";
const el = {};

/** What a DEX segment is, for the preview's readers. */
const SEGMENTS = {
  DXS: "transmission header", ST: "transaction set header", ID1: "machine identification",
  ID4: "currency", VA1: "paid vends", VA2: "test vends", PA1: "slot: price, product",
  PA2: "slot: paid vends", PA3: "slot: test vends", EA1: "event", EA2: "event counts",
  EA3: "counter resets", G85: "checksum", SE: "transaction set trailer",
  DXE: "transmission trailer",
};

export default {
  title: "Audit report",
  mount(section) {
    el.preview = h("div", { id: "dex-preview" });
    el.reset = h("p", { id: "dex-reset", role: "status" });
    fill(section,
      h("div", { class: "page-head" }, h("h2", { id: "title-audit" }, "Audit report (DEX)")),
      h("article", { class: "card", "aria-labelledby": "dex-title" },
        h("h3", { id: "dex-title" }, "EVA-DTS audit file"),
        h("p", {}, "The machine's identification, paid and test vends with their values, each "
                   + "slot's price and counts, and events such as jammed spirals, in the DEX "
                   + "format that vending-management software reads."),
        h("div", { class: "actions" },
          h("a", { class: "button primary", id: "dex-download", href: api.url(REPORT),
                   download: "" }, "Download the DEX file"),
          h("button", { type: "button", onclick: preview }, "Show it here")),
        el.preview),
      h("article", { class: "card", "aria-labelledby": "dex-reset-title" },
        h("h3", { id: "dex-reset-title" }, "Reset the counters"),
        h("p", {}, "Starts the report's “since reset” counts afresh, e.g. after the operator "
                   + "collected the cash. No sale is deleted; the reset is in the audit log."),
        el.reset,
        h("div", { class: "actions" },
          confirmButton("Reset the counters", "Reset now?", reset, { class: "danger" }))));
  },
  show() {},
  hide() {},
};

async function preview() {
  fill(el.preview, h("p", { class: "muted" }, "Reading the report…"));
  let text;
  try {
    const response = await fetch(api.url(REPORT), { cache: "no-store", credentials: "same-origin" });
    if (response.status === 401) {
      api.request("GET", "/me").catch(() => {}); // shows the login
      return;
    }
    if (!response.ok) throw new Error(`the kiosk answered ${response.status}`);
    text = await response.text();
  } catch (error) {
    fill(el.preview, h("p", { class: "error" }, problem(error, "No report")));
    return;
  }
  const lines = text.split(/\r?\n/).filter(Boolean);
  fill(el.preview, h("div", { class: "table-wrap" }, h("table", { class: "dex" },
    h("caption", {}, `${lines.length} segments`),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Segment"),
                                h("th", { scope: "col" }, "Meaning"))),
    h("tbody", {}, lines.map((line) => h("tr", {},
      h("td", { class: "mono" }, line),
      h("td", { class: "muted" }, SEGMENTS[line.split("*")[0]] ?? "")))))));
}

async function reset() {
  try {
    const answer = await api.post(`${REPORT}/reset`);
    el.reset.textContent = `Reset at ${when(answer.reset_at)} (reset number ${answer.resets}).`;
    notify("The audit counters start again from now.");
  } catch (error) {
    notify(problem(error, "Counters not reset"), "bad");
  }
}
