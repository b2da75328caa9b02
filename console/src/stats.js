// Today's visitors, orders and revenue on the overview, as the store actor counted them (the
// admin API's …/stats; counts reach it in batches, so they lag by a few seconds).

import { h } from "./dom.js";

function money(minor, amount, currency) {
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(Number(amount));
  } catch {
    return `${amount} ${currency}`;
  }
}

/** The "Today" section for the overview, from `GET …/stats`. */
export function todaySection(stats) {
  const t = stats.today;
  return h("section", { class: "today", id: "today" },
    h("h3", {}, `Today (${t.date}, UTC)`),
    h("dl", { class: "facts" },
      h("dt", {}, "Visitors"), h("dd", { id: "stat-visitors" }, String(t.visitors)),
      h("dt", {}, "Orders"), h("dd", { id: "stat-orders" }, String(t.orders)),
      h("dt", {}, "Revenue"), h("dd", { id: "stat-revenue", dataset: { minor: t.revenueMinor } }, money(t.revenueMinor, t.revenue, stats.currency)),
    ),
  );
}
