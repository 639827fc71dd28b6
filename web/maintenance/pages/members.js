// Members and fingerprints: the list and adding a member; one member (#/members/<id>): name,
// active, balance with its account entries, top-up and correction, and the fingerprint
// (enrolment.js guides the enrolment; removal erases the template from the reader).

import * as api from "../api.js";
import { confirmButton, field, fill, formValues, h, table } from "../dom.js";
import { currencyCode, money, parseCents, when } from "../format.js";
import { notify, problem } from "../notices.js";
import { enrolmentPanel, stopEnrolment } from "./enrolment.js";

const el = {};
let shownId = null;

export default {
  title: "Members and fingerprints",
  mount(section) {
    el.heading = h("h2", { id: "title-members" }, "Members and fingerprints");
    el.list = h("div", { id: "member-list", class: "page" });
    el.detail = h("div", { id: "member-detail", class: "page", hidden: true });
    fill(section, h("div", { class: "page-head" }, el.heading), el.list, el.detail);
  },
  show({ rest }) {
    stopEnrolment();
    shownId = rest[0] ? Number(rest[0]) : null;
    el.list.hidden = shownId !== null;
    el.detail.hidden = shownId === null;
    el.heading.textContent = shownId === null ? "Members and fingerprints" : "Member";
    if (shownId === null) loadList();
    else loadMember(shownId);
  },
  hide() {
    stopEnrolment();
  },
};

// --- the list --------------------------------------------------------------------------------

async function loadList() {
  let members;
  try {
    members = await api.get("/members");
  } catch (error) {
    if (error.status !== 401) fill(el.list, h("p", { class: "error" }, problem(error, "No members")));
    return;
  }
  const name = h("input", { name: "name", maxlength: 80, required: true, autocomplete: "off" });
  const add = h("form", { class: "card row", "aria-label": "Add a member" },
    field("New member's name", name),
    h("button", { type: "submit", class: "primary" }, "Add member"));
  add.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!name.value.trim()) return;
    try {
      const member = await api.post("/members", { name: name.value.trim() });
      notify(`${member.name} added.`);
      location.hash = `#/members/${member.id}`;
    } catch (error) {
      notify(problem(error, "Member not added"), "bad");
    }
  });
  fill(el.list, add, table(null, ["Member", "Balance", "Fingerprint", "Status", ""],
    members.map((member) => h("tr", { dataset: { member: member.id } },
      h("td", {}, h("strong", {}, member.name)),
      h("td", { class: "number" }, money(member.balance_cents)),
      h("td", {}, member.fingerprint ? `enrolled (page ${member.fingerprint_page})` : "none"),
      h("td", {}, h("span", { class: `badge ${member.active ? "good" : "bad"}` },
                    member.active ? "active" : "deactivated")),
      h("td", {}, h("a", { href: `#/members/${member.id}`, "aria-label": `Open ${member.name}` },
                    "Open")))),
    { empty: "No members yet." }));
}

// --- one member ------------------------------------------------------------------------------

async function loadMember(id) {
  let member;
  try {
    member = await api.get(`/members/${id}`);
  } catch (error) {
    if (error.status !== 401) {
      fill(el.detail, h("p", { class: "error" }, problem(error, "No member")),
           h("a", { href: "#/members" }, "← All members"));
    }
    return;
  }
  if (shownId !== id) return;
  el.heading.textContent = member.name;
  fill(el.detail,
    h("p", {}, h("a", { href: "#/members" }, "← All members")),
    h("div", { class: "cards" },
      memberCard(member),
      balanceCard(member),
      h("article", { class: "card", "aria-labelledby": "fingerprint-title", id: "fingerprint" },
        h("h3", { id: "fingerprint-title" }, "Fingerprint"),
        member.fingerprint ? enrolled(member) : enrolmentPanel(member, () => loadMember(id)))),
    h("h3", { class: "section-title" }, "Account entries"),
    table(null, ["Time", "Amount", "Reason", "Sale"], member.entries.map((entry) => h("tr", {},
      h("td", {}, when(entry.at)),
      h("td", { class: `number ${entry.amount_cents < 0 ? "bad" : "good"}` },
        money(entry.amount_cents)),
      h("td", {}, entry.reason),
      h("td", {}, entry.sale_id ? h("a", { href: `#/sales/${entry.sale_id}` }, "sale") : "—"))),
      { empty: "No account entries." }));
}

function memberCard(member) {
  const name = h("input", { name: "name", maxlength: 80, value: member.name, required: true });
  const form = h("form", { class: "editor" }, field("Name", name),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Rename")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    await change(member, { name: name.value.trim() }, "Renamed");
  });
  return h("article", { class: "card", "aria-labelledby": "member-title" },
    h("h3", { id: "member-title" }, "Member"),
    h("p", {}, h("span", { class: `badge ${member.active ? "good" : "bad"}`, id: "member-active" },
                 member.active ? "active" : "deactivated"),
      h("small", { class: "muted" }, ` since ${when(member.created_at)}`)),
    form,
    member.active
      ? confirmButton("Deactivate", "Deactivate: their finger buys nothing?",
                      () => change(member, { active: false }, "Deactivated"))
      : h("button", { type: "button", onclick: () => change(member, { active: true },
                                                            "Reactivated") }, "Reactivate"));
}

async function change(member, body, done) {
  try {
    const changed = await api.patch(`/members/${member.id}`, body);
    notify(`${done}: ${changed.name}.`);
  } catch (error) {
    notify(problem(error, "Member not changed"), "bad");
  }
  loadMember(member.id);
}

function balanceCard(member) {
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const kind = h("select", { name: "kind" },
    h("option", { value: "top_up" }, "Top-up (money paid in)"),
    h("option", { value: "correction" }, "Correction (+ or −)"));
  const force = h("label", { class: "check", hidden: true },
    h("input", { type: "checkbox", name: "force" }), "Allow a balance below zero (a debt)");
  kind.addEventListener("change", () => { force.hidden = kind.value !== "correction"; });
  const form = h("form", { class: "editor", "aria-label": "Change the balance", novalidate: true },
    field("Kind", kind),
    field(`Amount (${currencyCode()})`, h("input", { name: "amount", inputmode: "decimal",
                                                      required: true, autocomplete: "off",
                                                      placeholder: "10.00" })),
    field("Reason", h("input", { name: "reason", maxlength: 160, required: true,
                                 placeholder: "cash paid at the desk" })),
    force, error,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Book it")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = formValues(form);
    const cents = parseCents(values.amount);
    const problemText = !Number.isInteger(cents) || cents === 0 ? "Enter an amount like 10.00."
      : values.kind === "top_up" && cents < 0 ? "A top-up adds money: use a correction to take."
      : !values.reason.trim() ? "Say why the balance changes." : "";
    error.textContent = problemText;
    error.hidden = !problemText;
    if (problemText) return;
    try {
      const result = await api.post(`/members/${member.id}/balance`, {
        kind: values.kind, amount_cents: cents, reason: values.reason.trim(),
        force: values.kind === "correction" && values.force,
      });
      notify(`Balance of ${result.member.name}: ${money(result.member.balance_cents)}.`);
      loadMember(member.id);
    } catch (failure) {
      error.textContent = problem(failure, "Not booked");
      error.hidden = false;
      if (failure.code === "negative_balance") force.hidden = false;
    }
  });
  return h("article", { class: "card", "aria-labelledby": "balance-title" },
    h("h3", { id: "balance-title" }, "Balance"),
    h("p", { class: `big ${member.balance_cents < 0 ? "bad" : ""}`, id: "member-balance" },
      money(member.balance_cents)),
    form);
}

function enrolled(member) {
  return h("div", { class: "editor" },
    h("p", { id: "fingerprint-state" }, h("strong", { class: "good" }, "Enrolled"),
      ` on page ${member.fingerprint_page} of the reader`),
    member.consent_at ? h("p", { class: "muted" }, `Consent given ${when(member.consent_at)}`) : null,
    confirmButton("Remove fingerprint", "Erase it from the reader?", async () => {
      try {
        await api.remove(`/members/${member.id}/fingerprint`);
        notify(`The fingerprint of ${member.name} was erased from the reader.`);
      } catch (error) {
        notify(problem(error, "Fingerprint not removed"), "bad");
      }
      loadMember(member.id);
    }, { class: "danger" }));
}
