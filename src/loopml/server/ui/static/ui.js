// loopml's web UI: draws the metric charts (uPlot, vendored) from the server's downsampled
// histories. Each <figure class="chart" data-series='[{"label", "src"}]'> becomes one chart
// with one line per series, overlaid on a shared step axis.
"use strict";

(function () {
  const COLOURS = ["#2f5fd0", "#d0572f", "#1c9c5a", "#9b3fc4", "#c49b1c",
                   "#1c8fc4", "#c41c6a", "#5a6b1c", "#6a1cc4", "#444444"];

  async function fetchSeries(item) {
    const response = await fetch(item.src, { headers: { Accept: "application/json" } });
    if (!response.ok) {
      throw new Error(item.label + ": " + response.status + " " + response.statusText);
    }
    return response.json();
  }

  async function draw(figure) {
    const title = figure.dataset.title || "";
    const caption = document.createElement("figcaption");
    caption.textContent = title;
    figure.appendChild(caption);
    let series;
    try {
      series = JSON.parse(figure.dataset.series || "[]");
    } catch (err) {
      series = [];
    }
    if (series.length === 0) {
      return;
    }
    const note = document.createElement("div");
    note.className = "note";
    try {
      const histories = await Promise.all(series.map(fetchSeries));
      const tables = histories.map((h) => [h.steps, h.values]);
      const data = tables.length === 1 ? tables[0] : uPlot.join(tables);
      const opts = {
        width: Math.max(figure.clientWidth - 14, 200),
        height: 200,
        legend: { show: series.length > 1 || series.some((s) => "colour" in s) },
        scales: { x: { time: false } },
        axes: [{ label: "step" }, {}],
        series: [{ label: "step" }].concat(series.map((s, i) => ({
          label: s.label,
          stroke: COLOURS[("colour" in s ? s.colour : i) % COLOURS.length],
          width: 1.5,
          spanGaps: true,
          points: { show: false },
        }))),
      };
      new uPlot(opts, data, figure);
      const drawn = histories.map((h) => h.steps.length).reduce((a, b) => a + b, 0);
      const total = histories.map((h) => h.total).reduce((a, b) => a + b, 0);
      note.textContent = drawn < total
        ? "drawn from " + drawn + " of " + total + " points (downsampled)"
        : total + " points";
    } catch (err) {
      note.textContent = "chart not drawn: " + err.message;
    }
    figure.appendChild(note);
    figure.dataset.drawn = "1";
  }

  function start() {
    document.querySelectorAll("figure.chart").forEach((figure) => { draw(figure); });
    const compare = document.getElementById("compare-form");
    if (compare) {
      compare.addEventListener("submit", (event) => {
        const ticked = compare.querySelectorAll("input[name=runs]:checked").length;
        if (ticked < 2 || ticked > 10) {
          event.preventDefault();
          window.alert("Tick 2 to 10 runs to compare (" + ticked + " ticked).");
        }
      });
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
