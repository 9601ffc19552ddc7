// The merchant dashboard: figures from GET /v1/merchants/{id}/dashboard and /score, live
// stock from GET /v1/products/{id}, the blacklist from /v1/merchants/{id}/blacklist.

import {
  call,
  chart,
  el,
  fillDays,
  meter,
  percent,
  poll,
  setField,
  setUpBlacklist,
  setUpLogin,
  showPosition,
  yuan,
} from "./common.js";

// A product at or under this many cards is flagged; at zero nobody can buy it.
const LOW_STOCK = 5;
// The score ranks the merchant among all others: worth reading every half minute, not every poll.
const SCORE_EVERY_MS = 30_000;
const TIER_NAMES = { core: "Core", growth: "Growth", basic: "Basic", watch: "Watch" };

let token = null;
let merchantId = null;
let position = 0;
let scoreReadAt = -Infinity;

setUpLogin("merchant", (t, me) => {
  token = t;
  merchantId = me.id;
  setField("merchant-name", me.name || me.id);
  poll(refresh, () => window.location.reload());
  setUpBlacklist(token, `/v1/merchants/${merchantId}/blacklist`, { showBy: true });
});

async function refresh() {
  const d = await call(token, `/v1/merchants/${merchantId}/dashboard?after=${position}`);
  const products = await Promise.all(d.products.map((p) => productNow(p)));
  position = Math.max(position, d.position);
  renderFigures(d);
  renderStock(products);
  renderCharts(d.daily);
  showPosition(position);
  if (Date.now() - scoreReadAt >= SCORE_EVERY_MS) {
    scoreReadAt = Date.now();
    await refreshScore();
  }
}

// The live product (stock a new order could reserve, price, delivery), next to the view's
// figures; a product the store no longer answers for keeps the view's own stock.
async function productNow(figures) {
  try {
    const live = await call(token, `/v1/products/${figures.product_id}`);
    return { ...figures, ...live, sold: figures.sold };
  } catch {
    return { ...figures, price: null, delivery: "auto" };
  }
}

function renderFigures(d) {
  setField("gmv", yuan(d.gmv));
  setField("net_revenue", yuan(d.net_revenue));
  setField("platform_fees", yuan(d.platform_fees));
  setField("orders_paid", d.orders_paid);
  setField("avg_ticket", yuan(d.avg_ticket));
  setField("repeat_rate", percent(d.repeat_rate));
  setField("repeat_buyers", d.repeat_buyers);
  setField("buyers", d.buyers);
  setField("good_review_rate", percent(d.good_review_rate));
  setField("reviews", d.reviews);
  setField("avg_rating", Number(d.avg_rating).toFixed(1));
  const open = d.disputes - d.disputes_resolved;
  setField("open_disputes", open);
  setField("disputes", d.disputes);
  setField("disputes_resolved", d.disputes_resolved);
  setField("orders_refunded", d.orders_refunded);
  setField("refund_amount", yuan(d.refund_amount));
  setField("refund_rate", percent(d.orders_paid ? d.orders_refunded / d.orders_paid : 0));
  document.getElementById("todo-disputes").dataset.state = open > 0 ? "warn" : "ok";
  document.getElementById("todo-refunds").dataset.state = d.orders_refunded > 0 ? "info" : "ok";
}

function stockState(p) {
  if (p.delivery === "manual") return ["manual", "delivered by hand"];
  if (p.stock === 0) return ["out", "out of stock"];
  if (p.stock <= LOW_STOCK) return ["low", "low stock"];
  return ["ok", "in stock"];
}

function renderStock(products) {
  const body = document.querySelector("#stock tbody");
  body.replaceChildren();
  let low = 0;
  for (const p of products) {
    const [state, text] = stockState(p);
    if (state === "low" || state === "out") low += 1;
    body.append(
      el(
        "tr",
        { dataset: { productId: p.product_id, state } },
        el("td", { dataset: { field: "title" } }, p.title),
        el("td", {}, p.price ? yuan(p.price) : "—"),
        el("td", { className: "num", dataset: { field: "stock" } }, p.stock),
        el("td", { className: "num", dataset: { field: "sold" } }, p.sold),
        el("td", { className: `state state-${state}`, dataset: { field: "state" } }, text),
      ),
    );
  }
  if (products.length === 0) {
    body.append(el("tr", {}, el("td", { colspan: "5", className: "empty" }, "No products yet")));
  }
  setField("low_stock_count", low);
  document.getElementById("todo-stock").dataset.state = low > 0 ? "warn" : "ok";
}

function renderCharts(daily) {
  chart(document.getElementById("chart-gmv"), fillDays(daily, (d) => Number(d.gmv)), {
    kind: "line",
    format: (v) => `¥${Number(v).toFixed(v >= 100 ? 0 : 2)}`,
  });
  chart(document.getElementById("chart-orders"), fillDays(daily, (d) => d.orders_paid), {
    kind: "bar",
    integer: true,
  });
}

// The score route may be missing on an older server, or lagging: the rest of the page
// does not depend on it, so its failure only changes this panel.
async function refreshScore() {
  const box = document.getElementById("score-body");
  let s;
  try {
    s = await call(token, `/v1/merchants/${merchantId}/score`);
  } catch (e) {
    const text =
      e.status === 404 ? "The score is not available on this server yet." : `The score could not be read: ${e.message}`;
    box.replaceChildren(el("p", { className: "empty", dataset: { field: "score-missing" } }, text));
    return;
  }
  box.replaceChildren(renderScore(s));
}

function renderScore(s) {
  const head = el(
    "div",
    { className: "score-head" },
    el("p", { className: "big", dataset: { field: "score" } }, Number(s.score).toFixed(2)),
    el("p", {}, "Tier ", el("span", { className: `tier tier-${s.tier}`, dataset: { field: "tier" } }, TIER_NAMES[s.tier] || s.tier)),
  );
  if (s.band && s.band !== s.tier) head.append(el("p", { className: "sub" }, `score band: ${TIER_NAMES[s.band] || s.band}`));
  if (s.percentile !== undefined && s.percentile !== null) {
    head.append(el("p", { className: "sub" }, `better than ${Number(s.percentile).toFixed(0)}% of active merchants`));
  }
  const parts = [head];
  const components = Array.isArray(s.components) ? s.components : [];
  if (components.length) {
    const rows = components.map((c) =>
      el(
        "tr",
        { dataset: { component: c.name } },
        el("td", { title: c.description || "" }, c.name.replaceAll("_", " ")),
        el("td", { className: "num" }, c.raw === null || c.raw === undefined ? "no data" : formatRaw(c)),
        el("td", { className: "meter-cell" }, meter(c.points, c.weight)),
        el("td", { className: "num", dataset: { field: "points" } }, `${Number(c.points).toFixed(2)} / ${c.weight}`),
      ),
    );
    parts.push(
      el(
        "table",
        { id: "components" },
        el("thead", {}, el("tr", {}, el("th", {}, "Component"), el("th", { className: "num" }, "Value"), el("th", {}, ""), el("th", { className: "num" }, "Points"))),
        el("tbody", {}, ...rows),
      ),
    );
  }
  parts.push(renderNextTier(s.next_tier));
  return el("div", {}, ...parts);
}

function formatRaw(c) {
  if (c.unit === "yuan") return yuan(c.raw);
  if (c.unit === "rate") return percent(c.raw);
  return String(c.raw);
}

function renderNextTier(next) {
  if (!next) return el("p", { className: "next", dataset: { field: "next-tier" } }, "Top tier reached.");
  const gains = (next.gains || []).map((g) => `${g.component.replaceAll("_", " ")} (+${Number(g.points).toFixed(1)})`);
  const needs =
    next.points_needed > 0
      ? `${Number(next.points_needed).toFixed(2)} more points (a score of ${next.min_score})`
      : `a score of ${next.min_score}: reached`;
  const evaluations = next.evaluations_needed
    ? `, held for ${next.evaluations_needed} evaluation${next.evaluations_needed > 1 ? "s" : ""}`
    : "";
  return el(
    "div",
    { className: "next", dataset: { field: "next-tier" } },
    el("p", {}, "Next tier ", el("strong", {}, TIER_NAMES[next.tier] || next.tier), `: ${needs}${evaluations}.`),
    gains.length ? el("p", { className: "sub" }, `Most points left in: ${gains.join(", ")}.`) : "",
  );
}
