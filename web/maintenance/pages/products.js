// The products the kiosk can sell: add, edit (name, description, picture), retire.

import * as api from "../api.js";
import { confirmButton, field, fill, formValues, h, modal, table } from "../dom.js";
import { when } from "../format.js";
import { notify, problem } from "../notices.js";

const el = {};
let changed = () => {};

export function mountProducts(box, onChange) {
  changed = onChange;
  el.retired = h("input", { type: "checkbox", onchange: () => refreshProducts() });
  el.list = h("div", { id: "product-list" });
  fill(box,
    h("div", { class: "page-head" },
      h("h3", { class: "section-title" }, "Products"),
      h("div", { class: "actions" },
        h("label", { class: "check" }, el.retired, "Show retired"),
        h("button", { type: "button", onclick: () => edit(null) }, "Add product"))),
    el.list);
}

export async function refreshProducts() {
  try {
    const { products } = await api.get("/products", { retired: el.retired.checked || undefined });
    draw(products);
  } catch (error) {
    if (error.status !== 401) fill(el.list, h("p", { class: "error" }, problem(error, "No products")));
  }
}

function draw(products) {
  fill(el.list, table(null, ["Product", "Description", "Slots", "Added", ""],
    products.map((product) => h("tr", { dataset: { product: product.id } },
      h("td", {}, h("strong", {}, product.name),
        product.retired ? h("span", { class: "badge bad" }, " retired") : null),
      h("td", {}, product.description, product.image ? h("small", { class: "muted mono" },
                                                        ` ${product.image}`) : null),
      h("td", {}, product.slots.join(", ") || "—"),
      h("td", {}, when(product.created_at)),
      h("td", { class: "actions" }, product.retired ? null : [
        h("button", { type: "button", class: "small", "aria-label": `Edit ${product.name}`,
                      onclick: () => edit(product) }, "Edit"),
        confirmButton("Retire", "Retire for good?", () => retire(product),
                      { class: "small", "aria-label": `Retire ${product.name}` }),
      ]))),
    { empty: "No products yet." }));
}

async function retire(product) {
  try {
    await api.post(`/products/${product.id}/retire`);
    notify(`${product.name} is retired${product.slots.length
      ? `: slots ${product.slots.join(", ")} stop selling it` : ""}.`);
  } catch (error) {
    notify(problem(error, `${product.name} not retired`), "bad");
  }
  refreshProducts();
  changed();
}

function edit(product) {
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const form = h("form", { class: "editor", novalidate: true },
    field("Name", h("input", { name: "name", maxlength: 80, required: true,
                               value: product?.name ?? "" })),
    field("Description", h("textarea", { name: "description", maxlength: 400 },
                           product?.description ?? "")),
    field("Picture", h("input", { name: "image", maxlength: 200, value: product?.image ?? "",
                                  placeholder: "images/water.png", spellcheck: "false" }),
          "A file under the touchscreen's web folder; empty draws a tile with initials."),
    error,
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "primary" }, product ? "Save" : "Add product"),
      h("button", { type: "button", onclick: () => dialog.close() }, "Cancel")));
  const dialog = modal(product ? `Edit ${product.name}` : "Add a product", form);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = formValues(form);
    const body = { name: values.name.trim(), description: values.description.trim(),
                   image: values.image.trim() };
    if (!body.name) {
      error.textContent = "A product needs a name.";
      error.hidden = false;
      return;
    }
    try {
      if (product) {
        const change = Object.fromEntries(Object.entries(body)
          .filter(([key, value]) => value !== product[key]));
        if (Object.keys(change).length) await api.patch(`/products/${product.id}`, change);
      } else {
        await api.post("/products", body);
      }
      dialog.close();
      notify(product ? `${body.name} saved.` : `${body.name} added: put it in a slot to sell it.`);
      refreshProducts();
      changed();
    } catch (failure) {
      error.textContent = problem(failure, "Not saved");
      error.hidden = false;
    }
  });
  dialog.open();
}
