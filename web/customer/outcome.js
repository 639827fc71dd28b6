// What the customer sees for a sale in each state: which screen, which words.
// The sale is the API's view (kiosk.sales.sale_view): state, method, reason, terminal.

// States in the order a sale passes through them: an update older than what is shown
// (a poll answer overtaken by the stream, or the reverse) must not move the screen back.
const RANK = {
  created: 0, authorizing: 1, authorized: 2, dispensing: 3,
  dispensed: 4, dispense_failed: 4,
  completed: 5, declined: 5, cancelled: 5, voided: 5, needs_review: 5,
};

/** The customer may still cancel: the kiosk is waiting for their card or finger. */
export function isWaiting(sale) {
  return sale.state === "created" || sale.state === "authorizing";
}

/** A product is on its way (or out): the customer should see it through. */
export function isVending(sale) {
  return ["dispensing", "dispensed", "completed"].includes(sale.state);
}

/** Whether `next` says something newer about a sale than `shown` did. */
export function isNewer(next, shown) {
  if (!shown || next.id !== shown.id) return true;
  if (shown.terminal) return false;
  return (RANK[next.state] ?? 0) >= (RANK[shown.state] ?? 0);
}

/** The first 8 characters of the sale's id: enough for staff to find it. */
export function saleNumber(sale) {
  return sale.id.slice(0, 8);
}

function delivered(sale) {
  // needs_review after the drop beam saw the product: the customer has it; staff settle the rest.
  return sale.state === "needs_review" && sale.reason.startsWith("product delivered");
}

/**
 * The screen for `sale`: `{screen, outcome, title, message, retry}`; title and message are
 * i18n keys. `retry` offers to try paying again for the same product.
 */
export function screenFor(sale) {
  switch (sale.state) {
    case "created":
    case "authorizing":
      return { screen: sale.method === "account" ? "finger" : "card" };
    case "authorized":
      return { screen: "dispensing", title: "payment_accepted" };
    case "dispensing":
      return { screen: "dispensing", title: "dispensing" };
    case "dispense_failed":
      return { screen: "dispensing", title: "refunding" };
    case "dispensed":
    case "completed":
      return success();
    case "needs_review":
      return delivered(sale) ? success() : failure("review", "review", "review_hint");
    case "declined":
      if (sale.reason === "insufficient balance") {
        return failure("insufficient", "insufficient", "insufficient_hint", true);
      }
      if (sale.reason === "fingerprint not recognised") {
        return failure("unrecognised", "unrecognised", "unrecognised_hint", true);
      }
      return failure("declined", "declined", "declined_hint", true);
    case "voided":
      return failure("voided", "sorry",
                     sale.method === "account" ? "credited_back" : "not_charged");
    case "cancelled":
      return failure("cancelled", "cancelled",
                     /in time/.test(sale.reason) ? "timed_out_hint" : "cancelled_hint", true);
    default:
      return failure("unknown", "sorry", "error_other");
  }
}

function success() {
  return { screen: "success", outcome: "completed", title: "take_product",
           message: "take_product_hint" };
}

function failure(outcome, title, message, retry = false) {
  return { screen: "failure", outcome, title, message, retry };
}

/** The words for an API error when starting a sale: an i18n key. */
export function errorMessage(error) {
  switch (error.code) {
    case "busy":
      return "error_busy";
    case "slot_unavailable":
      return "error_slot";
    case "payment_unavailable":
      return "error_payment";
    case "out_of_service":
      return "error_service";
    case "network":
      return "error_network";
    default:
      return "error_other";
  }
}
