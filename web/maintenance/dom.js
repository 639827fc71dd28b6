// Building the page: elements from plain data, never from HTML strings (no injection, CSP-clean).

/**
 * `h("button", {type: "button", onclick: fn, class: "primary"}, "Save")`. Attributes whose
 * value is false, null or undefined are left out; `on...` functions become listeners;
 * `dataset` and `style` take objects; children may be strings, nodes, arrays or null.
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  setAttributes(element, attributes);
  append(element, children);
  return element;
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** The same for SVG elements (charts). */
export function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG_NS, tag);
  setAttributes(element, attributes);
  append(element, children);
  return element;
}

function setAttributes(element, attributes) {
  for (const [name, value] of Object.entries(attributes ?? {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (name === "style" && typeof value === "object") {
      for (const [property, setting] of Object.entries(value)) {
        element.style.setProperty(property, setting);
      }
    } else if (name === "value" && "value" in element) {
      element.value = value;
    } else if (name === "checked" || name === "disabled" || name === "selected") {
      element[name] = Boolean(value);
      if (value) element.setAttribute(name, "");
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
}

/** Replace everything in `element` with `children`. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

let fieldCount = 0;

/** A labelled form control: `field("Price (€)", h("input", {name: "price"}))`. */
export function field(label, control, hint) {
  fieldCount += 1;
  control.id ||= `field-${fieldCount}`;
  const hintId = hint ? `${control.id}-hint` : null;
  if (hintId) control.setAttribute("aria-describedby", hintId);
  return h("div", { class: "field" },
    h("label", { for: control.id }, label),
    control,
    hint ? h("small", { id: hintId, class: "muted" }, hint) : null);
}

/**
 * A table from column headings and rows (`<tr>`s of cells). Each cell is labelled with its
 * column's heading, so that on a phone each row can be shown as a card of labelled lines.
 */
export function table(caption, headings, rows, { empty = "Nothing here." } = {}) {
  for (const row of rows) {
    [...row.children].forEach((cell, index) => {
      if (headings[index]) cell.dataset.label = headings[index];
    });
  }
  return h("div", { class: "table-wrap" },
    h("table", { class: "cards-on-phone" },
      caption ? h("caption", {}, caption) : null,
      h("thead", {}, h("tr", {}, headings.map((text) => h("th", { scope: "col" }, text)))),
      h("tbody", {},
        rows.length ? rows : h("tr", {}, h("td", { colspan: headings.length, class: "muted" },
                                           empty)))));
}

/** Read a form's named controls into an object (checkboxes as booleans). */
export function formValues(form) {
  const values = {};
  for (const control of form.elements) {
    if (!control.name) continue;
    values[control.name] = control.type === "checkbox" ? control.checked : control.value;
  }
  return values;
}

/**
 * A button that asks once more before doing something that cannot be undone: the first
 * press changes its label to `confirmLabel` for a few seconds, the second runs `action`.
 */
export function confirmButton(label, confirmLabel, action, attributes = {}) {
  let armed = null;
  const button = h("button", { type: "button", ...attributes }, label);
  button.addEventListener("click", async () => {
    if (!armed) {
      button.textContent = confirmLabel;
      button.classList.add("armed");
      armed = setTimeout(() => {
        armed = null;
        button.textContent = label;
        button.classList.remove("armed");
      }, 5000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    button.classList.remove("armed");
    button.textContent = label;
    button.disabled = true;
    try {
      await action();
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

/** A modal dialog with a heading; `open()` shows it, closing removes it. */
export function modal(title, ...content) {
  const id = `dialog-${(fieldCount += 1)}`;
  const close = h("button", { type: "button", class: "quiet small close", "aria-label": "Close" },
                  "✕");
  const dialog = h("dialog", { class: "modal", "aria-labelledby": id },
    h("div", { class: "modal-head" }, h("h3", { id }, title), close),
    ...content);
  close.addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => dialog.remove());
  return {
    dialog,
    open() {
      document.body.append(dialog);
      dialog.showModal();
    },
    close() {
      dialog.close();
    },
  };
}
