// The run graph and the timeline of a flow run, drawn with plotly in the notebook widget's visual
// language: nodes coloured by state at the positions the server laid out, grey edges, a mapped
// task of many runs as one square node; the timeline a Gantt chart of horizontal bars.
// plotly.min.js (4.8 MB) is loaded only when a run detail page first needs it.

import { BASE_URL } from "./api.js";
import { FINAL_STATES, RUNNING_STATES, clip, epochMs, fmtDuration, plotlyText, stateColour } from "./dom.js";

/** above this many nodes (or edges) the graph is drawn with WebGL (scattergl). */
const GL_NODES = 200;
/** nodes labelled with their names up to this many (the widget's LABELS_UP_TO). */
const LABELS_UP_TO = 30;
/** timeline rows named on the axis up to this many (the widget's ROW_NAMES_UP_TO). */
const ROW_NAMES_UP_TO = 40;
/** above this many rows the timeline draws each state's bars as one WebGL trace. */
const GL_ROWS = 300;
/** the shortest bar drawn, as a share of the timeline (the widget's MIN_BAR_SHARE). */
const MIN_BAR_SHARE = 0.006;
const EDGE_COLOUR = "#b5bcc4";
const ARROW_COLOUR = "#8d96a0";
/** edges get an arrowhead (showing which way data flows) up to this many. */
const ARROWS_UP_TO = 600;
const FONT = '-apple-system, BlinkMacSystemFont, "Segoe UI", Helvetica, Arial, sans-serif';
const CONFIG = {
  displaylogo: false,
  responsive: true,
  scrollZoom: false,
  modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d", "toggleSpikelines",
    "hoverClosestCartesian", "hoverCompareCartesian"],
};

let plotly = null;

/** window.Plotly, loading the package's bundled copy on first use. */
export function loadPlotly() {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!plotly) {
    plotly = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = `${BASE_URL}nbflow/static/plotly.min.js`;
      script.async = true;
      script.onload = () => resolve(window.Plotly);
      script.onerror = () => {
        plotly = null;
        script.remove();
        reject(new Error("plotly.min.js could not be loaded"));
      };
      document.head.append(script);
    });
  }
  return plotly;
}

let webgl = null;

function hasWebGL() {
  if (webgl === null) {
    try {
      const canvas = document.createElement("canvas");
      webgl = Boolean(canvas.getContext("webgl") || canvas.getContext("experimental-webgl"));
    } catch (_) {
      webgl = false;
    }
  }
  return webgl;
}

function colourOf(node, colours) {
  return (colours && colours[node.state]) || node.colour || stateColour(node.state);
}

/** The node's label: the server's ("name", or "name ×N" for a collapsed mapped task). */
export function label(node) {
  const name = String(node.name ?? node.task_name ?? "");
  return node.count > 1 && !name.includes("×") ? `${name} ×${node.count}` : name;
}

function breakdown(counts) {
  return Object.entries(counts || {}).map(([s, n]) => `${n} ${s}`).join(", ");
}

function nodeDuration(node) {
  if (node.duration_s !== null && node.duration_s !== undefined && node.end_time) return node.duration_s;
  const start = epochMs(node.start_time);
  if (start === null) return null;
  const end = epochMs(node.end_time);
  if (end !== null) return (end - start) / 1000;
  return RUNNING_STATES.has(node.state) ? (Date.now() - start) / 1000 : null;
}

function hoverText(node) {
  let text = `<b>${plotlyText(label(node))}</b><br>${plotlyText(node.state)}`;
  if (node.count > 1) text += `: ${plotlyText(breakdown(node.counts))}`;
  const duration = nodeDuration(node);
  if (duration !== null) text += ` in ${fmtDuration(duration)}`;
  if (node.error) {
    const error = node.error.length > 200 ? `${node.error.slice(0, 199)}…` : node.error;
    text += `<br>${plotlyText(error).replace(/\n/g, "<br>")}`;
  }
  return text;
}

/** half the width and height of a collapsed group's bar in pixels (static_html draws 46 x 12). */
const GROUP_HALF_W = 23;
const GROUP_HALF_H = 6;
/** layout units of empty space around the nodes. */
const PAD = 0.8;

/**
 * A collapsed mapped task as static_html draws it: a bar split by state in proportion to the
 * counts (each present state at least 4% wide, so 3 failures among 1,000 runs still show), outlined
 * in the group's headline colour.
 */
function groupShapes(node, colours, unit) {
  const counts = Object.entries(node.counts || {}).filter(([, n]) => n > 0);
  const all = counts.reduce((sum, [, n]) => sum + n, 0) || 1;
  const widths = counts.map(([, n]) => Math.max(0.04, n / all));
  const [halfW, halfH] = [GROUP_HALF_W * unit.x, GROUP_HALF_H * unit.y];
  const stretch = (2 * halfW) / widths.reduce((a, b) => a + b, 0);
  const [y0, y1] = [node.y - halfH, node.y + halfH];
  let x = node.x - halfW;
  const shapes = counts.map(([state], i) => {
    const x0 = x;
    x += widths[i] * stretch;
    return { type: "rect", xref: "x", yref: "y", x0, x1: x, y0, y1, line: { width: 0 },
      fillcolor: (colours && colours[state]) || stateColour(state), layer: "above" };
  });
  shapes.push({ type: "rect", xref: "x", yref: "y", x0: node.x - halfW, x1: node.x + halfW, y0, y1,
    line: { color: colourOf(node, colours), width: 1.5 }, fillcolor: "rgba(0,0,0,0)", layer: "above" });
  return shapes;
}

const AXIS_OFF = { visible: false, showgrid: false, zeroline: false, fixedrange: false };

/**
 * The figure of the task graph: edges, then nodes (trace 1; points carry their node index). The
 * axes span the nodes with a margin, so `widthPx` (the chart's width) sizes the group bars in pixels.
 */
export function graphFigure(graph, widthPx = 1000) {
  const nodes = graph.nodes || [];
  const at = new Map(nodes.map((n) => [n.id, n]));
  const gl = hasWebGL() && (nodes.length > GL_NODES || (graph.edges || []).length > GL_NODES * 4);
  const kind = gl ? "scattergl" : "scatter";
  const ex = [];
  const ey = [];
  const mids = { x: [], y: [], size: [] };
  for (const edge of graph.edges || []) {
    const a = at.get(edge.from);
    const b = at.get(edge.to);
    if (!a || !b) continue;
    ex.push(a.x, b.x, null);
    ey.push(a.y, b.y, null);
    // an arrowhead half-way, turned along the edge (angleref "previous": from the point before)
    mids.x.push(a.x, (a.x + b.x) / 2, null);
    mids.y.push(a.y, (a.y + b.y) / 2, null);
    mids.size.push(0, 9, 0);
  }
  const size = nodes.length <= 100 ? 12 : nodes.length <= 400 ? 9 : 6;
  const labelled = nodes.length <= LABELS_UP_TO;
  const data = [
    { type: kind, mode: "lines", x: ex, y: ey, hoverinfo: "skip", line: { color: EDGE_COLOUR, width: 1 } },
    {
      type: kind,
      mode: labelled ? "markers+text" : "markers",
      x: nodes.map((n) => n.x),
      y: nodes.map((n) => n.y),
      text: labelled ? nodes.map((n) => plotlyText(label(n))) : undefined,
      textposition: "top center",
      textfont: { size: 11, color: "#222" },
      hovertext: nodes.map(hoverText),
      hoverinfo: "text",
      customdata: nodes.map((_, i) => i),
      marker: {
        // a collapsed group is drawn by its shapes below; its marker only catches hover and clicks
        color: nodes.map((n) => (n.count > 1 ? "rgba(0,0,0,0)" : colourOf(n, graph.colours))),
        size: nodes.map((n) => (n.count > 1 ? size + 14 : size)),
        symbol: nodes.map((n) => (n.count > 1 ? "square" : "circle")),
        line: { color: nodes.map((n) => (n.count > 1 ? "rgba(0,0,0,0)" : "#fff")), width: 1 },
      },
    },
  ];
  if (!gl && mids.x.length && mids.x.length <= ARROWS_UP_TO * 3) {
    // after the nodes, so trace 1 stays the nodes (clicks read its customdata)
    data.push({ type: "scatter", mode: "markers", x: mids.x, y: mids.y, hoverinfo: "skip",
      marker: { symbol: "arrow", angleref: "previous", size: mids.size, color: ARROW_COLOUR, line: { width: 0 } } });
  }
  const xs = nodes.map((n) => n.x);
  const ys = nodes.map((n) => n.y);
  const xRange = [Math.min(...xs) - PAD, Math.max(...xs) + PAD];
  const yRange = [Math.max(...ys) + PAD, Math.min(...ys) - PAD];
  const margin = { l: 20, r: 20, t: labelled ? 28 : 12, b: 12 };
  const height = Math.min(640, Math.max(180, 60 + (Math.max(...ys) - Math.min(...ys) + 1) * (size + 16)));
  const unit = {
    x: (xRange[1] - xRange[0]) / Math.max(200, widthPx - margin.l - margin.r),
    y: (yRange[0] - yRange[1]) / Math.max(100, height - margin.t - margin.b),
  };
  const shapes = nodes.filter((n) => n.count > 1).flatMap((n) => groupShapes(n, graph.colours, unit));
  const layout = {
    font: { family: FONT, size: 12, color: "#222" },
    margin,
    height,
    showlegend: false,
    hovermode: "closest",
    dragmode: "pan",
    xaxis: { ...AXIS_OFF, range: xRange },
    yaxis: { ...AXIS_OFF, range: yRange },
    shapes,
    plot_bgcolor: "#fff",
    paper_bgcolor: "#fff",
  };
  return { data, layout };
}

/** Gantt rows: nodes that started, by start time; [{node, start, end}] in seconds since t0 (the
 * run's start, an ISO time, or the first task's). */
function timelineRows(graph, runStart) {
  const nodes = (graph.nodes || []).filter((n) => epochMs(n.start_time) !== null);
  const starts = nodes.map((n) => epochMs(n.start_time));
  const t0 = Math.min(...starts, epochMs(runStart) ?? Infinity);
  const now = Date.now();
  return nodes
    .map((node, i) => {
      let end = epochMs(node.end_time);
      if (end === null) end = RUNNING_STATES.has(node.state) || !FINAL_STATES.has(node.state) ? now : starts[i];
      return { node, start: (starts[i] - t0) / 1000, end: (end - t0) / 1000 };
    })
    .sort((a, b) => a.start - b.start || a.node.y - b.node.y);
}

/** The figure of the timeline: one bar per node (SVG), or one WebGL trace per state when huge. */
export function timelineFigure(graph, runStart) {
  const rows = timelineRows(graph, runStart);
  if (!rows.length) return null;
  const named = rows.length <= ROW_NAMES_UP_TO;
  // every bar that started shows, however short (a cache hit takes ~0 s)
  const shortest = Math.max(...rows.map((r) => r.end), 0.001) * MIN_BAR_SHARE;
  const data = [];
  if (rows.length <= GL_ROWS || !hasWebGL()) {
    data.push({
      type: "bar",
      orientation: "h",
      y: rows.map((_, i) => i),
      base: rows.map((r) => r.start),
      x: rows.map((r) => Math.max(r.end - r.start, shortest)),
      width: 0.8,
      hovertext: rows.map((r) => hoverText(r.node)),
      hoverinfo: "text",
      customdata: rows.map((r) => (graph.nodes || []).indexOf(r.node)),
      marker: {
        color: rows.map((r) => colourOf(r.node, graph.colours)),
        opacity: rows.map((r) => (r.node.count > 1 ? 0.7 : 1)),
        line: { width: 1, color: rows.map((r) => colourOf(r.node, graph.colours)) },
      },
    });
  } else {
    const byState = new Map();
    rows.forEach((r, i) => {
      const colour = colourOf(r.node, graph.colours);
      if (!byState.has(colour)) byState.set(colour, { x: [], y: [] });
      const trace = byState.get(colour);
      trace.x.push(r.start, Math.max(r.end, r.start + shortest), null);
      trace.y.push(i, i, null);
    });
    for (const [colour, xy] of byState) {
      data.push({ type: "scattergl", mode: "lines", ...xy, hoverinfo: "skip", line: { color: colour, width: 3 } });
    }
  }
  const layout = {
    font: { family: FONT, size: 12, color: "#222" },
    margin: { l: named ? 160 : 30, r: 20, t: 10, b: 40 },
    height: Math.min(700, Math.max(150, 60 + rows.length * (named ? 20 : 3))),
    showlegend: false,
    hovermode: "closest",
    bargap: 0.2,
    xaxis: {
      title: { text: "seconds since the run started", font: { size: 11 } },
      zeroline: false,
      gridcolor: "#eceff2",
      rangemode: "tozero",
    },
    yaxis: {
      autorange: "reversed",
      tickmode: named ? "array" : undefined,
      tickvals: named ? rows.map((_, i) => i) : undefined,
      ticktext: named ? rows.map((r) => plotlyText(clip(label(r.node), 26))) : undefined,
      showticklabels: named,
      showgrid: false,
      zeroline: false,
    },
    plot_bgcolor: "#fff",
    paper_bgcolor: "#fff",
  };
  return { data, layout };
}

/** Draw (or update in place) a figure into `el`; `onClick(pointCustomData)` when a point is clicked. */
export async function draw(el, figure, onClick) {
  const Plotly = await loadPlotly();
  await Plotly.react(el, figure.data, figure.layout, CONFIG);
  if (onClick && !el._nbflowClick) {
    el._nbflowClick = true;
    el.on("plotly_click", (event) => {
      const point = event && event.points && event.points[0];
      if (point && point.customdata !== undefined) onClick(point.customdata);
    });
  }
}

export function purge(el) {
  if (window.Plotly && el) window.Plotly.purge(el);
}
