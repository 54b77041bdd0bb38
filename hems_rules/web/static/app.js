// The status page: the live view from /api/live (server-sent events) and the day's chart
// from /api/day. Plain JavaScript, no build step; uPlot draws the charts.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const PALETTE = ["#e67e22", "#2980b9", "#8e44ad", "#16a085", "#c0392b", "#b7950b",
    "#34495e", "#27ae60", "#d35400", "#e84393", "#7f8c8d", "#1abc9c"];
  const watts = (v) => (v == null ? "–" : `${Math.round(v).toLocaleString()} W`);
  const kilo = (v) => (Math.abs(v) >= 1000 ? `${+(v / 1000).toFixed(1)} kW` : `${Math.round(v)} W`);
  const hhmm = (t) => new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const pad = (n) => String(n).padStart(2, "0");
  const localDate = (t) => {
    const d = new Date(t * 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  };
  const duration = (s) => `${Math.floor(s / 3600)} h ${pad(Math.floor((s % 3600) / 60))} min`;

  let live = null;       // the latest live view
  let chart = null;      // the day shown: /api/day's JSON
  let plots = [];        // the uPlot charts of that day
  let password = sessionStorage.getItem("hems-password") || "";
  const colors = {};
  const colorOf = (id) => (colors[id] ??= PALETTE[Object.keys(colors).length % PALETTE.length]);

  // -- the live view ---------------------------------------------------------------------

  function pairs(list, entries) {
    list.replaceChildren(...entries.flatMap(([name, value]) => {
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = name;
      dd.textContent = value;
      return [dt, dd];
    }));
  }

  function set(element, value) {
    if (element.textContent !== value) element.textContent = value;
  }

  function row(consumer) {
    const item = document.createElement("li");
    item.dataset.id = consumer.id;
    item.innerHTML = '<span class="consumer-name"></span><span class="state"></span>' +
      '<span class="facts"></span><span class="reason"></span>' +
      '<span class="actions" hidden><button type="button" data-act="auto">Auto</button>' +
      '<button type="button" data-act="on">On</button>' +
      '<button type="button" data-act="off">Off</button></span>';
    item.querySelector(".actions").addEventListener("click", (event) => {
      const act = event.target.closest("button")?.dataset.act;
      const current = live.consumers.find((c) => c.id === consumer.id);
      if (act === "auto") post("/api/auto", { consumer: consumer.id, auto: current.auto ? 0 : 1 });
      else if (act) post("/api/switch", { consumer: consumer.id, on: act === "on" });
    });
    return item;
  }

  function showConsumers(view) {
    const list = $("consumers");
    const rows = new Map([...list.children].map((item) => [item.dataset.id, item]));
    view.consumers.forEach((c, index) => {
      const item = rows.get(c.id) || row(c);
      rows.delete(c.id);
      if (list.children[index] !== item) list.insertBefore(item, list.children[index] || null);
      const name = item.querySelector(".consumer-name");
      const detail = `${c.id} · priority ${c.priority} · ${c.phase} · ${c.primary ? "primary" : "secondary"}`;
      if (name.dataset.shown !== c.name + detail) {
        const small = document.createElement("small");
        small.textContent = detail;
        name.replaceChildren(`${c.name} `, small);
        name.dataset.shown = c.name + detail;
      }
      const state = item.querySelector(".state");
      set(state, c.state);
      state.className = `state ${c.state}`;
      const facts = [watts(c.power), `Auto ${c.auto ? "on" : "off"}`,
        c.controlled ? "controlled" : "not controlled"];
      if (c.runtime != null) facts.push(`ran ${duration(c.runtime)} today`);
      set(item.querySelector(".facts"), facts.join(" · "));
      set(item.querySelector(".reason"), c.reason);
      const actions = item.querySelector(".actions");
      actions.hidden = !view.control;
      const [auto, on, off] = actions.querySelectorAll("button");
      auto.setAttribute("aria-pressed", String(Boolean(c.auto)));
      set(auto, c.auto ? "Auto on" : "Auto off");
      for (const button of [on, off]) {
        button.hidden = !view.manual;
        button.disabled = Boolean(c.auto);
        button.title = c.auto ? "switch Auto off first" : "";
      }
    });
    rows.forEach((item) => item.remove());
  }

  function show(view) {
    live = view;
    const mode = $("mode");
    set(mode, view.mode ? "Mode 1: control on" : "Mode 0: control off");
    mode.className = `chip ${view.mode ? "good" : "bad"}`;
    set($("clock"), new Date(view.t * 1000).toLocaleTimeString());
    $("errors").hidden = !view.rules_error;
    set($("rules-error"), view.rules_error || "");
    const r = view.reservation;
    set($("reservation"), r.watts == null ? "unknown" : watts(r.watts));
    set($("reservation-state"), r.error ? `${r.state}: ${r.error}` :
      r.state === "BMS" ? "limited by what the battery can take" : r.state);
    pairs($("surplus"), view.surplus == null ? [["", "unknown"]] :
      Object.entries(view.surplus).map(([phase, w]) => [phase, watts(w)]));
    const s = view.sample;
    pairs($("now"), [["PV", watts(s.pv)], ["Consumption", watts(s.consumption)],
      ["Battery", watts(s.battery)], ["SOC", s.soc == null ? "–" : `${s.soc.toFixed(1)} %`]]);
    $("unlock").hidden = !view.control;
    showConsumers(view);
    extend(view);
  }

  function connect() {
    const events = new EventSource("/api/live");
    const link = $("link");
    events.onopen = () => { set(link, "live"); link.className = "chip good"; };
    events.onmessage = (message) => show(JSON.parse(message.data));
    events.onerror = () => { set(link, "reconnecting…"); link.className = "chip bad"; };
  }

  // -- control ---------------------------------------------------------------------------

  async function post(path, body) {
    const message = $("control-message");
    if (!password) {
      set(message, "Enter the password first.");
      $("password").focus();
      return;
    }
    const response = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-HEMS-Request": "1" },
      body: JSON.stringify({ ...body, password }),
    });
    const answer = await response.json().catch(() => ({}));
    set(message, response.ok ? answer.message : `Refused: ${answer.error || response.statusText}`);
    if (response.status === 403 && /password/.test(answer.error || "")) {
      password = "";
      sessionStorage.removeItem("hems-password");
    }
  }

  $("unlock").addEventListener("submit", (event) => event.preventDefault());
  $("password").addEventListener("input", (event) => {
    password = event.target.value;
    sessionStorage.setItem("hems-password", password);
  });

  // -- the day's chart -------------------------------------------------------------------

  async function loadDay(date) {
    const response = await fetch(`/api/day${date ? `?date=${date}` : ""}`);
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      set($("day-message"), answer.error || response.statusText);
      return;
    }
    chart = answer;
    set($("day-message"), chart.t.length ? "" : "Nothing recorded on this day.");
    const select = $("days");
    select.replaceChildren(...chart.days.map((d) => new Option(d, d, false, d === chart.date)));
    $("prev").disabled = chart.days.indexOf(chart.date) <= 0;
    $("next").disabled = chart.days.indexOf(chart.date) >= chart.days.length - 1;
    draw();
  }

  function stacked() {
    let sum = chart.t.map(() => 0);
    return chart.consumers.map((c) => (sum = sum.map((s, i) => s + (c.power[i] || 0))));
  }

  function draw() {
    plots.forEach((plot) => plot.destroy());
    plots = [];
    const width = $("power-chart").clientWidth;
    const height = Math.round(Math.max(200, Math.min(340, width * 0.45)));
    const s = chart.series;
    const x = { time: true, range: () => [chart.start, chart.end] };
    // Watts from zero (or below, for a discharging battery), so heights compare.
    const y = { range: (u, min, max) => uPlot.rangeNum(Math.min(0, min), Math.max(0, max), 0.1, true) };
    const cursor = { sync: { key: "day" }, points: { size: 6 } };
    plots.push(new uPlot({
      width, height, cursor,
      scales: { x, y, "%": { range: [0, 100] } },
      axes: [{}, { size: 56, values: (u, ticks) => ticks.map(kilo) },
        { scale: "%", side: 1, size: 55, grid: { show: false }, values: (u, ticks) => ticks.map((v) => `${v} %`) }],
      series: [{},
        { label: "PV", stroke: "#e6a700", width: 2, fill: "rgba(230,167,0,.12)", value: (u, v) => watts(v) },
        { label: "Consumption", stroke: "#c0392b", width: 1.5, value: (u, v) => watts(v) },
        { label: "Surplus", stroke: "#1f9d55", width: 1.5, value: (u, v) => watts(v) },
        { label: "Reservation", stroke: "#8e44ad", dash: [6, 4], width: 1.5, value: (u, v) => watts(v) },
        { label: "Battery", stroke: "#2980b9", width: 1.5, value: (u, v) => watts(v) },
        { label: "SOC", stroke: "#7f8c8d", scale: "%", width: 1.5, value: (u, v) => (v == null ? "–" : `${v.toFixed(1)} %`) }],
    }, [chart.t, s.pv, s.consumption, s.surplus, s.reservation, s.battery, s.soc], $("power-chart")));
    const consumers = chart.consumers;
    plots.push(new uPlot({
      width, height, cursor,
      // The bands follow the stacked chart's plot area, after every layout and zoom.
      hooks: { draw: [(plot) => drawBands(plot)] },
      scales: { x, y },
      // An empty right axis as wide as the SOC axis above: both charts share one time axis.
      axes: [{}, { size: 56, values: (u, ticks) => ticks.map(kilo) },
        { side: 1, size: 55, grid: { show: false }, ticks: { show: false }, values: () => [] }],
      series: [{}, ...consumers.map((c, index) => ({
        label: c.name,
        stroke: colorOf(c.id),
        fill: `${colorOf(c.id)}66`,
        width: 1,
        value: (u, v, series, i) => (i == null ? "–" : watts(consumers[index].power[i])),
      }))],
      bands: consumers.slice(1).map((c, index) => ({ series: [index + 2, index + 1] })),
    }, [chart.t, ...stacked()], $("stack-chart")));
    if (!performance.getEntriesByName("hems-chart").length) performance.mark("hems-chart");
  }

  function drawBands(plot = plots[1]) {
    const container = $("bands");
    if (!plot || !chart) return;
    const min = plot.scales.x.min;
    const max = plot.scales.x.max;
    const left = plot.bbox.left / devicePixelRatio;
    const width = plot.bbox.width / devicePixelRatio;
    container.replaceChildren(...chart.consumers.map((c) => {
      const label = document.createElement("div");
      label.className = "band-label";
      label.textContent = c.name;
      const track = document.createElement("div");
      track.className = "band-track";
      track.dataset.id = c.id;
      track.style.marginLeft = `${left}px`;
      track.style.width = `${width}px`;
      track.style.setProperty("--band", colorOf(c.id));
      for (const [start, end, state] of c.bands) {
        if (end <= min || start >= max || state === "off") continue;
        const span = document.createElement("span");
        span.className = state;
        span.style.left = `${((Math.max(start, min) - min) / (max - min)) * 100}%`;
        span.style.width = `${((Math.min(end, max) - Math.max(start, min)) / (max - min)) * 100}%`;
        track.append(span);
      }
      const explain = (event) => {
        const box = track.getBoundingClientRect();
        const t = min + ((event.clientX - box.left) / box.width) * (max - min);
        const band = c.bands.find(([start, end]) => start <= t && t < end);
        // Reasons mostly start with the state ("on: ..."): say it once.
        const why = band && band[3].replace(new RegExp(`^${band[2]}: `), "");
        set($("band-info"), band ? `${c.name}, ${hhmm(band[0])}–${hhmm(band[1])}, ${band[2]}: ${why}`
          : `${c.name}: nothing recorded at ${hhmm(t)}`);
      };
      track.addEventListener("pointermove", explain);
      track.addEventListener("click", explain);
      const wrap = document.createElement("div");
      wrap.className = "band";
      wrap.append(label, track);
      return wrap;
    }));
  }

  // Today's chart grows with the live view, one point per chart resolution.
  function extend(view) {
    if (!chart || localDate(view.t) !== chart.date) return;
    const last = chart.t[chart.t.length - 1];
    let changed = false;
    for (const c of chart.consumers) {
      const now = view.consumers.find((v) => v.id === c.id);
      if (!now) continue;
      // A new stretch when the decision changes as the history counts it: its state or
      // the kind of its reason (the numbers in the words move all the time).
      const band = c.bands[c.bands.length - 1];
      if (band) band[1] = view.t;
      if (!band || band[2] !== now.state || band[4] !== now.code) {
        c.bands.push([view.t, view.t, now.state, now.reason, now.code]);
        changed = true;
      }
    }
    if (last == null || view.t - last >= chart.resolution) {
      chart.t.push(view.t);
      for (const name of Object.keys(chart.series)) chart.series[name].push(view.sample[name] ?? null);
      for (const c of chart.consumers) c.power.push(view.sample.consumers[c.id] ?? null);
      const s = chart.series;
      plots[0]?.setData([chart.t, s.pv, s.consumption, s.surplus, s.reservation, s.battery, s.soc]);
      plots[1]?.setData([chart.t, ...stacked()]);  // its draw hook redraws the bands
    } else if (changed) {
      drawBands();
    }
  }

  $("days").addEventListener("change", (event) => loadDay(event.target.value));
  $("prev").addEventListener("click", () => loadDay(chart.days[chart.days.indexOf(chart.date) - 1]));
  $("next").addEventListener("click", () => loadDay(chart.days[chart.days.indexOf(chart.date) + 1]));
  let resizing = 0;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => chart && draw(), 150);
  });

  connect();
  loadDay(null);
})();
