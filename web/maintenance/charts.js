// Bar charts drawn as inline SVG at the size they are shown (no library, no canvas).
//
// A chart is a <figure> whose SVG is redrawn when its box changes size, so labels stay
// readable on a phone; each bar has a <title> (a tooltip, and what a screen reader reads).

import { h, svg } from "./dom.js";

const HEIGHT = 180;
const PAD = { top: 12, right: 8, bottom: 34, left: 36 };

/**
 * `bars` is a list of `{label, value, max?, tone?, note?}`: `max` draws a pale bar behind
 * (a slot's capacity), `tone` is "bad" or "warn", `note` goes into the bar's tooltip.
 * `format` turns a value into text (money, counts).
 */
export function barChart({ title, bars, format = String, empty = "No data yet.", unit = "" }) {
  const box = h("div", { class: "chart-box" });
  const figure = h("figure", { class: "chart", dataset: { chart: title } },
    h("figcaption", {}, title), box);
  let drawnWidth = 0;
  const draw = () => {
    const width = Math.max(240, Math.floor(box.clientWidth || 480));
    if (width === drawnWidth) return;
    drawnWidth = width;
    box.replaceChildren(drawing(title, bars, width, format, empty, unit));
  };
  new ResizeObserver(draw).observe(box);
  queueMicrotask(draw);
  return figure;
}

function niceMax(value) {
  if (value <= 5) return 5;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}

function drawing(title, bars, width, format, empty, unit) {
  const top = Math.max(0, ...bars.map((bar) => Math.max(bar.value, bar.max ?? 0)));
  const total = bars.reduce((sum, bar) => sum + bar.value, 0);
  const label = `${title}: ${bars.length ? `${bars.length} bars, total ${format(total)}${unit}`
                                         : empty}`;
  const chart = svg("svg", {
    width, height: HEIGHT, viewBox: `0 0 ${width} ${HEIGHT}`, role: "img", "aria-label": label,
  });
  if (!bars.length || (top === 0 && !bars.some((bar) => bar.max))) {
    chart.append(svg("text", { x: width / 2, y: HEIGHT / 2, class: "chart-empty",
                               "text-anchor": "middle" }, bars.length ? "All zero" : empty));
    if (!bars.length) return chart;
  }
  const scale = niceMax(top || 1);
  const plotW = width - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const y = (value) => PAD.top + plotH - (value / scale) * plotH;
  for (const tick of [0, scale / 2, scale].filter(Number.isInteger)) {
    chart.append(
      svg("line", { x1: PAD.left, x2: width - PAD.right, y1: y(tick), y2: y(tick),
                    class: "chart-grid" }),
      svg("text", { x: PAD.left - 4, y: y(tick) + 4, "text-anchor": "end", class: "chart-axis" },
          format(tick)),
    );
  }
  const slot = plotW / bars.length;
  const barW = Math.max(2, Math.min(48, slot * 0.72));
  // Label every bar if there is room, else every second, third...
  const every = Math.max(1, Math.ceil(34 / slot));
  bars.forEach((bar, index) => {
    const x = PAD.left + index * slot + (slot - barW) / 2;
    const tip = `${bar.label}: ${format(bar.value)}${unit}${bar.max ? ` of ${format(bar.max)}` : ""}`
      + (bar.note ? ` (${bar.note})` : "");
    const group = svg("g", { class: `chart-bar ${bar.tone ?? ""}`, dataset: { label: bar.label,
                                                                                value: bar.value } },
      svg("title", {}, tip));
    if (bar.max) {
      group.append(svg("rect", { x, y: y(bar.max), width: barW, height: y(0) - y(bar.max),
                                 class: "chart-capacity", rx: 2 }));
    }
    const height = Math.max(bar.value > 0 ? 1 : 0, y(0) - y(bar.value));
    group.append(svg("rect", { x, y: y(0) - height, width: barW, height, class: "chart-value",
                               rx: 2 }));
    if (index % every === 0) {
      group.append(svg("text", { x: x + barW / 2, y: HEIGHT - PAD.bottom + 14,
                                 "text-anchor": "middle", class: "chart-axis" }, bar.label));
    }
    chart.append(group);
  });
  return chart;
}
