// Stock and prices: the planogram (one tile a slot, row by row), restocking a slot or all of
// them, a slot's product, price, capacity and enabled, and the products themselves
// (products.js). Refreshes on the catalog's live events and by polling.

import * as api from "../api.js";
import { field, fill, formValues, h, modal } from "../dom.js";
import { centsInput, currencyCode, money, parseCents, setCurrency } from "../format.js";
import { subscribe } from "../live.js";
import { notify, problem } from "../notices.js";
import { mountProducts, refreshProducts } from "./products.js";

const POLL_MS = 15000;

let timer = null;
let unsubscribe = null;
const el = {};
let planogram = null;
let active = false;

export default {
  title: "Stock and prices",
  mount(section) {
    el.updated = h("p", { class: "muted", role: "status" });
    el.grid = h("div", { id: "planogram", class: "planogram" });
    el.restockAll = h("button", { type: "button", class: "primary", onclick: restockAll },
                      "Restock all to full");
    el.products = h("div", { id: "products" });
    fill(section,
      h("div", { class: "page-head" },
        h("h2", { id: "title-stock" }, "Stock and prices"), el.updated,
        h("div", { class: "actions" }, el.restockAll)),
      el.grid,
      el.products);
    mountProducts(el.products, () => refresh());
  },
  show() {
    active = true;
    refresh();
    refreshProducts();
    unsubscribe ??= subscribe((topic) => {
      if (topic === "catalog" || topic === "sale") refresh();
    });
  },
  hide() {
    active = false;
    clearTimeout(timer);
    unsubscribe?.();
    unsubscribe = null;
  },
};

async function refresh() {
  clearTimeout(timer);
  try {
    planogram = await api.get("/planogram");
    setCurrency(planogram.currency);
    draw();
    el.updated.textContent = `${planogram.slots.length} slots`;
  } catch (error) {
    if (error.status !== 401) fill(el.grid, h("p", { class: "error" }, problem(error, "No planogram")));
  }
  clearTimeout(timer);
  if (active) timer = setTimeout(refresh, POLL_MS);
}

function rowOf(code) {
  return code.match(/^[A-Za-z]+/)?.[0] ?? code;
}

function draw() {
  const rows = new Map();
  for (const slot of planogram.slots) {
    const row = rowOf(slot.code);
    if (!rows.has(row)) rows.set(row, []);
    rows.get(row).push(slot);
  }
  fill(el.grid, [...rows].map(([row, slots]) => h("section", { class: "shelf",
                                                              "aria-label": `Row ${row}` },
    h("h3", { class: "shelf-title" }, `Row ${row}`),
    h("ul", { class: "tiles" }, slots.map(tile)))));
}

function slotState(slot) {
  if (slot.fault) return ["bad", "fault"];
  if (!slot.product) return ["muted", "empty"];
  if (slot.product.retired) return ["bad", "product retired"];
  if (!slot.enabled) return ["warn", "disabled"];
  if (slot.stock === 0) return ["bad", "sold out"];
  if (slot.stock <= slot.capacity / 4) return ["warn", "low"];
  return ["good", "for sale"];
}

function tile(slot) {
  const [tone, label] = slotState(slot);
  const name = slot.product?.name ?? "(no product)";
  const share = slot.capacity ? Math.round((slot.stock / slot.capacity) * 100) : 0;
  const meter = h("meter", { min: 0, max: slot.capacity || 1, value: slot.stock,
                             low: slot.capacity / 4 + 0.01, high: slot.capacity * 0.6,
                             optimum: slot.capacity, "aria-label": `Stock of ${slot.code}` });
  return h("li", { class: "tile", dataset: { slot: slot.code, tone } },
    h("div", { class: "tile-head" },
      h("strong", { class: "code" }, slot.code),
      h("span", { class: `badge ${tone}` }, label)),
    h("p", { class: "tile-name" }, name),
    h("p", { class: "tile-price", dataset: { price: slot.price_cents } }, money(slot.price_cents)),
    h("p", { class: "tile-stock" },
      h("span", { class: "stock-count" }, `${slot.stock} / ${slot.capacity}`),
      h("small", { class: "muted" }, ` (${share} %)`)),
    meter,
    slot.fault ? h("p", { class: "bad small-text" }, slot.fault) : null,
    h("div", { class: "actions" },
      h("button", { type: "button", class: "small", "aria-label": `Restock ${slot.code}`,
                    disabled: !slot.product || slot.stock === slot.capacity,
                    onclick: () => restock(slot) }, "Restock"),
      h("button", { type: "button", class: "small", "aria-label": `Edit ${slot.code}`,
                    onclick: () => edit(slot) }, "Edit")));
}

async function restock(slot, stock) {
  try {
    const record = await api.post(`/planogram/${encodeURIComponent(slot.code)}/restock`,
                                  stock === undefined ? undefined : { stock });
    notify(`Slot ${record.code} now holds ${record.stock} of ${record.capacity}.`);
  } catch (error) {
    notify(problem(error, `Slot ${slot.code} not restocked`), "bad");
  }
  refresh();
}

async function restockAll() {
  el.restockAll.disabled = true;
  try {
    const answer = await api.post("/restock");
    const full = answer.slots.filter((slot) => slot.product).length;
    notify(`Restocked: ${full} slots are full.`);
  } catch (error) {
    notify(problem(error, "Not restocked"), "bad");
  } finally {
    el.restockAll.disabled = false;
  }
  refresh();
}

async function edit(slot) {
  let products = [];
  try {
    products = (await api.get("/products")).products;
  } catch (error) {
    notify(problem(error, "No product list"), "bad");
    return;
  }
  const productSelect = h("select", { name: "product_id" },
    h("option", { value: "" }, "(no product: empty slot)"),
    products.map((product) => h("option", { value: product.id,
                                            selected: product.id === slot.product?.id },
                                product.name)));
  if (slot.product?.retired) {
    productSelect.append(h("option", { value: slot.product.id, selected: true, disabled: true },
                           `${slot.product.name} (retired)`));
  }
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const form = h("form", { class: "editor", novalidate: true },
    field("Product", productSelect),
    h("div", { class: "row" },
      field(`Price (${currencyCode()})`, h("input", { name: "price", inputmode: "decimal",
                                                      value: centsInput(slot.price_cents),
                                                      autocomplete: "off", required: true })),
      field("Capacity", h("input", { name: "capacity", type: "number", min: 0, max: 100,
                                     value: slot.capacity, required: true })),
      field("Stock counted", h("input", { name: "stock", type: "number", min: 0,
                                          max: slot.capacity, value: slot.stock }),
            "What is in the slot now")),
    h("label", { class: "check" },
      h("input", { type: "checkbox", name: "enabled", checked: slot.enabled }),
      "Enabled (offered on the touchscreen)"),
    slot.fault ? h("label", { class: "check" },
      h("input", { type: "checkbox", name: "checked" }),
      h("span", {}, "I checked the slot: clear the fault ", h("em", {}, `“${slot.fault}”`)))
      : null,
    error,
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "primary" }, "Save"),
      h("button", { type: "button", onclick: () => dialog.close() }, "Cancel")));
  const dialog = modal(`Slot ${slot.code}`, form);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = formValues(form);
    const change = {};
    const price = parseCents(values.price);
    if (!Number.isInteger(price) || price < 0) {
      error.textContent = "The price is an amount like 1.20.";
      error.hidden = false;
      return;
    }
    const productId = values.product_id === "" ? null : Number(values.product_id);
    if (productId !== (slot.product?.id ?? null)) change.product_id = productId;
    if (price !== slot.price_cents) change.price_cents = price;
    if (Number(values.capacity) !== slot.capacity) change.capacity = Number(values.capacity);
    if (values.enabled !== slot.enabled) change.enabled = values.enabled;
    if (values.checked) change.fault = "";
    const stock = values.stock === "" ? slot.stock : Number(values.stock);
    try {
      // A smaller capacity needs the count first; a larger one before a bigger count.
      const stockFirst = stock !== slot.stock && stock <= (change.capacity ?? slot.capacity)
                         && stock <= slot.capacity;
      if (stockFirst) await api.post(`/planogram/${slot.code}/restock`, { stock });
      if (Object.keys(change).length) await api.patch(`/planogram/${slot.code}`, change);
      if (stock !== slot.stock && !stockFirst) {
        await api.post(`/planogram/${slot.code}/restock`, { stock });
      }
      dialog.close();
      notify(`Slot ${slot.code} saved.`);
      refresh();
    } catch (failure) {
      error.textContent = problem(failure, "Not saved");
      error.hidden = false;
      refresh();
    }
  });
  dialog.open();
}
