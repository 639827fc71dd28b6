// The guided fingerprint enrolment: consent first, then each capture step as the reader
// reports it (place the finger, lift it, place it again, merging, stored), live from the
// technician's event stream, with polling of the job as a fallback.

import * as api from "../api.js";
import { fill, h } from "../dom.js";
import { notify, problem } from "../notices.js";
import { TECHNICIAN_EVENTS, follow } from "../live.js";

const STEPS = [
  ["starting", "Getting the reader ready"],
  ["place_finger", "Place the finger on the sensor"],
  ["lift_finger", "Lift the finger"],
  ["place_again", "Place the same finger again"],
  ["merging", "Merging the two captures"],
  ["stored", "Stored on the reader"],
];
const POLL_MS = 800;

let running = null; // { member, stream, timer, box, done }

export function stopEnrolment() {
  if (!running) return;
  running.stream?.stop();
  clearTimeout(running.timer);
  running = null;
}

/** The panel for a member without a fingerprint; `done()` reloads the member when it ends. */
export function enrolmentPanel(member, done) {
  const box = h("div", { class: "enrolment", id: "enrolment" });
  if (!member.active) {
    return fill(box, h("p", { class: "muted" }, "Reactivate the member to enrol a fingerprint."));
  }
  const consent = h("input", { type: "checkbox", id: "enrol-consent", name: "consent" });
  const start = h("button", { type: "submit", class: "primary", disabled: true },
                  "Start enrolment");
  const error = h("p", { class: "error", role: "alert", hidden: true });
  consent.addEventListener("change", () => { start.disabled = !consent.checked; });
  const form = h("form", { class: "editor" },
    h("p", {}, "No fingerprint enrolled."),
    h("label", { class: "check", for: "enrol-consent" }, consent,
      h("span", {}, `${member.name} agrees that a template of their fingerprint is kept on the `
                    + "kiosk's reader to pay from their balance (it never leaves the reader).")),
    error,
    h("div", { class: "actions" }, start));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!consent.checked) {
      error.textContent = "The member's consent is required.";
      error.hidden = false;
      return;
    }
    start.disabled = true;
    try {
      const job = await api.post(`/members/${member.id}/enrolment`, { consent: true });
      begin(member, box, job, done);
    } catch (failure) {
      error.textContent = problem(failure, "Enrolment not started");
      error.hidden = false;
      start.disabled = false;
    }
  });
  fill(box, form);
  // An enrolment started earlier (another tab, a reload) that is still running: follow it.
  api.request("GET", `/members/${member.id}/enrolment`).then((job) => {
    if (job.state === "running" && box.isConnected) begin(member, box, job, done);
  }, () => {});
  return box;
}

function begin(member, box, job, done) {
  stopEnrolment();
  const instruction = h("p", { class: "instruction", id: "enrol-instruction",
                               "aria-live": "assertive" });
  const steps = h("ol", { class: "steps", id: "enrol-steps" },
    STEPS.map(([step, label]) => h("li", { dataset: { step } }, label)));
  const cancel = h("button", { type: "button", class: "danger", onclick: () => cancelIt(member) },
                   "Cancel enrolment");
  const outcome = h("div", { class: "outcome" });
  fill(box, h("p", { class: "muted" }, `Enrolling ${member.name} on page ${job.page}`),
       instruction, steps, outcome, h("div", { class: "actions" }, cancel));
  running = { member, box, instruction, steps, cancel, outcome, done, job, timer: null };
  running.stream = follow((topic, data) => {
    if (topic === "enrolment" && data.member === member.id) update({ ...running.job, ...data });
    if (topic === "session_ended") api.request("GET", "/me").catch(() => {});
  }, { url: TECHNICIAN_EVENTS });
  update(job);
  poll();
  box.scrollIntoView({ block: "nearest", behavior: "smooth" }); // below the fold on a phone
}

async function poll() {
  const current = running;
  if (!current) return;
  try {
    const job = await api.get(`/members/${current.member.id}/enrolment`);
    if (running === current) update(job);
  } catch (error) {
    if (error.status === 401) return;
  }
  if (running === current && current.job.state === "running") {
    current.timer = setTimeout(poll, POLL_MS);
  }
}

function update(job) {
  const current = running;
  if (!current) return;
  // Events and polls can arrive out of order: never step back while the job runs.
  const order = (step) => STEPS.findIndex(([name]) => name === step);
  if (job.state === "running" && current.job.state === "running"
      && order(job.step) < order(current.job.step)) return;
  current.job = job;
  const at = order(job.step);
  for (const item of current.steps.children) {
    const index = order(item.dataset.step);
    const state = job.state === "succeeded" || index < at ? "done"
      : index === at ? (job.state === "running" ? "current" : job.state) : "pending";
    item.className = state;
    if (state === "current") item.setAttribute("aria-current", "step");
    else item.removeAttribute("aria-current");
  }
  current.box.dataset.step = job.step;
  current.box.dataset.state = job.state;
  if (job.state === "running") {
    current.instruction.textContent = capitalised(job.instruction || STEPS[at]?.[1] || job.step);
    return;
  }
  current.cancel.hidden = true;
  current.stream?.stop();
  clearTimeout(current.timer);
  if (job.state === "succeeded") {
    current.instruction.textContent = "Fingerprint stored";
    fill(current.outcome, h("p", { class: "good" },
      `${job.name}'s fingerprint is on page ${job.page}: they can pay with it now.`));
    notify(`Fingerprint of ${job.name} enrolled.`);
  } else {
    current.instruction.textContent = job.state === "cancelled" ? "Enrolment cancelled"
                                                                : "Enrolment failed";
    fill(current.outcome, h("p", { class: "error" }, capitalised(job.reason)),
      h("button", { type: "button", onclick: () => current.done() }, "Try again"));
    return;
  }
  running = null;
  setTimeout(() => current.done(), 1500);
}

async function cancelIt(member) {
  try {
    const job = await api.remove(`/members/${member.id}/enrolment`);
    update(job);
  } catch (error) {
    notify(problem(error, "Not cancelled"), "bad");
  }
}

function capitalised(text) {
  const value = String(text ?? "");
  return value ? value[0].toUpperCase() + value.slice(1) : value;
}
