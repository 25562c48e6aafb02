// spendgate console: charts from embedded JSON, sortable and filterable tables. No framework.
"use strict";

(function () {
  const usd = (micros) => {
    if (micros == null) return "—";
    const dollars = micros / 1e6;
    return (dollars < 0 ? "-$" : "$") + Math.abs(dollars).toLocaleString("en-US",
      {minimumFractionDigits: 2, maximumFractionDigits: 2});
  };

  // -- tables: click or Enter/Space on a header sorts; a labelled search box filters rows -------------------

  function sortBy(th) {
    const table = th.closest("table");
    const index = Array.prototype.indexOf.call(th.parentNode.children, th);
    const numeric = th.dataset.kind && th.dataset.kind !== "text";
    const ascending = th.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("thead th").forEach((h) => h.setAttribute("aria-sort", "none"));
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    const body = table.tBodies[0];
    const rows = Array.from(body.rows);
    const key = (row) => row.cells[index].dataset.sort;
    rows.sort((a, b) => {
      const x = key(a), y = key(b);
      if (x === "" && y === "") return 0;
      if (x === "") return 1;   // empty cells last, whichever the direction
      if (y === "") return -1;
      const order = numeric ? Number(x) - Number(y) : x.localeCompare(y);
      return ascending ? order : -order;
    });
    rows.forEach((row) => body.appendChild(row));
  }

  function filterRows(input) {
    const table = document.getElementById(input.dataset.filter);
    if (!table) return;
    const needle = input.value.trim().toLowerCase();
    let shown = 0;
    const rows = Array.from(table.tBodies[0].rows);
    rows.forEach((row) => {
      const match = !needle || row.textContent.toLowerCase().includes(needle);
      row.hidden = !match;
      if (match) shown += 1;
    });
    const count = document.querySelector(`[data-count-for="${table.id}"]`);
    if (count) count.textContent = needle ? `${shown} of ${rows.length} rows match “${input.value.trim()}”.` : "";
  }

  function setUpTables() {
    document.querySelectorAll("table[data-sortable] thead th").forEach((th) => {
      th.addEventListener("click", () => sortBy(th));
      th.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); sortBy(th); }
      });
    });
    document.querySelectorAll("input[data-filter]").forEach((input) => {
      input.addEventListener("input", () => filterRows(input));
    });
  }

  // -- charts: the month-end burndown (spent, P10-P90 band, P50, budget line, today marker) ----------------

  const COLOURS = {Spent: "#1c2430", P10: "#7aa6e0", P50: "#1f5fbf", P90: "#7aa6e0", Budget: "#b3261e"};

  function todayMarker(today) {
    return {
      hooks: {
        draw: [(u) => {
          const x = u.valToPos(today, "x", true);
          const ctx = u.ctx;
          ctx.save();
          ctx.strokeStyle = "#a86400";
          ctx.setLineDash([4, 4]);
          ctx.lineWidth = 1.5 * devicePixelRatio;
          ctx.beginPath();
          ctx.moveTo(x, u.bbox.top);
          ctx.lineTo(x, u.bbox.top + u.bbox.height);
          ctx.stroke();
          ctx.fillStyle = "#a86400";
          ctx.font = `${11 * devicePixelRatio}px system-ui, sans-serif`;
          ctx.fillText("today", x + 4 * devicePixelRatio, u.bbox.top + 12 * devicePixelRatio);
          ctx.restore();
          u.root.parentNode.dataset.todayX = String(Math.round(x / devicePixelRatio));
        }],
      },
    };
  }

  function drawBurndown(el) {
    const source = document.getElementById(el.dataset.source);
    if (!source || typeof uPlot === "undefined") return;
    const spec = JSON.parse(source.textContent);
    const names = ["Spent", "P10", "P50", "P90", "Budget"];
    const data = [spec.x, ...names.map((n) => spec.series[n])];
    const series = [{label: "Day", value: (u, v) => v == null ? "—" : new Date(v * 1000).toISOString().slice(0, 10)}];
    names.forEach((n) => series.push({
      label: n, stroke: COLOURS[n], width: n === "P50" || n === "Spent" ? 2 : 1,
      dash: n === "Budget" ? [8, 4] : undefined, spanGaps: false, value: (u, v) => usd(v),
    }));
    const width = () => Math.max(280, el.clientWidth);
    const opts = {
      title: spec.title, width: width(), height: 320,
      scales: {x: {time: true}},
      series,
      bands: [{series: [4, 2], fill: "rgba(31, 95, 191, 0.15)"}],
      axes: [{}, {size: 70, values: (u, vals) => vals.map((v) => usd(v))}],
      plugins: [todayMarker(spec.today)],
    };
    const plot = new uPlot(opts, data, el);
    el.uplot = plot;
    el.dataset.series = names.join(",");
    window.addEventListener("resize", () => plot.setSize({width: width(), height: 320}));
  }

  function setUpCharts() {
    document.querySelectorAll("[data-chart=burndown]").forEach(drawBurndown);
  }

  document.addEventListener("DOMContentLoaded", () => { setUpTables(); setUpCharts(); });
})();
