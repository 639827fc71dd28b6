// The touchscreen's controller: which screen shows, what a touch does, and how the live event
// stream, the API's answers and the inactivity timer move the customer from screen to screen.
//
// URL parameters: `?idle=SECONDS` (inactivity before returning to the start; default 60) and
// `?lang=de` (the language each new customer starts in).

import { api, followEvents } from "./api.js";
import {
  nextLanguage, onLanguageChange, resetLanguage, setCurrency, setDefaultLanguage,
} from "./i18n.js";
import { errorMessage, isNewer, isVending, isWaiting, screenFor } from "./outcome.js";
import * as view from "./view.js";

const query = new URLSearchParams(location.search);
const IDLE_MS = seconds(query.get("idle"), 60) * 1000;
// A result is read in a few seconds; the next customer should not find it still there.
const RESULT_MS = Math.min(IDLE_MS, 15000);
const POLL_MS = 1500;
// With the stream up, a sale not heard of for this long is asked for (an event may be lost).
const QUIET_MS = 5000;
const RETRY_MS = 3000;

function seconds(text, fallback) {
  const value = Number(text);
  return text && Number.isFinite(value) && value > 0 ? value : fallback;
}

/** Screens on which no sale is under way: the kiosk's service state decides what they show. */
const SELLING = new Set(["loading", "attract", "grid", "detail", "out-of-service"]);
const IDLE_AFTER = {
  grid: IDLE_MS, detail: IDLE_MS, card: IDLE_MS, finger: IDLE_MS,
  success: RESULT_MS, failure: RESULT_MS,
};

const state = {
  screen: "loading",
  catalog: null,
  service: { in_service: false, payment_methods: [], reasons: [] },
  reachable: true,
  slot: null, // the code of the product chosen on the grid
  sale: null, // the sale this screen follows (API view)
  saleSeen: 0, // when it was last heard of
  past: new Set(), // sales this screen is done with: their late news is not shown
  abandoned: null, // a sale whose customer walked away
  starting: false,
  cancelling: false,
  failure: null, // what the failure screen says (outcome.screenFor)
  error: null, // i18n key of a problem starting a sale, shown on the detail screen
};

let idleTimer = null;
let catalogTimer = null;
let lostTimer = null;

// --- drawing ---------------------------------------------------------------------------------

function chosenSlot() {
  return state.catalog?.slots.find((slot) => slot.code === state.slot) ?? null;
}

function canSell() {
  return state.reachable && state.catalog !== null && state.service.in_service;
}

function render() {
  view.showScreen(state.screen);
  if (state.catalog) view.drawGrid(state.catalog.slots);
  view.drawSale(state.sale, state.cancelling);
  const slot = chosenSlot();
  if (state.screen === "attract") {
    view.drawAttract(state.service.payment_methods);
  } else if (state.screen === "detail" && slot) {
    view.drawDetail(slot, state.service.payment_methods, state.error, state.starting);
  } else if (state.screen === "dispensing" && state.sale) {
    view.drawDispensing(screenFor(state.sale).title);
  } else if (state.screen === "failure" && state.failure) {
    view.drawFailure(state.failure, state.sale);
  } else if (state.screen === "out-of-service") {
    view.drawOutOfService(state.reachable, state.service.reasons);
  }
}

function go(screen) {
  const changed = screen !== state.screen;
  state.screen = screen;
  render();
  if (changed) armIdle();
}

// --- inactivity ------------------------------------------------------------------------------

function armIdle() {
  clearTimeout(idleTimer);
  const delay = IDLE_AFTER[state.screen];
  if (delay) idleTimer = setTimeout(onIdle, delay);
}

function onIdle() {
  const sale = state.sale;
  if (sale && !sale.terminal) {
    if (!isWaiting(sale)) {
      armIdle(); // a product is on its way: see it through
      return;
    }
    abandon(sale);
  }
  resetLanguage();
  toStart();
}

/** The customer walked away while the kiosk waited for payment: cancel at the reader. */
function abandon(sale) {
  state.abandoned = sale.id;
  api.cancelSale(sale.id).then(followSale, () => {});
}

function toStart() {
  if (state.sale) state.past.add(state.sale.id);
  if (state.past.size > 20) state.past.delete(state.past.values().next().value);
  Object.assign(state, { sale: null, slot: null, failure: null, error: null, cancelling: false });
  go(canSell() ? "attract" : "out-of-service");
}

// --- the sale --------------------------------------------------------------------------------

/** News of a sale, from the POST answer, the stream or a poll: show it if it is newer. */
function followSale(sale, ours = false) {
  if (sale.id === state.abandoned) {
    if (!isVending(sale)) return;
    state.abandoned = null; // the customer walked away, yet a product comes: show it
  } else if (state.past.has(sale.id)) {
    return;
  }
  const shown = state.sale;
  if (!shown || shown.id !== sale.id) {
    if (shown && !shown.terminal) return; // one sale at a time
    // A sale that ended before this screen knew of it is old news, unless this screen
    // has just started it (the stream can overtake the POST's answer).
    if (sale.terminal && !ours && !state.starting) return;
  } else if (shown.state === sale.state) {
    state.saleSeen = Date.now();
    return;
  }
  if (!isNewer(sale, shown)) return;
  state.sale = sale;
  state.saleSeen = Date.now();
  state.cancelling = state.cancelling && isWaiting(sale);
  const next = screenFor(sale);
  state.failure = next.screen === "failure" ? next : null;
  go(next.screen);
}

async function startSale(method) {
  if (state.starting || !state.slot) return;
  state.starting = true;
  state.error = null;
  render();
  try {
    followSale(await api.startSale(state.slot, method), true);
  } catch (error) {
    state.error = errorMessage(error);
    if (error.code === "out_of_service") state.service = { ...state.service, in_service: false };
    if (error.code !== "busy") loadCatalog(); // the catalog or service changed meanwhile
  } finally {
    state.starting = false;
    if (state.screen === "detail") render();
  }
}

async function cancelSale() {
  const sale = state.sale;
  if (!sale || !isWaiting(sale) || state.cancelling) return;
  state.cancelling = true;
  render();
  try {
    followSale(await api.cancelSale(sale.id));
  } catch {
    // Too late (the payment went through at that instant): the stream shows what follows.
    state.cancelling = false;
    render();
  }
}

function pollSale() {
  const sale = state.sale;
  if (!sale || sale.terminal) return;
  if (events.isOpen() && Date.now() - state.saleSeen < QUIET_MS) return;
  api.sale(sale.id).then(followSale, () => {});
}

// --- catalog and service ---------------------------------------------------------------------

// Counts service events from the stream: a catalog asked for before the latest one carries
// an older service state, which must not overwrite the newer one.
let serviceNews = 0;

async function loadCatalog() {
  clearTimeout(catalogTimer);
  const asked = serviceNews;
  try {
    const catalog = await api.catalog();
    state.catalog = catalog;
    setCurrency(catalog.currency);
    state.reachable = true;
    if (asked === serviceNews) {
      state.service = { in_service: catalog.in_service, payment_methods: catalog.payment_methods,
                        reasons: catalog.in_service ? [] : state.service.reasons };
    }
    view.showSimulator(catalog.simulated);
  } catch (error) {
    if (error.code === "network" || error.status >= 500) state.reachable = false;
    catalogTimer = setTimeout(loadCatalog, RETRY_MS);
  }
  serviceChanged();
}

/** Whether the kiosk can sell may have changed: move between selling and out of service. */
function serviceChanged() {
  if (state.catalog === null && state.reachable) {
    render(); // still loading
    return;
  }
  const selling = canSell();
  if (!selling && SELLING.has(state.screen)) {
    state.slot = null;
    go("out-of-service");
  } else if (selling && (state.screen === "out-of-service" || state.screen === "loading")) {
    toStart();
  } else if (state.screen === "detail" && chosenSlot()?.stock_state !== "available") {
    state.slot = null;
    go("grid");
  } else {
    render();
  }
}

const events = followEvents({
  open() {
    clearTimeout(lostTimer);
    lostTimer = null;
    if (!state.reachable) loadCatalog();
    pollSale();
  },
  lost() {
    // EventSource retries by itself; if the kiosk stays unreachable, say so.
    lostTimer ??= setTimeout(() => {
      lostTimer = null;
      if (!events.isOpen()) loadCatalog();
    }, RETRY_MS);
  },
  service(service) {
    const was = state.service.in_service;
    serviceNews += 1;
    state.service = service;
    state.reachable = true;
    if (service.in_service && !was) loadCatalog(); // stock may have changed meanwhile
    else serviceChanged();
  },
  catalog() {
    loadCatalog();
  },
  sale(sale) {
    followSale(sale);
  },
});

// --- touches ---------------------------------------------------------------------------------

const ACTIONS = {
  language: () => nextLanguage(),
  start: () => canSell() && go("grid"),
  pick: (element) => {
    state.slot = element.dataset.slot;
    state.error = null;
    go("detail");
  },
  back: () => {
    state.slot = null;
    go("grid");
  },
  pay: (element) => startSale(element.dataset.method),
  cancel: () => cancelSale(),
  retry: () => {
    const slot = state.sale?.slot ?? state.slot;
    toStart();
    if (!canSell()) return;
    state.slot = slot;
    go(chosenSlot()?.stock_state === "available" ? "detail" : "grid");
  },
  done: () => {
    resetLanguage();
    toStart();
  },
};

document.addEventListener("click", (event) => {
  const target = event.target.closest("[data-action]");
  if (target && !target.disabled) ACTIONS[target.dataset.action]?.(target);
});
for (const type of ["pointerdown", "keydown"]) {
  document.addEventListener(type, () => armIdle(), { capture: true, passive: true });
}
// A kiosk: no long-press menu, no dragging pictures away, no selecting text.
for (const type of ["contextmenu", "dragstart", "selectstart"]) {
  document.addEventListener(type, (event) => event.preventDefault());
}

setDefaultLanguage(query.get("lang"));
onLanguageChange(() => render());
render();
loadCatalog();
setInterval(pollSale, POLL_MS);
