// Drawing the screens from the app's state. No decisions here: app.js says what to show.

import { formatPrice, language, t, translate } from "./i18n.js";
import { saleNumber } from "./outcome.js";

const $ = (id) => document.getElementById(id);

/** The title in the top bar for each screen (an i18n key). */
const TITLES = {
  loading: "brand", attract: "brand", grid: "choose", detail: "how_to_pay",
  card: "paying", finger: "paying", dispensing: "brand", success: "brand",
  failure: "brand", "out-of-service": "brand",
};

const METHOD_LABELS = { card: "pay_card", account: "pay_account" };

// A screen ignores touches for a moment after it appears: the second tap of a double tap on
// a product must not land on the payment button that appears under the finger.
const ARRIVAL_MS = 300;

/** Make `screen` the one visible screen and put its title in the top bar. */
export function showScreen(screen) {
  if (document.body.dataset.screen !== screen) {
    document.body.dataset.screen = screen;
    const shown = $(`screen-${screen}`);
    for (const section of document.querySelectorAll("main > .screen")) {
      section.hidden = section !== shown;
    }
    shown.classList.add("arriving");
    setTimeout(() => shown.classList.remove("arriving"), ARRIVAL_MS);
  }
  $("title").dataset.i18n = TITLES[screen] ?? "brand";
  translate();
}

export function showSimulator(simulated) {
  $("simulator").hidden = !simulated;
}

// --- product pictures ------------------------------------------------------------------------

function hue(text) {
  // FNV-1a: the same name always gets the same colour.
  let hash = 0x811c9dc5;
  for (const char of text) {
    hash ^= char.codePointAt(0);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % 360;
}

function initials(name) {
  const words = name.split(/[\s-]+/).filter((word) => /^\p{L}/u.test(word));
  return words.slice(0, 2).map((word) => word[0].toUpperCase()).join("") || name.slice(0, 1);
}

function generatedTile(element, product) {
  element.style.setProperty("--tile", `hsl(${hue(product.name)} 60% 32%)`);
  const letters = document.createElement("span");
  letters.className = "initials";
  letters.textContent = initials(product.name);
  return letters;
}

/** The product's picture, or a tile in a colour of its own with its initials. */
function fillArt(element, product) {
  element.replaceChildren();
  element.style.removeProperty("--tile");
  if (!product.image) {
    element.append(generatedTile(element, product));
    return;
  }
  const image = document.createElement("img");
  image.src = product.image;
  image.alt = "";
  image.draggable = false;
  // A picture that cannot be loaded (a wrong path, a server elsewhere) gets the tile instead.
  image.addEventListener("error", () => image.replaceWith(generatedTile(element, product)));
  element.append(image);
}

// --- screens ---------------------------------------------------------------------------------

/**
 * Whether `element` must be redrawn to show `key`: a tile or button replaced under the
 * customer's finger would swallow the touch, so unchanged content is left alone.
 */
function changed(element, key) {
  if (element.dataset.drawn === key) return false;
  element.dataset.drawn = key;
  return true;
}

function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

/** The start screen says how one can pay right now. */
export function drawAttract(methods) {
  const only = methods.length === 1 ? `attract_hint_${methods[0]}` : "attract_hint";
  setText($("attract-hint"), t(only));
}

function tileFor(slot) {
  const tile = document.createElement("button");
  tile.type = "button";
  tile.className = `tile ${slot.stock_state}`;
  tile.dataset.action = "pick";
  tile.dataset.slot = slot.code;
  tile.disabled = slot.stock_state !== "available";
  const art = document.createElement("span");
  art.className = "art";
  fillArt(art, slot.product);
  const code = document.createElement("span");
  code.className = "code";
  code.textContent = slot.code;
  art.append(code);
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = slot.product.name;
  const price = document.createElement("span");
  price.className = "price";
  price.textContent = formatPrice(slot.price_cents);
  tile.append(art, name, price);
  if (tile.disabled) {
    const stamp = document.createElement("span");
    stamp.className = "stamp";
    stamp.textContent = t(slot.stock_state === "sold_out" ? "sold_out" : "unavailable");
    tile.append(stamp);
  }
  return tile;
}

function payButton(method) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = `primary pay ${method}`;
  button.dataset.action = "pay";
  button.dataset.method = method;
  button.textContent = t(METHOD_LABELS[method]);
  return button;
}

export function drawGrid(slots) {
  const grid = $("grid");
  if (changed(grid, JSON.stringify([language(), slots]))) {
    grid.replaceChildren(...slots.map(tileFor));
  }
}

export function drawDetail(slot, methods, error, starting) {
  const art = $("detail-art");
  if (changed(art, JSON.stringify(slot.product))) fillArt(art, slot.product);
  setText($("detail-name"), slot.product.name);
  setText($("detail-description"), slot.product.description);
  setText($("detail-price"), formatPrice(slot.price_cents));
  const offered = methods.filter((method) => METHOD_LABELS[method]);
  const pay = $("pay-methods");
  if (changed(pay, JSON.stringify([language(), offered]))) {
    pay.replaceChildren(...offered.map(payButton));
  }
  for (const button of pay.children) button.disabled = starting;
  $("detail-error").hidden = !error;
  setText($("detail-error"), error ? t(error) : "");
}

/** The product and price of the sale on the screens that follow it. */
export function drawSale(sale, cancelling) {
  for (const line of document.querySelectorAll("[data-sale-line]")) {
    setText(line, sale ? `${sale.product} · ${formatPrice(sale.price_cents)}` : "");
  }
  for (const number of document.querySelectorAll("[data-sale-number]")) {
    setText(number, sale ? saleNumber(sale) : "");
  }
  for (const button of document.querySelectorAll("[data-action=cancel]")) {
    button.disabled = cancelling;
    setText(button, t(cancelling ? "cancelling" : "cancel"));
  }
}

export function drawDispensing(titleKey) {
  $("dispensing-title").textContent = t(titleKey);
}

/** A failed sale or a sale that could not start: `failure` from outcome.screenFor or an error. */
export function drawFailure(failure, sale) {
  const screen = $("screen-failure");
  screen.dataset.outcome = failure.outcome;
  $("failure-title").textContent = t(failure.title);
  $("failure-message").textContent = t(failure.message, {
    price: sale ? formatPrice(sale.price_cents) : "",
  });
  $("failure-number").hidden = !sale;
  $("failure-retry").hidden = !failure.retry;
}

export function drawOutOfService(reachable, reasons) {
  $("out-of-service-title").textContent = t(reachable ? "out_of_service" : "connecting");
  $("out-of-service-reasons").textContent = reasons.join(" · ");
}
