// The customer screen's words in every language it speaks, and prices in the customer's format.
// A language is chosen on screen at run time; the next customer starts in the default again.

let currency = "EUR"; // replaced by the catalog's currency as soon as it loads

const STRINGS = {
  en: {
    language_button: "Deutsch",
    brand: "Snacks & more",
    touch_to_start: "Touch to start",
    attract_hint: "Pay by card or with your member fingerprint",
    attract_hint_card: "Pay by card",
    attract_hint_account: "Pay with your member fingerprint",
    choose: "Choose a product",
    sold_out: "Sold out",
    unavailable: "Not available",
    how_to_pay: "How would you like to pay?",
    pay_card: "Card",
    pay_account: "Member fingerprint",
    back: "Back",
    cancel: "Cancel",
    cancelling: "Cancelling…",
    done: "Done",
    try_again: "Try again",
    present_card: "Present your card",
    present_card_hint: "Hold your card or phone to the reader.",
    place_finger: "Place your finger",
    place_finger_hint: "Put your enrolled finger flat on the reader.",
    paying: "Payment",
    payment_accepted: "Payment accepted",
    dispensing: "Dispensing your product…",
    refunding: "Not delivered: refunding…",
    please_wait: "Please wait a moment.",
    take_product: "Take your product",
    take_product_hint: "Thank you! Your product is in the tray below.",
    sale_number: "Sale number",
    declined: "Payment declined",
    declined_hint: "Your payment was declined. You were not charged.",
    unrecognised: "Fingerprint not recognised",
    unrecognised_hint: "Try again, or pay by card. You were not charged.",
    insufficient: "Insufficient balance",
    insufficient_hint: "Your member balance does not cover {price}. Please top up or pay by card.",
    not_charged: "Not delivered: you were not charged.",
    credited_back: "Not delivered: your balance was credited back.",
    cancelled: "Cancelled",
    cancelled_hint: "The sale was cancelled. You were not charged.",
    timed_out_hint: "Nothing was presented in time. You were not charged.",
    review: "Please ask staff",
    review_hint: "Something went wrong with this sale. A member of staff will check it.",
    sorry: "Sorry",
    error_busy: "The machine is still finishing another sale. Please try again in a moment.",
    error_slot: "This product cannot be sold right now. Please choose another one.",
    error_payment: "This way of paying is not available right now. Please choose another.",
    error_service: "The kiosk is out of service right now.",
    error_network: "The kiosk cannot be reached right now. Please try again.",
    error_other: "Something went wrong. Please try again.",
    out_of_service: "Out of service",
    out_of_service_hint: "Sorry, this kiosk cannot sell right now. It will be back by itself.",
    connecting: "Connecting…",
    simulator: "SIMULATOR: no real payments, no real products",
  },
  de: {
    language_button: "English",
    brand: "Snacks & mehr",
    touch_to_start: "Zum Starten berühren",
    attract_hint: "Bezahlen mit Karte oder Mitglieds-Fingerabdruck",
    attract_hint_card: "Bezahlen mit Karte",
    attract_hint_account: "Bezahlen mit Mitglieds-Fingerabdruck",
    choose: "Produkt wählen",
    sold_out: "Ausverkauft",
    unavailable: "Nicht verfügbar",
    how_to_pay: "Wie möchten Sie bezahlen?",
    pay_card: "Karte",
    pay_account: "Mitglieds-Fingerabdruck",
    back: "Zurück",
    cancel: "Abbrechen",
    cancelling: "Wird abgebrochen…",
    done: "Fertig",
    try_again: "Erneut versuchen",
    present_card: "Bitte Karte vorhalten",
    present_card_hint: "Halten Sie Karte oder Telefon an das Lesegerät.",
    place_finger: "Bitte Finger auflegen",
    place_finger_hint: "Legen Sie den registrierten Finger flach auf den Leser.",
    paying: "Bezahlung",
    payment_accepted: "Zahlung akzeptiert",
    dispensing: "Ihr Produkt wird ausgegeben…",
    refunding: "Nicht ausgegeben: wird erstattet…",
    please_wait: "Bitte einen Moment Geduld.",
    take_product: "Bitte Produkt entnehmen",
    take_product_hint: "Vielen Dank! Ihr Produkt liegt im Ausgabefach.",
    sale_number: "Verkaufsnummer",
    declined: "Zahlung abgelehnt",
    declined_hint: "Ihre Zahlung wurde abgelehnt. Ihnen wurde nichts berechnet.",
    unrecognised: "Fingerabdruck nicht erkannt",
    unrecognised_hint: "Versuchen Sie es erneut oder zahlen Sie mit Karte. Nichts berechnet.",
    insufficient: "Guthaben reicht nicht",
    insufficient_hint: "Ihr Guthaben deckt {price} nicht. Bitte aufladen oder mit Karte zahlen.",
    not_charged: "Nicht ausgegeben: Ihnen wurde nichts berechnet.",
    credited_back: "Nicht ausgegeben: Ihr Guthaben wurde zurückgebucht.",
    cancelled: "Abgebrochen",
    cancelled_hint: "Der Kauf wurde abgebrochen. Ihnen wurde nichts berechnet.",
    timed_out_hint: "Es wurde nichts rechtzeitig vorgelegt. Ihnen wurde nichts berechnet.",
    review: "Bitte Personal fragen",
    review_hint: "Bei diesem Kauf ist etwas schiefgegangen. Das Personal prüft ihn.",
    sorry: "Entschuldigung",
    error_busy: "Der Automat beendet noch einen anderen Kauf. Bitte gleich noch einmal.",
    error_slot: "Dieses Produkt ist gerade nicht verkäuflich. Bitte ein anderes wählen.",
    error_payment: "Diese Zahlungsart ist gerade nicht verfügbar. Bitte eine andere wählen.",
    error_service: "Der Automat ist gerade außer Betrieb.",
    error_network: "Der Automat ist gerade nicht erreichbar. Bitte erneut versuchen.",
    error_other: "Etwas ist schiefgegangen. Bitte erneut versuchen.",
    out_of_service: "Außer Betrieb",
    out_of_service_hint: "Der Automat kann gerade nicht verkaufen. Er ist bald von selbst zurück.",
    connecting: "Verbindung wird hergestellt…",
    simulator: "SIMULATOR: keine echten Zahlungen, keine echten Produkte",
  },
};

export const LANGUAGES = Object.keys(STRINGS);
const listeners = [];
let current = LANGUAGES[0];
let fallback = LANGUAGES[0];

export function language() {
  return current;
}

/** The default language for each new customer: `?lang=de`, else English. */
export function setDefaultLanguage(lang) {
  if (STRINGS[lang]) fallback = lang;
  setLanguage(fallback);
}

export function resetLanguage() {
  setLanguage(fallback);
}

export function setLanguage(lang) {
  if (!STRINGS[lang] || lang === current) return;
  current = lang;
  document.documentElement.lang = lang;
  for (const listener of listeners) listener(lang);
}

/** Switch to the next language (there is one button; it names the language it switches to). */
export function nextLanguage() {
  setLanguage(LANGUAGES[(LANGUAGES.indexOf(current) + 1) % LANGUAGES.length]);
}

export function onLanguageChange(listener) {
  listeners.push(listener);
}

/** The text for `key` in the current language, with `{name}` placeholders filled in. */
export function t(key, params = {}) {
  const text = STRINGS[current][key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(params[name] ?? ""));
}

/** The kiosk's currency (ISO 4217), as its catalog says. */
export function setCurrency(code) {
  if (code) currency = code;
}

export function formatPrice(cents) {
  return new Intl.NumberFormat(current, { style: "currency", currency })
    .format(cents / 100);
}

/** Fill every element marked `data-i18n="key"` under `root` with its text. */
export function translate(root = document) {
  for (const element of root.querySelectorAll("[data-i18n]")) {
    const text = t(element.dataset.i18n);
    if (element.textContent !== text) element.textContent = text;
  }
}
