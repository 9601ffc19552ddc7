// Shared by kami's pages: sign-in, API calls, live polling, formatting and small SVG charts.
// No framework and nothing fetched from elsewhere: the pages must work with no internet.

const SVG = "http://www.w3.org/2000/svg";
const DEFAULT_POLL_MS = 3000;

// The token lives in sessionStorage (this tab only, gone when it closes), never in the URL,
// where it would leak into history, logs and Referer headers.
export function storedToken(role) {
  return sessionStorage.getItem(`kami.token.${role}`);
}

function storeToken(role, token) {
  sessionStorage.setItem(`kami.token.${role}`, token);
}

export function forgetToken(role) {
  sessionStorage.removeItem(`kami.token.${role}`);
}

export function pollMs() {
  // Tests set a short interval; people get a calm one.
  const wanted = Number(sessionStorage.getItem("kami.poll_ms"));
  return wanted > 0 ? wanted : DEFAULT_POLL_MS;
}

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.detail) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error;
  }
}

export async function call(token, path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  let json = null;
  try {
    json = await response.json();
  } catch {
    json = null;
  }
  if (!response.ok) throw new ApiError(response.status, json);
  return json;
}

// Sign-in: check the token with GET /v1/me before keeping it, so a merchant key pasted on
// the promoter page (or a typo) is refused with a clear message instead of failing later.
export function setUpLogin(role, onSignedIn) {
  const form = document.getElementById("login");
  const input = document.getElementById("token");
  const error = document.getElementById("login-error");
  const app = document.getElementById("app");
  const logout = document.getElementById("logout");

  async function signIn(token) {
    const me = await call(token, "/v1/me");
    if (me.role !== role) {
      throw new Error(`this is a ${me.role} token; this page is for the ${role}`);
    }
    storeToken(role, token);
    form.hidden = true;
    app.hidden = false;
    logout.hidden = false;
    onSignedIn(token, me);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const token = input.value.trim();
    if (!token) return;
    try {
      await signIn(token);
      input.value = "";
    } catch (e) {
      error.textContent = e.status === 401 ? "This key is not valid." : e.message;
    }
  });
  logout.addEventListener("click", () => {
    forgetToken(role);
    window.location.reload();
  });

  const kept = storedToken(role);
  if (kept) {
    signIn(kept).catch(() => forgetToken(role));
  }
}

// Live updates: each poll asks for ?after=<the last position shown>, so the figures never go
// back in time (a lagging replica waits instead of answering with older figures).
export function poll(step, onError) {
  let stopped = false;
  async function tick() {
    if (stopped) return;
    try {
      await step();
      setStatus("live", "Live");
    } catch (e) {
      if (e.status === 401) {
        stopped = true;
        onError(e);
        return;
      }
      setStatus("stale", e.code === "projection_lagging" ? "Catching up…" : `Retrying: ${e.message}`);
    }
    setTimeout(tick, pollMs());
  }
  tick();
  return () => {
    stopped = true;
  };
}

function setStatus(state, text) {
  const el = document.getElementById("status");
  if (!el) return;
  el.dataset.state = state;
  el.textContent = `${text} · ${new Date().toLocaleTimeString()}`;
}

export function showPosition(position) {
  const el = document.getElementById("position");
  if (el) el.textContent = `log position ${position}`;
}

// ---------------------------------------------------------------- formatting

export function yuan(text) {
  return `¥${text}`;
}

export function percent(rate) {
  return `${(Number(rate) * 100).toFixed(1)}%`;
}

export function setField(name, text, root = document) {
  for (const el of root.querySelectorAll(`[data-field="${name}"]`)) el.textContent = text;
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "className") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

// ---------------------------------------------------------------- charts

// Every day from the first to the last, with zeros for days without sales: a time axis
// with gaps closed up would draw a quiet week as if it never happened.
export function fillDays(daily, pick) {
  if (daily.length === 0) return [];
  const byDate = new Map(daily.map((d) => [d.date, d]));
  const out = [];
  const day = new Date(`${daily[0].date}T00:00:00Z`);
  const last = new Date(`${daily[daily.length - 1].date}T00:00:00Z`);
  while (day <= last) {
    const key = day.toISOString().slice(0, 10);
    const found = byDate.get(key);
    out.push({ label: key, value: found ? pick(found) : 0, shown: found });
    day.setUTCDate(day.getUTCDate() + 1);
  }
  return out;
}

// Dates show as MM-DD under the bars; other labels as they are.
function tick(label) {
  return /^\d{4}-\d{2}-\d{2}$/.test(label) ? label.slice(5) : label;
}

function niceMax(value) {
  if (value <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (value <= step * magnitude) return step * magnitude;
  }
  return 10 * magnitude;
}

// The top of the axis and how many gridlines: counts get whole-number steps (1, 2, 5, 10…),
// so an axis never reads "1.3 orders".
function axis(max, integer) {
  if (!integer) return { top: niceMax(max), steps: 4 };
  const wanted = Math.max(1, Math.ceil(max / 4));
  const magnitude = 10 ** Math.floor(Math.log10(wanted));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= wanted);
  return { top: step * Math.max(1, Math.ceil(max / step)), steps: Math.max(1, Math.ceil(max / step)) };
}

// A bar or line chart of [{label, value}], drawn as inline SVG in `container`.
// Each mark carries data-label and data-value, so what is drawn can be checked.
export function chart(
  container,
  points,
  { kind = "bar", format = String, empty = "No data yet", integer = false } = {},
) {
  container.replaceChildren();
  if (points.length === 0) {
    container.append(el("p", { className: "empty" }, empty));
    return;
  }
  const width = 560;
  const height = 200;
  const pad = { left: 52, right: 12, top: 12, bottom: 28 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const { top, steps } = axis(Math.max(...points.map((p) => p.value)), integer);
  const root = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    class: `chart chart-${kind}`,
    role: "img",
    "aria-label": container.dataset.title || "chart",
  });
  const y = (v) => pad.top + plotH - (v / top) * plotH;
  for (let i = 0; i <= steps; i++) {
    const v = (top * i) / steps;
    root.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v), class: "grid" }));
    root.append(svg("text", { x: pad.left - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" }, format(v)));
  }
  const slot = plotW / points.length;
  const labelEvery = Math.max(1, Math.ceil(points.length / 8));
  points.forEach((p, i) => {
    if (i % labelEvery === 0 || i === points.length - 1) {
      const x = pad.left + slot * (i + 0.5);
      root.append(svg("text", { x, y: height - 8, class: "axis", "text-anchor": "middle" }, tick(p.label)));
    }
  });
  if (kind === "bar") {
    points.forEach((p, i) => {
      const barW = Math.max(2, slot * 0.7);
      const x = pad.left + slot * i + (slot - barW) / 2;
      const bar = svg("rect", {
        x,
        y: y(p.value),
        width: barW,
        height: Math.max(0, pad.top + plotH - y(p.value)),
        class: "mark bar",
        "data-label": p.label,
        "data-value": p.value,
      });
      bar.append(svg("title", {}, `${p.label}: ${format(p.value)}`));
      root.append(bar);
    });
  } else {
    const xy = points.map((p, i) => [pad.left + slot * (i + 0.5), y(p.value)]);
    const line = xy.map(([x, yy], i) => `${i ? "L" : "M"}${x.toFixed(1)},${yy.toFixed(1)}`).join(" ");
    const base = pad.top + plotH;
    const area = `${line} L${xy[xy.length - 1][0].toFixed(1)},${base} L${xy[0][0].toFixed(1)},${base} Z`;
    root.append(svg("path", { d: area, class: "area" }));
    root.append(svg("path", { d: line, class: "line" }));
    points.forEach((p, i) => {
      const dot = svg("circle", {
        cx: xy[i][0],
        cy: xy[i][1],
        r: 3.5,
        class: "mark dot",
        "data-label": p.label,
        "data-value": p.value,
      });
      dot.append(svg("title", {}, `${p.label}: ${format(p.value)}`));
      root.append(dot);
    });
  }
  container.append(root);
}

// A horizontal bar per item: [{label, value, max}], e.g. score points out of a weight.
export function meter(value, max) {
  const share = max > 0 ? Math.max(0, Math.min(1, value / max)) : 0;
  const root = svg("svg", { viewBox: "0 0 100 8", class: "meter", preserveAspectRatio: "none" });
  root.append(svg("rect", { x: 0, y: 0, width: 100, height: 8, class: "meter-back" }));
  root.append(svg("rect", { x: 0, y: 0, width: (share * 100).toFixed(1), height: 8, class: "meter-fill" }));
  return root;
}

// The blacklist panel of the merchant dashboard and the admin page: the list under `path`
// (GET), its form (POST `path`) and a remove button per entry (POST `path`/remove).
// `showBy` adds the column saying whether the merchant or the platform listed the buyer.
export function setUpBlacklist(token, path, { showBy = false } = {}) {
  const columns = showBy ? 5 : 4;

  async function load() {
    const list = await call(token, path);
    const body = document.querySelector("#blacklist tbody");
    body.replaceChildren();
    for (const entry of list.entries) {
      const remove = el("button", { type: "button", className: "link" }, "Remove");
      remove.addEventListener("click", async () => {
        await call(token, `${path}/remove`, { method: "POST", body: { contact: entry.contact } });
        load();
      });
      const cells = [
        el("td", {}, entry.contact),
        el("td", {}, entry.reason || "—"),
        ...(showBy ? [el("td", {}, entry.by)] : []),
        el("td", {}, entry.added_at.slice(0, 10)),
        el("td", {}, remove),
      ];
      body.append(el("tr", { dataset: { contact: entry.contact } }, ...cells));
    }
    if (list.entries.length === 0) {
      body.append(el("tr", {}, el("td", { colspan: String(columns), className: "empty" }, "Nobody is blacklisted")));
    }
  }

  async function add(event) {
    event.preventDefault();
    const error = document.getElementById("blacklist-error");
    error.textContent = "";
    const contact = document.getElementById("blacklist-contact");
    const reason = document.getElementById("blacklist-reason");
    try {
      await call(token, path, { method: "POST", body: { contact: contact.value, reason: reason.value } });
      contact.value = "";
      reason.value = "";
      await load();
    } catch (e) {
      error.textContent = e.message;
    }
  }

  load();
  document.getElementById("blacklist-add").addEventListener("submit", add);
}
