// pybrid live view: draws the proxy's min/max envelope frames on a canvas (no libraries).
"use strict";
(function () {
  const COLORS = ["#ffd400", "#00e5ff", "#ff4fd8", "#7cfc00", "#ff8c00", "#b28dff", "#ffffff", "#ff4040"];
  const L = 60, R = 10, T = 10, B = 30;
  const $ = (id) => document.getElementById(id);
  const canvas = $("plot"), ctx = canvas.getContext("2d");
  const stats = { frames: 0, painted: 0, latencies: [], last: null, ws: "connecting" };
  window.liveStats = stats;
  const want = { run: "", carrier: "", channels: [0, 1], window: 0.1, columns: canvas.width - L - R, paused: false };
  const q = new URLSearchParams(location.search);
  if (q.has("window")) want.window = parseFloat(q.get("window"));
  if (q.has("channels")) want.channels = q.get("channels").split(",").map(Number);
  if (q.has("carrier")) want.carrier = q.get("carrier");
  if (q.has("run")) want.run = q.get("run");
  $("window").value = String(want.window);
  let ws = null, pending = null, known = { carriers: "", channels: -1, runs: "" };

  function send() { if (ws && ws.readyState === 1) ws.send(JSON.stringify(want)); }
  function text(el, s) { el.textContent = s; }
  function option(sel, value, label) {
    const o = document.createElement("option"); o.value = value; o.textContent = label; sel.appendChild(o);
  }

  function decode(buf) {
    const v = new DataView(buf);
    const columns = v.getUint16(4, true), channels = v.getUint16(6, true), mlen = v.getUint32(8, true);
    const flags = v.getUint32(12, true);
    const f = (i) => v.getFloat64(16 + 8 * i, true);
    const meta = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 56, mlen)));
    // per channel base and step (f64), then u16 codes: value = base + code * step, 65535 a gap
    const at = 56 + mlen + ((8 - (mlen % 8)) % 8), n = columns * channels;
    const scale = new Float64Array(buf, at, 2 * channels), codes = new Uint16Array(buf, at + 16 * channels, 2 * n);
    const lo = new Float64Array(n), hi = new Float64Array(n);
    for (let c = 0; c < channels; c++) {
      const base = scale[c], step = scale[channels + c];
      for (let i = c * columns; i < (c + 1) * columns; i++) {
        const a = codes[i], b = codes[n + i];
        lo[i] = a === 65535 ? NaN : base + a * step; hi[i] = b === 65535 ? NaN : base + b * step;
      }
    }
    return { columns, channels, flags, sentAt: f(0), arrivedAt: f(1), t0: f(2), t1: f(3), endT: f(4), meta, lo, hi };
  }

  function controls(m) {
    const carriers = (m.carriers || []).join("|");
    if (carriers !== known.carriers) {
      known.carriers = carriers; const sel = $("carrier"); sel.textContent = "";
      for (const c of m.carriers || []) option(sel, c, c);
      sel.value = m.carrier || "";
    }
    const count = m.channel_count || 0;
    if (count !== known.channels) {
      known.channels = count; const box = $("channels"); box.textContent = "";
      for (let c = 0; c < count; c++) {
        const l = document.createElement("label"), i = document.createElement("input");
        i.type = "checkbox"; i.checked = want.channels.includes(c); i.dataset.ch = String(c);
        i.addEventListener("change", () => {
          want.channels = [...box.querySelectorAll("input:checked")].map((x) => Number(x.dataset.ch));
          if (!want.channels.length) want.channels = [0];
          send();
        });
        l.style.color = COLORS[c % COLORS.length]; l.style.textShadow = "0 0 1px #000";
        l.appendChild(i); l.appendChild(document.createTextNode("ch" + c + " ")); box.appendChild(l);
      }
    }
    const runs = (m.runs || []).map((r) => r.id + r.result).join("|");
    if (runs !== known.runs) {
      known.runs = runs; const sel = $("run"), keep = want.run; sel.textContent = "";
      option(sel, "", "current");
      for (const r of m.runs || []) option(sel, r.id, r.id + (r.active ? " (running)" : ""));
      sel.value = keep;
    }
  }

  function draw(fr) {
    const W = canvas.width, H = canvas.height, pw = W - L - R, ph = H - T - B;
    ctx.fillStyle = "#000"; ctx.fillRect(0, 0, W, H);
    let ymin = -1.05, ymax = 1.05;
    for (let i = 0; i < fr.lo.length; i++) {
      if (fr.lo[i] < ymin) ymin = fr.lo[i]; if (fr.hi[i] > ymax) ymax = fr.hi[i];
    }
    const y = (val) => T + (ymax - val) / (ymax - ymin) * ph;
    const span = fr.t1 - fr.t0 || 1, x = (t) => L + (t - fr.t0) / span * pw;
    ctx.strokeStyle = "#333"; ctx.fillStyle = "#aaa"; ctx.font = "11px sans-serif";
    for (const v of [-1, -0.5, 0, 0.5, 1]) {
      ctx.fillRect(L - 4, Math.round(y(v)), 3, 1); ctx.fillText(v.toFixed(1), 20, y(v) + 4);
      ctx.fillStyle = "#222"; ctx.fillRect(L, Math.round(y(v)), pw, 1); ctx.fillStyle = "#aaa";
    }
    for (let k = 0; k <= 4; k++) {
      const t = fr.t0 + span * k / 4;
      ctx.fillText(t.toPrecision(4) + " s", L + pw * k / 4 - (k ? 30 : 0), H - 10);
    }
    const n = fr.columns, chans = fr.meta.channels || [];
    // column i spans whole pixels x0(i) … x0(i+1)-1: no antialiased edges, no overlap
    const x0 = (i) => L + Math.floor(i * pw / n), w = (i) => Math.max(1, x0(i + 1) - x0(i));
    const from = fr.meta.watched_from || 0;  // rows before the first one watched: not a gap
    const rows = fr.meta.rows || 0, rate = (fr.meta.run && fr.meta.run.sample_rate) || 1;
    for (let i = 0; i < n; i++) {  // gaps: columns where no channel has a value (before the newest row)
      let gap = true;
      for (let c = 0; c < fr.channels && gap; c++) gap = Number.isNaN(fr.lo[c * n + i]);
      const t = fr.t0 + span * (i + 0.5) / n;
      if (gap && t < rows / rate && t >= from) { ctx.fillStyle = "#5a1020"; ctx.fillRect(x0(i), T, w(i), ph); }
    }
    for (let c = 0; c < fr.channels; c++) {
      ctx.fillStyle = COLORS[chans[c] % COLORS.length];
      for (let i = 0; i < n; i++) {
        const lo = fr.lo[c * n + i], hi = fr.hi[c * n + i];
        if (Number.isNaN(lo)) continue;
        const top = Math.round(y(hi)), bottom = Math.round(y(lo));
        ctx.fillRect(x0(i), top, w(i), Math.max(1, bottom - top + 1));
      }
    }
    if (fr.t0 <= 0) { ctx.fillStyle = "#00c853"; ctx.fillRect(Math.round(x(0)), T, 2, ph); }
    if (Number.isFinite(fr.endT) && fr.endT >= fr.t0 && fr.endT <= fr.t1) {
      ctx.fillStyle = "#ff1744"; ctx.fillRect(Math.min(L + pw - 2, Math.round(x(fr.endT))), T, 2, ph);
    }
  }

  function paint() {
    const fr = pending; pending = null;
    if (!fr) return;
    if (fr.columns) draw(fr);
    const m = fr.meta, r = m.run;
    text($("info"), r ? "run " + r.id + " · " + (r.active ? "running" : r.result) + " · " + r.sample_rate +
      " Hz · " + (m.rows || 0) + " rows · " + r.chunks + " chunks · " + r.missing + " missing · " +
      (m.per || 1) + " rows per column" : "no run yet");
    stats.painted++; stats.last = { t0: fr.t0, t1: fr.t1, flags: fr.flags, columns: fr.columns, rows: m.rows, per: m.per };
    if (r && r.active) stats.latencies.push(Date.now() / 1000 - fr.arrivedAt);
    if (stats.latencies.length > 1000) stats.latencies.shift();
    document.body.dataset.painted = String(stats.painted);
    if (r && r.active) {  // arrival of the newest datagram at the server → painted here (ms)
      const l = stats.latencies.slice(-200).sort((a, b) => a - b);
      document.body.dataset.latencyMs = (1000 * l[l.length >> 1]).toFixed(1);
    }
  }

  function connect() {
    ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/live/ws");
    ws.binaryType = "arraybuffer";
    ws.onopen = () => { stats.ws = "open"; text($("conn"), "live"); send(); };
    ws.onclose = () => { stats.ws = "closed"; text($("conn"), "disconnected — retrying"); setTimeout(connect, 2000); };
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") { text($("info"), ev.data); return; }
      const fr = decode(ev.data); stats.frames++;
      controls(fr.meta);
      if (!pending) requestAnimationFrame(paint);
      pending = fr;  // latest wins
    };
  }

  $("carrier").addEventListener("change", (e) => { want.carrier = e.target.value; send(); });
  $("run").addEventListener("change", (e) => { want.run = e.target.value; send(); });
  $("window").addEventListener("change", (e) => { want.window = parseFloat(e.target.value); send(); });
  $("pause").addEventListener("click", () => {
    want.paused = !want.paused; text($("pause"), want.paused ? "resume" : "pause"); send();
  });

  function fmt(s) { return s < 1 ? (s * 1000).toFixed(0) + " ms" : s.toFixed(1) + " s"; }
  async function status() {
    try {
      const r = await fetch("/status.json", { cache: "no-store", credentials: "same-origin" });
      if (!r.ok) return;
      const s = await r.json(), a = s.active;
      text($("session"), a ? (a.peer || a.session || "") + " · " + (a.runs || []).length + " run(s)" : "idle");
      text($("queue"), (s.queue || []).length ? (s.queue || []).map((x) => x.peer || x.session || "?").join(", ") : "empty");
      const body = $("runs").tBodies[0]; body.textContent = "";
      for (const run of s.recent_runs || []) {
        const tr = body.insertRow(); tr.className = "pick";
        for (const v of [run.id, run.peer || run.client || run.session || "", fmt(run.duration || 0),
                         run.chunks, run.missing, run.result])
          tr.insertCell().textContent = String(v === undefined ? "" : v);
        tr.addEventListener("click", () => { want.run = run.id; want.window = 0; $("window").value = "0"; send(); });
      }
    } catch (e) { /* the next poll retries */ }
  }
  connect(); status(); setInterval(status, 2000);
  if (q.get("log") === "1")  // benchmarks/live_view.py reads this from the browser's log
    setInterval(() => console.log("pybrid-live painted " + stats.painted + " latency-ms " +
                                  (document.body.dataset.latencyMs || "nan")), 1000);
})();
