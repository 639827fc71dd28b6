// The maintenance page's shell: login, the navigation between pages (hash routes such as
// #/sales/<id>?state=needs_review), logout, and the service pill in the top bar.
//
// Each page is a module in pages/ with `mount(section, app)` (once), `show(route)` and
// `hide()`; only the page on screen polls the kiosk.

import * as api from "./api.js";
import { subscribe } from "./live.js";
import { notify, problem } from "./notices.js";
import audit from "./pages/audit.js";
import dashboard from "./pages/dashboard.js";
import diagnostics from "./pages/diagnostics.js";
import members from "./pages/members.js";
import sales from "./pages/sales.js";
import stock from "./pages/stock.js";

const PAGES = { dashboard, diagnostics, stock, sales, members, audit };
const $ = (id) => document.getElementById(id);

const state = { me: null, page: null, mounted: new Set(), statusTimer: null, unsubscribe: null };
// The top bar's service pill and the simulator banner, on every page (the dashboard refreshes
// them more often by itself).
const STATUS_MS = 15000;

/** What pages may use of the shell. */
const app = {
  go(hash) {
    if (location.hash === hash) route();
    else location.hash = hash;
  },
  /** Pages that learn the kiosk's service state or simulator use tell the top bar. */
  service(service, heldBy) {
    const pill = $("service-pill");
    pill.hidden = !service;
    if (!service) return;
    pill.className = `pill ${service.in_service ? "good" : "bad"}`;
    pill.textContent = service.in_service ? "In service" : "Out of service";
    pill.title = heldBy || (service.reasons ?? []).join("; ");
  },
  simulated(simulated) {
    $("simulator").hidden = !simulated;
  },
  get technician() {
    return state.me?.name ?? "";
  },
};

function show(screen) {
  document.body.dataset.page = screen;
  $("loading").hidden = screen !== "loading";
  $("login-screen").hidden = screen !== "login";
  $("shell").hidden = screen === "login" || screen === "loading";
}

// --- login -----------------------------------------------------------------------------------

function showLogin(message) {
  clearTimeout(state.statusTimer);
  state.unsubscribe?.();
  state.unsubscribe = null;
  state.page?.hide();
  state.page = null;
  state.me = null;
  api.setCsrfToken("");
  show("login");
  const error = $("login-error");
  error.hidden = !message;
  error.textContent = message ?? "";
  $(($("login-name").value ? "login-secret" : "login-name")).focus();
}

function loggedIn(me) {
  state.me = me;
  api.setCsrfToken(me.csrf_token);
  $("who").textContent = me.name;
  route();
  refreshStatus();
  // The pill follows the kiosk's service live where the network allows the kiosk's stream.
  state.unsubscribe ??= subscribe((topic, data) => {
    if (topic === "service") app.service(data, (data.reasons ?? []).join("; "));
  });
}

async function refreshStatus() {
  clearTimeout(state.statusTimer);
  if (!state.me) return;
  try {
    const board = await api.get("/dashboard");
    app.service(board.service, board.held_by);
    app.simulated(Object.values(board.devices).some((device) => device.simulated));
  } catch {
    // The page on screen says what went wrong; a 401 has shown the login already.
  }
  if (state.me) state.statusTimer = setTimeout(refreshStatus, STATUS_MS);
}

/** What a refused login says: the kiosk's own words where they help (how long a lock lasts). */
function loginProblem(failure) {
  switch (failure.code) {
    case "login_failed":
      return "Wrong name or secret.";
    case "locked":
      return `${sentence(failure.message)} Wait, or ask another technician.`;
    case "forbidden":
      return "This computer's network may not use the maintenance page.";
    default:
      return problem(failure, "Not logged in");
  }
}

function sentence(text) {
  const trimmed = String(text ?? "").trim();
  return trimmed ? `${trimmed[0].toUpperCase()}${trimmed.slice(1)}${/[.!?]$/.test(trimmed) ? "" : "."}`
                 : "";
}

async function submitLogin(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const name = form.elements.name.value.trim();
  const secret = form.elements.secret.value;
  const error = $("login-error");
  if (!name || !secret) {
    error.textContent = "Enter your name and secret.";
    error.hidden = false;
    return;
  }
  const button = $("login-submit");
  button.disabled = true;
  button.textContent = "Logging in…";
  error.hidden = true;
  try {
    const me = await api.request("POST", "/login", { body: { name, secret }, quiet401: true });
    form.elements.secret.value = "";
    loggedIn(me);
  } catch (failure) {
    error.textContent = loginProblem(failure);
    error.dataset.code = failure.code;
    error.hidden = false;
    form.elements.secret.select();
  } finally {
    button.disabled = false;
    button.textContent = "Log in";
  }
}

async function logout() {
  try {
    await api.post("/logout");
  } catch (error) {
    if (error.status !== 401) notify(problem(error, "Not logged out"), "bad");
  }
  showLogin("You are logged out.");
}

// --- pages -----------------------------------------------------------------------------------

function parseHash() {
  const [path, query = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const [page, ...rest] = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { page: PAGES[page] ? page : "dashboard", rest, params: new URLSearchParams(query) };
}

function route() {
  if (!state.me) return;
  const { page: name, rest, params } = parseHash();
  const page = PAGES[name];
  const section = $(`page-${name}`);
  if (state.page !== page) {
    state.page?.hide();
    for (const other of document.querySelectorAll("main > .page")) other.hidden = other !== section;
    for (const link of document.querySelectorAll("#nav-links a")) {
      if (link.dataset.page === name) {
        link.setAttribute("aria-current", "page");
        link.scrollIntoView({ block: "nearest", inline: "nearest" }); // the phone's nav scrolls
      } else {
        link.removeAttribute("aria-current");
      }
    }
    if (!state.mounted.has(name)) {
      page.mount(section, app);
      state.mounted.add(name);
    }
    state.page = page;
    show(name);
    document.title = `${page.title} · Kiosk maintenance`;
  }
  page.show({ rest, params });
}

async function start() {
  api.whenLoggedOut(() => showLogin("Your session has ended: log in again."));
  $("login-form").addEventListener("submit", submitLogin);
  $("logout").addEventListener("click", logout);
  window.addEventListener("hashchange", route);
  try {
    loggedIn(await api.request("GET", "/me", { quiet401: true }));
  } catch (error) {
    showLogin(error.status === 401 ? null : problem(error, "Cannot reach the kiosk"));
  }
}

start();
