// chest dashboard: reads the JSON API (api/v1/..., see docs/dashboard-api.md) and draws with
// uPlot. Every recorded text goes into the page through textContent, never as HTML.
(function () {
  "use strict";
  const params = new URLSearchParams(location.search);
  const poll = Math.max(250, Number(params.get("poll")) || 2000);
  const state = {
    range: params.get("range") || "1h",
    requestId: "",
    plots: new Map(), // key -> { kind, plot }
  };
  // What the page shows, for tests and for the curious: the data handed to each plot.
  const exposed = (window.chestDashboard = {
    range: state.range, from_micros: null, bucket_micros: null,
    updates: 0, draws: 0, plots: {}, records: [], texts: [], health: null, error: null,
    loaded_ms: null, // ms from navigation to the first complete update (drawn)
  });

  const $ = (id) => document.getElementById(id);
  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function row(cells) {
    const tr = el("tr");
    for (const c of cells) {
      if (c instanceof Node) { const td = el("td"); td.appendChild(c); tr.appendChild(td); }
      else tr.appendChild(el("td", c));
    }
    return tr;
  }
  async function getJson(path) {
    const r = await fetch(path, { headers: { accept: "application/json" } });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || r.statusText);
    return body;
  }
  const keyOf = (s) => [s.name, s.method, s.route === null ? "" : s.route].join(" ");
  const time = (micros) => new Date(micros / 1000).toISOString();

  // The x values (seconds) of every bucket of the range, and the series' values per bucket.
  function columns(answer, s) {
    const from = answer.from_micros, width = answer.bucket_micros;
    const last = Math.max(answer.to_micros, ...s.buckets.map((b) => b.start_micros));
    const n = Math.floor((last - from) / width) + 1;
    const x = [], rate = [], pct = { min: [], p50: [], p95: [], p99: [], max: [] };
    for (let i = 0; i < n; i++) {
      x.push((from + i * width) / 1e6);
      rate.push(0);
      for (const k in pct) pct[k].push(null);
    }
    for (const b of s.buckets) {
      const i = Math.round((b.start_micros - from) / width);
      if (i < 0 || i >= n) continue;
      rate[i] = b.count / (width / 1e6);
      for (const k in pct) pct[k][i] = b[k];
    }
    return { x, rate, pct };
  }

  function card(key, title) {
    const div = el("div", null, "card");
    div.dataset.key = key;
    div.appendChild(el("h3", title));
    $("plots").appendChild(div);
    return div;
  }
  function plot(key, kind, title, labels, data) {
    const id = key + "\u0000" + kind;
    let p = state.plots.get(id);
    if (!p) {
      const series = [{}].concat(labels.map((label, i) => ({
        label, stroke: ["#246", "#c60", "#a03", "#393", "#777"][i], width: 1.5, spanGaps: false,
        points: { size: 4 },
      })));
      const opts = {
        title: kind === "rate" ? "records/s" : "value", width: 520, height: 200, series,
        hooks: { draw: [() => { exposed.draws++; }] },
      };
      p = { plot: new uPlot(opts, data, card(id, title)), labels };
      state.plots.set(id, p);
    } else {
      p.plot.setData(data);
    }
    exposed.plots[id] = { key, kind, labels, data: p.plot.data };
  }

  function drawSeries(answer) {
    exposed.range = answer.range;
    exposed.from_micros = answer.from_micros;
    exposed.bucket_micros = answer.bucket_micros;
    const seen = new Set();
    const texts = [];
    for (const s of answer.series) {
      const key = keyOf(s);
      const title = s.name + "  " + (s.method || "-") + " " + (s.route === null ? "-" : s.route);
      const c = columns(answer, s);
      plot(key, "rate", title + "  (records/s)", ["records/s"], [c.x, c.rate]);
      seen.add(key + "\u0000rate");
      if (s.numeric > 0) {
        const labels = ["p50", "p95", "p99", "min", "max"];
        plot(key, "values", title + "  (values)", labels, [c.x].concat(labels.map((l) => c.pct[l])));
        seen.add(key + "\u0000values");
      }
      if (s.latest_text) texts.push([s.name, s.route === null ? "-" : s.route, s.method || "-", time(s.latest_text[0]), s.latest_text[1]]);
    }
    for (const [id, p] of state.plots) {
      if (!seen.has(id)) {
        p.plot.destroy();
        document.querySelector('[data-key="' + CSS.escape(id) + '"]').remove();
        state.plots.delete(id);
        delete exposed.plots[id];
      }
    }
    $("empty").hidden = answer.series.length > 0;
    const body = $("texts").tBodies[0];
    body.replaceChildren(...texts.map((t) => {
      const tr = row(t);
      tr.lastChild.className = "value";
      return tr;
    }));
    exposed.texts = texts;
  }

  function drawRecords(records) {
    const body = $("records").tBodies[0];
    body.replaceChildren(...records.map((r) => {
      const link = el("a", r.request_id);
      link.addEventListener("click", () => search(r.request_id));
      const value = typeof r.value === "string" ? r.value : JSON.stringify(r.value);
      const tr = row([r.recorded_at, link, r.name, value, r.value_type, r.method, r.route === null ? "-" : r.route]);
      tr.children[3].className = "value";
      return tr;
    }));
    exposed.records = records;
  }

  function drawHealth(h) {
    exposed.health = h;
    $("health").hidden = !h.attached;
    const list = h.pipelines.map((p) => {
      const div = el("div", null, "pipeline");
      const dl = el("dl");
      const add = (k, v) => { dl.appendChild(el("dt", k)); dl.appendChild(el("dd", v)); };
      for (const [k, v] of Object.entries(p)) {
        if (k === "dropped" && v) for (const [why, n] of Object.entries(v)) add("dropped " + why, n);
        else if (k === "last_error") add(k, v ? v.at + " " + v.message : "none");
        else add(k, v);
      }
      div.appendChild(dl);
      return div;
    });
    $("pipelines").replaceChildren(...list);
  }

  async function refresh() {
    try {
      const id = state.requestId;
      const records = "api/v1/records?limit=50" + (id ? "&request_id=" + encodeURIComponent(id) : "");
      const [series, recs, health] = await Promise.all([
        getJson("api/v1/series?range=" + encodeURIComponent(state.range)),
        getJson(records),
        getJson("api/v1/health"),
      ]);
      if (series.range !== state.range) return; // the range changed meanwhile
      drawSeries(series);
      drawRecords(recs.records);
      drawHealth(health);
      exposed.updates++;
      if (exposed.loaded_ms === null) exposed.loaded_ms = performance.now();
      exposed.error = null;
      $("status").textContent = "updated " + new Date().toLocaleTimeString();
      $("status").className = "";
    } catch (e) {
      exposed.error = String(e.message || e);
      $("status").textContent = "error: " + exposed.error;
      $("status").className = "error";
    }
  }

  function search(id) {
    state.requestId = id.trim();
    $("request-id").value = state.requestId;
    refresh();
  }
  function setRange(range) {
    state.range = range;
    for (const b of document.querySelectorAll("#ranges button")) b.classList.toggle("active", b.dataset.range === range);
    for (const p of state.plots.values()) p.plot.destroy();
    state.plots.clear();
    exposed.plots = {};
    $("plots").replaceChildren();
    refresh();
  }
  for (const b of document.querySelectorAll("#ranges button")) b.addEventListener("click", () => setRange(b.dataset.range));
  $("search").addEventListener("submit", (e) => { e.preventDefault(); search($("request-id").value); });
  $("clear").addEventListener("click", () => search(""));
  setRange(state.range);
  // The next poll starts `poll` ms after the last one ended: a slow range never piles up calls.
  (function loop() { setTimeout(() => refresh().finally(loop), poll); })();
})();
