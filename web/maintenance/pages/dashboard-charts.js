// The dashboard's charts: sales per hour (last 24 h) and per day (last 30 days), stock per slot.

import * as api from "../api.js";
import { barChart } from "../charts.js";
import { fill, h } from "../dom.js";
import { money } from "../format.js";
import { problem } from "../notices.js";

const DAYS = 30;
const HOURS = 24;
// The list API gives 200 sales a page; beyond this many pages the charts say they are partial.
const MOST_PAGES = 50;
const dayLabel = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "numeric" });

let lastStock = "";
let lastSales = "";

/**
 * Completed sales per hour and per day, counted here from the sales list: the API has no
 * per-hour or per-day totals (see the report), so this reads up to 30 days of sales.
 */
export async function salesCharts(box) {
  const now = new Date();
  const firstDay = new Date(now.getFullYear(), now.getMonth(), now.getDate() - (DAYS - 1));
  let sales;
  let partial = false;
  try {
    ({ sales, partial } = await completedSince(firstDay));
  } catch (error) {
    if (error.status !== 401) fill(box, h("p", { class: "muted" }, problem(error, "No sales charts")));
    return;
  }
  const hourStart = new Date(now.getFullYear(), now.getMonth(), now.getDate(), now.getHours());
  const hours = Array.from({ length: HOURS }, (_, index) => {
    const start = new Date(hourStart.getTime() - (HOURS - 1 - index) * 3600_000);
    return { start, label: String(start.getHours()).padStart(2, "0"), value: 0, cents: 0 };
  });
  const days = Array.from({ length: DAYS }, (_, index) => {
    const start = new Date(firstDay.getFullYear(), firstDay.getMonth(), firstDay.getDate() + index);
    return { start, label: dayLabel.format(start), value: 0, cents: 0 };
  });
  for (const sale of sales) {
    const at = new Date(sale.created_at);
    const hour = Math.floor((at - hours[0].start) / 3600_000);
    if (hour >= 0 && hour < HOURS) {
      hours[hour].value += 1;
      hours[hour].cents += sale.price_cents;
    }
    const day = days.findLastIndex((bucket) => bucket.start <= at);
    if (day >= 0) {
      days[day].value += 1;
      days[day].cents += sale.price_cents;
    }
  }
  const bars = (buckets) => buckets.map(({ label, value, cents }) => ({
    label, value, note: money(cents),
  }));
  const key = JSON.stringify([bars(hours), bars(days), partial]);
  if (key === lastSales && box.firstChild) return;
  lastSales = key;
  fill(box,
    barChart({ title: "Sales per hour, last 24 hours", bars: bars(hours), unit: " sales" }),
    barChart({ title: "Sales per day, last 30 days", bars: bars(days), unit: " sales" }),
    partial ? h("p", { class: "muted" }, `Counted from the newest ${MOST_PAGES * 200} sales only.`)
            : null);
}

async function completedSince(since) {
  const sales = [];
  let cursor = null;
  for (let page = 0; page < MOST_PAGES; page += 1) {
    const answer = await api.get("/sales", { from: since.toISOString(), state: "completed",
                                             limit: 200, cursor });
    sales.push(...answer.sales);
    cursor = answer.next_cursor;
    if (!cursor) return { sales, partial: false };
  }
  return { sales, partial: true };
}

/** Stock against capacity, one bar a slot; red where the slot cannot sell. */
export async function stockChart(box) {
  let planogram;
  try {
    planogram = await api.get("/planogram");
  } catch (error) {
    if (error.status !== 401) fill(box, h("p", { class: "muted" }, problem(error, "No stock chart")));
    return;
  }
  const bars = planogram.slots.map((slot) => ({
    label: slot.code,
    value: slot.stock,
    max: slot.capacity,
    tone: !slot.for_sale || slot.stock === 0 ? "bad" : slot.stock <= slot.capacity / 4 ? "warn" : "",
    note: [slot.product?.name ?? "empty", slot.fault, slot.for_sale ? "" : "not for sale"]
      .filter(Boolean).join(", "),
  }));
  const key = JSON.stringify(bars);
  if (key === lastStock && box.firstChild) return;
  lastStock = key;
  fill(box, barChart({ title: "Stock per slot (of capacity)", bars, unit: " items",
                       empty: "No slots." }));
}
