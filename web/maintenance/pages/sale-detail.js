// One sale: what was sold, how it was paid, every state it went through, the member's account
// entries, and for a sale under review the form that resolves it (delivered or refunded).

import * as api from "../api.js";
import { fill, h, table } from "../dom.js";
import { money, when, words } from "../format.js";
import { notify, problem } from "../notices.js";

let shown = null;

export async function showSale(box, saleId) {
  shown = saleId;
  fill(box, h("p", { class: "muted" }, "Loading the sale…"));
  try {
    const detail = await api.get(`/sales/${encodeURIComponent(saleId)}`);
    if (shown === saleId) draw(box, detail);
  } catch (error) {
    if (error.status !== 401) {
      fill(box, h("p", { class: "error" }, problem(error, "No sale")),
           h("a", { href: "#/sales" }, "← All sales"));
    }
  }
}

function draw(box, detail) {
  const { sale } = detail;
  fill(box,
    h("p", {}, h("a", { href: "#/sales" }, "← All sales")),
    h("article", { class: "card", "aria-labelledby": "sale-title", dataset: { sale: sale.id } },
      h("h3", { id: "sale-title", class: "title" }, `${sale.slot} · ${sale.product} · ${money(sale.price_cents)}`),
      h("dl", { class: "facts" },
        h("dt", {}, "Sale"), h("dd", { class: "mono" }, sale.id),
        h("dt", {}, "State"), h("dd", { id: "sale-state" },
          h("span", { class: `badge ${sale.state}` }, words(sale.state)),
          sale.awaiting_review ? h("strong", { class: "warn" }, " waiting for review") : null),
        h("dt", {}, "Started"), h("dd", {}, when(sale.created_at)),
        h("dt", {}, "Last change"), h("dd", {}, when(sale.updated_at)),
        h("dt", {}, "Payment"), h("dd", {}, sale.method === "account"
          ? `member account${detail.member ? `: ${detail.member.name}` : ""}` : "card"),
        sale.reader_reference ? [h("dt", {}, "Reader reference"),
                                 h("dd", { class: "mono" }, sale.reader_reference)] : null,
        sale.reason ? [h("dt", {}, "Reason"), h("dd", {}, sale.reason)] : null,
        sale.resolution ? [
          h("dt", {}, "Resolution"),
          h("dd", { id: "sale-resolution" }, h("strong", {}, sale.resolution),
            ` by ${sale.resolved_by}, ${when(sale.resolved_at)}: “${sale.resolution_note}”`),
        ] : null)),
    sale.awaiting_review ? resolveForm(box, sale) : null,
    h("h3", { class: "section-title" }, "History"),
    table(null, ["Time", "From", "To", "Detail"], detail.events.map((event) => h("tr", {},
      h("td", {}, when(event.at)),
      h("td", {}, event.from_state ? words(event.from_state) : "—"),
      h("td", {}, h("span", { class: `badge ${event.to_state}` }, words(event.to_state))),
      h("td", { class: "detail-cell" }, describe(event.detail)))),
      { empty: "No events recorded." }),
    detail.account_entries.length ? [
      h("h3", { class: "section-title" }, "Member account"),
      table(null, ["Time", "Amount", "Reason"], detail.account_entries.map((entry) => h("tr", {},
        h("td", {}, when(entry.at)),
        h("td", { class: "number" }, money(entry.amount_cents)),
        h("td", {}, entry.reason)))),
      h("p", {}, "What the sale cost the member in the end: ",
        h("strong", {}, money(-detail.account_net_cents))),
    ] : null);
}

function describe(detail) {
  const entries = Object.entries(detail ?? {});
  if (!entries.length) return "";
  return h("dl", { class: "facts compact" }, entries.map(([key, value]) => [
    h("dt", {}, words(key)),
    h("dd", {}, typeof value === "object" ? JSON.stringify(value) : String(value)),
  ]));
}

function resolveForm(box, sale) {
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const note = h("textarea", { id: "resolve-note", name: "note", maxlength: 400, required: true,
                               placeholder: "What you found: counted the slot, the customer says…" });
  const form = h("form", { class: "card resolve", "aria-labelledby": "resolve-title", novalidate: true },
    h("h3", { id: "resolve-title" }, "Resolve this review"),
    h("p", { class: "muted" }, sale.method === "card"
      ? "A card payment is settled at the card provider: the kiosk records your verdict."
      : "Refunded credits the member back; delivered keeps the debit."),
    h("fieldset", { class: "choices" },
      h("legend", {}, "The product was"),
      h("label", { class: "check" },
        h("input", { type: "radio", name: "resolution", value: "delivered", required: true }),
        "delivered: the customer got it"),
      h("label", { class: "check" },
        h("input", { type: "radio", name: "resolution", value: "refunded" }),
        "not delivered: refund the customer")),
    h("div", { class: "field" }, h("label", { for: "resolve-note" }, "Note (required)"), note),
    error,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Resolve")));
  form.addEventListener("change", () => { error.hidden = true; });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const resolution = form.elements.resolution.value;
    const text = note.value.trim();
    if (!resolution || !text) {
      error.textContent = !resolution ? "Choose delivered or refunded." : "Write what you found.";
      error.hidden = false;
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const detail = await api.post(`/sales/${encodeURIComponent(sale.id)}/resolve`,
                                    { resolution, note: text });
      notify(`Sale resolved as ${resolution}.`);
      draw(box, detail);
    } catch (failure) {
      error.textContent = problem(failure, "Not resolved");
      error.hidden = false;
      button.disabled = false;
    }
  });
  return form;
}
