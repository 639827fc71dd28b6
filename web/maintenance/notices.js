// Short messages after an action ("Slot A1 restocked", "Price not saved: ..."), read aloud.

const SHOWN_MS = 6000;
const MOST_SHOWN = 3;

export function notify(message, tone = "good") {
  const box = document.getElementById("notices");
  const notice = document.createElement("p");
  notice.className = `notice ${tone}`;
  notice.textContent = message;
  if (tone === "bad") notice.setAttribute("role", "alert");
  notice.title = "Click to dismiss";
  notice.addEventListener("click", () => notice.remove());
  box.append(notice);
  while (box.children.length > MOST_SHOWN) box.firstChild.remove();
  setTimeout(() => notice.remove(), tone === "bad" ? SHOWN_MS * 2 : SHOWN_MS);
}

/** The message for a failed request, for a person. */
export function problem(error, doing) {
  if (error?.code === "network") return `${doing}: the kiosk did not answer. Try again.`;
  if (error?.code === "csrf") return `${doing}: the page is out of date. Reload it.`;
  return `${doing}: ${error?.message ?? error}`;
}
