// The admin's platform overview: GET /v1/admin/overview (live) and the platform blacklist.

import { call, chart, percent, poll, setField, setUpBlacklist, setUpLogin, showPosition, yuan } from "./common.js";

const TIERS = ["core", "growth", "basic", "watch"];

let token = null;
let position = 0;

setUpLogin("admin", (t) => {
  token = t;
  poll(refresh, () => window.location.reload());
  setUpBlacklist(token, "/v1/admin/blacklist");
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
