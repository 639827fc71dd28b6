// The simulator panel: buttons post to /api/sim, the tables refresh from GET /api/sim.
const $ = (id) => document.getElementById(id);
const cents = (value) => (value / 100).toFixed(2);

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const reply = await response.json().catch(() => ({}));
  const message = $("message");
  message.className = response.ok ? "" : "error";
  message.textContent = response.ok ? `${path}: done` : `${path}: ${reply.error?.message ?? response.status}`;
  refresh();
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  row.append(td);
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows.map((values) => {
    const tr = document.createElement("tr");
    values.forEach((value) => cell(tr, value));
    return tr;
  }));
}

async function refresh() {
  const response = await fetch("/api/sim");
  if (!response.ok) return;
  const state = await response.json();
  if (state.card) {
    const report = state.card.settlement;
    $("card-state").textContent = state.card.plugged ? `(${state.card.reader_state})` : "(unplugged)";
    const t = report.totals;
    $("totals").textContent = `captured ${cents(t.captured_cents)}, reverted ${cents(t.reverted_cents)}, ` +
      `open sessions ${t.open_sessions}`;
    fill($("transactions"), report.transactions.map((tx) => [
      tx.sequence, tx.reference, tx.item, cents(tx.requested_cents),
      tx.authorized_cents == null ? "" : cents(tx.authorized_cents), tx.status, tx.note,
    ]));
  }
  if (state.fingerprint) {
    const f = state.fingerprint;
    $("finger-state").textContent = f.plugged ? (f.finger ? `(finger: ${f.finger})` : "(no finger)") : "(unplugged)";
    $("library").textContent = Object.entries(f.library).map(([page, name]) => `${name} on page ${page}`).join(", ") || "none";
  }
  if (state.vending) {
    const slots = state.vending.slots ?? {};
    const select = $("slot");
    if (!select.options.length) {
      Object.keys(slots).forEach((code) => select.add(new Option(code, code)));
    }
    fill($("slots"), Object.entries(slots).map(([code, s]) => [code, s.stock, s.delivered, s.fault ?? ""]));
  }
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-post]");
  if (button) post(button.dataset.post, button.dataset.body ? JSON.parse(button.dataset.body) : undefined);
});
$("place").addEventListener("click", () => post("/api/sim/fingerprint/place", { finger: $("finger").value }));
$("apply-fault").addEventListener("click", () => post("/api/sim/vending/fault", { slot: $("slot").value, fault: $("fault").value }));
$("restock").addEventListener("click", () => post("/api/sim/vending/restock", { slot: $("slot").value, count: Number($("count").value) }));
$("beam").addEventListener("change", () => post("/api/sim/vending/beam", { fault: $("beam").value }));
$("card-auto").addEventListener("change", () => post("/api/sim/card/auto", { outcome: $("card-auto").value, delay: 1.5 }));

const events = new EventSource("/api/events");
events.addEventListener("sale", (event) => {
  const sale = JSON.parse(event.data);
  $("sale").textContent = `Sale ${sale.id.slice(0, 8)} (${sale.slot}, ${sale.method}): ${sale.state}`;
  refresh();
});
refresh();
setInterval(refresh, 2000);
