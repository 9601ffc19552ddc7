// The promoter page: GET /v1/promoters/{id}/payouts (live), its code from /v1/promoters/{id},
// and the next level from /v1/promoters/{id}/level when the server has it.

import { call, chart, el, poll, setField, setUpLogin, showPosition, yuan } from "./common.js";

const STATES = ["pending", "available", "reversed"];

let token = null;
let promoterId = null;
let position = 0;

setUpLogin("promoter", (t, me) => {
  token = t;
  promoterId = me.id;
  setField("promoter-name", me.name || me.id);
  call(token, `/v1/promoters/${promoterId}`)
    .then((p) => setField("code", p.code))
    .catch(() => setField("code", "—"));
  poll(refresh, () => window.location.reload());
});

async function refresh() {
  const p = await call(token, `/v1/promoters/${promoterId}/payouts?after=${position}`);
  position = Math.max(position, p.position);
  setField("level", p.level);
  for (const name of ["pending", "available", "withdrawn", "reversed"]) setField(name, yuan(p[name]));
  setField("direct_referrals", p.direct_referrals);
  setField("indirect_referrals", p.indirect_referrals);
  renderHistory(p.history);
  renderCharts(p.history);
  showPosition(position);
  await refreshLevel();
}

function renderHistory(history) {
  const body = document.querySelector("#history tbody");
  body.replaceChildren();
  for (const c of history) {
    body.append(
      el(
        "tr",
        { dataset: { orderId: c.order_id, level: c.level } },
        el("td", { className: "mono" }, c.order_id.slice(0, 8)),
        el("td", { className: "num" }, c.level),
        el("td", { className: "num", dataset: { field: "amount" } }, yuan(c.amount)),
        el("td", { className: `state state-${c.status}` }, c.status),
      ),
    );
  }
  if (history.length === 0) {
    body.append(el("tr", {}, el("td", { colspan: "4", className: "empty" }, "No commissions yet")));
  }
}

// Sums in fen: adding the API's decimal strings as floats would drift by a fen.
function fen(text) {
  const [whole, part = ""] = String(text).split(".");
  const sign = String(text).startsWith("-") ? -1 : 1;
  return Number(whole) * 100 + sign * Number((part + "00").slice(0, 2));
}

function renderCharts(history) {
  const byState = STATES.map((s) => ({
    label: s,
    value: history.filter((c) => c.status === s).reduce((sum, c) => sum + fen(c.amount), 0) / 100,
  }));
  chart(document.getElementById("chart-status"), history.length ? byState : [], {
    format: (v) => `¥${Number(v).toFixed(2)}`,
    empty: "No commissions yet",
  });
  const byLevel = [1, 2].map((level) => ({
    label: `level ${level}`,
    value: history.filter((c) => c.level === level).reduce((sum, c) => sum + fen(c.amount), 0) / 100,
  }));
  chart(document.getElementById("chart-level"), history.length ? byLevel : [], {
    format: (v) => `¥${Number(v).toFixed(2)}`,
    empty: "No commissions yet",
  });
}

async function refreshLevel() {
  try {
    const l = await call(token, `/v1/promoters/${promoterId}/level`);
    setField(
      "level-next",
      l.next_level
        ? `referred sales ${yuan(l.referred_sales)}; ${yuan(l.to_next_level)} more for level ${l.next_level}`
        : `referred sales ${yuan(l.referred_sales)}; top level`,
    );
  } catch {
    setField("level-next", "");
  }
}
