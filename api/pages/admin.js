// The admin's platform overview: GET /v1/admin/overview (live) and the platform blacklist.

import { call, chart, el, percent, poll, setField, setUpLogin, showPosition, yuan } from "./common.js";

const TIERS = ["core", "growth", "basic", "watch"];

let token = null;
let position = 0;

setUpLogin("admin", (t) => {
  token = t;
  poll(refresh, () => window.location.reload());
  loadBlacklist();
  document.getElementById("blacklist-add").addEventListener("submit", addToBlacklist);
});

async function refresh() {
  const o = await call(token, `/v1/admin/overview?after=${position}`);
  position = Math.max(position, o.position);
  for (const name of ["gmv", "refund_amount", "platform_fees"]) setField(name, yuan(o[name]));
  setField("take_rate", percent(o.take_rate));
  for (const name of ["orders_paid", "orders_placed", "orders_refunded", "merchants", "products", "promoters"]) {
    setField(name, o[name]);
  }
  const tiers = [...TIERS, ...Object.keys(o.merchants_by_tier).filter((t) => !TIERS.includes(t))];
  chart(
    document.getElementById("chart-tiers"),
    tiers.map((t) => ({ label: t, value: o.merchants_by_tier[t] || 0 })),
    { integer: true },
  );
  chart(
    document.getElementById("chart-funnel"),
    [
      { label: "placed", value: o.orders_placed },
      { label: "paid", value: o.orders_paid },
      { label: "refunded", value: o.orders_refunded },
    ],
    { integer: true },
  );
  showPosition(position);
}

async function loadBlacklist() {
  const list = await call(token, "/v1/admin/blacklist");
  const body = document.querySelector("#blacklist tbody");
  body.replaceChildren();
  for (const entry of list.entries) {
    const remove = el("button", { type: "button", className: "link" }, "Remove");
    remove.addEventListener("click", async () => {
      await call(token, "/v1/admin/blacklist/remove", { method: "POST", body: { contact: entry.contact } });
      loadBlacklist();
    });
    body.append(
      el(
        "tr",
        { dataset: { contact: entry.contact } },
        el("td", {}, entry.contact),
        el("td", {}, entry.reason || "—"),
        el("td", {}, entry.added_at.slice(0, 10)),
        el("td", {}, remove),
      ),
    );
  }
  if (list.entries.length === 0) {
    body.append(el("tr", {}, el("td", { colspan: "4", className: "empty" }, "Nobody is blacklisted")));
  }
}

async function addToBlacklist(event) {
  event.preventDefault();
  const error = document.getElementById("blacklist-error");
  error.textContent = "";
  const contact = document.getElementById("blacklist-contact");
  const reason = document.getElementById("blacklist-reason");
  try {
    await call(token, "/v1/admin/blacklist", { method: "POST", body: { contact: contact.value, reason: reason.value } });
    contact.value = "";
    reason.value = "";
    await loadBlacklist();
  } catch (e) {
    error.textContent = e.message;
  }
}
