/**
 * The bench report as one HTML page: `renderHtml(results)` turns the object
 * bench/run.ts writes to perf/results.json into a self-contained page (inline
 * CSS and inline SVG only: no scripts, stylesheets, fonts or images from
 * elsewhere, so it opens from disk and from a CI artifact alike).
 *
 * The page, to be read at a glance from the top:
 *   1. a header (date, mode, machine, implementations and versions, settings);
 *   2. a summary: per table, how many cells we are better in, at parity
 *      with, or worse in than the best reference of the cell (PARITY: within
 *      5 %), and the weakest cell;
 *   3. per table, a grid: rows × MTU columns, each cell ours ÷ the best
 *      reference (plan.ts refImpls: Debian's and upstream's), coloured by
 *      that verdict;
 *   4. per table, the charts: a row with several columns (throughput,
 *      memory) as vertical bars grouped by MTU, one bar per implementation;
 *      the one-column rows (latency, start-up) together as horizontal bars.
 *      Medians are printed on the bars; with more than one run the min–max
 *      is a thin whisker. Bars of one row share one scale.
 *   5. skipped cells and notes.
 *
 * Contract for machines (test/tools/page.ts reads it):
 *   - every printed median is the text content of an element carrying
 *     data-table, data-row, data-column, data-impl (the cell's fields) and
 *     data-value (String(median), exactly the JSON number), its text
 *     formatValue(median, unit); a cell with a null median has the same
 *     first four attributes and data-missing ("failed", "skipped" or "none");
 *   - each table is a <section data-table="TABLE">;
 *   - each grid cell is an element with data-grid (the table), data-row,
 *     data-column, data-verdict ("better", "parity", "worse", or "none"
 *     when ours or every reference is missing) and, unless "none",
 *     data-ratio (String(ratioOf(...)), ours ÷ the best reference, rounded
 *     to 3 decimals), its text "×" + formatRatio(ratio);
 *   - each summary line is an element with data-summary (the table, or "*"
 *     for all tables together) and data-better, data-parity, data-worse (the
 *     counts of its grid, or of all grids), whose text holds the three counts
 *     as "N better", "N at parity", "N worse".
 * Min and max appear only in tooltips (<title>), never as printed text.
 */
import { LOWER_IS_BETTER, TABLE_TITLES, bestReference, oursOnly, refImpls } from "./plan.ts";
import type { Cell as ReportCell } from "./report.ts";

/** What the page reads of a cell (results.json's rows; errors may be missing in hand-made results). */
type Cell = Omit<ReportCell, "errors" | "values" | "cpu"> & { errors?: string[] };

/** Fixed colours, so an implementation looks the same in every chart. */
const IMPL_COLOURS: Record<string, string> = {
  project: "#e6550d",
  pasta: "#3182bd",
  passt: "#756bb1",
  upstream: "#08519c",
  slirp4netns: "#31a354",
  loopback: "#969696",
};
/** For implementations the table above does not name. */
const SPARE_COLOURS = ["#8c564b", "#e377c2", "#17becf", "#bcbd22"];

/** Within this fraction of the best reference (either way) a cell is at parity. */
export const PARITY = 0.05;

export type Verdict = "better" | "parity" | "worse";

// Chart geometry, in SVG user units (the SVG scales to the page width).
const WIDTH = 960;
const BAR_X = 130; // horizontal bars start here; implementation names end just left of it
const BAR_W = 640; // the longest horizontal bar (the row's largest max or median)
const BAR_H = 14;
const BAR_GAP = 4;
const HEAD_H = 22; // a group's label line
const GROUP_GAP = 12;
const VPLOT_X = 40; // vertical charts: the plot starts here
const VPLOT_TOP = 70; // room for the title and the printed values above the tallest bar
const VPLOT_H = 170;
const VBAR_W = 22;
const VBAR_GAP = 3;

/** Escape a string for HTML text and attribute values. */
function esc(s: unknown): string {
  return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&#39;");
}

/**
 * A value as printed: as perf/RESULTS.md prints it (µs to 0.1, whole from 100;
 * others to 0.01, 0.1 from 10), except that values under 0.1 keep two
 * significant digits, so a stalled run shows 0.0030, not 0.00.
 */
export function formatValue(x: number, unit: string): string {
  if (x !== 0 && Math.abs(x) < 0.1) return x.toPrecision(2);
  if (unit === "µs") return x >= 100 ? x.toFixed(0) : x.toFixed(1);
  return x >= 10 ? x.toFixed(1) : x.toFixed(2);
}

/** Ours ÷ the best reference, rounded to 3 decimals (what data-ratio holds). */
export function ratioOf(ours: number, best: number): number {
  return Math.round((ours / best) * 1000) / 1000;
}

/** A ratio as printed after "×". */
export function formatRatio(q: number): string {
  return q >= 100 ? q.toFixed(0) : q >= 10 ? q.toFixed(1) : q.toFixed(2);
}

/** better, parity or worse: the ratio read in the unit's direction, against PARITY. */
export function verdictOf(ratio: number, unit: string): Verdict {
  const goodness = LOWER_IS_BETTER.has(unit) ? 1 / ratio : ratio;
  if (goodness > 1 + PARITY) return "better";
  if (goodness < 1 / (1 + PARITY)) return "worse";
  return "parity";
}

/** Implementation names in a fixed order: ours, the references, the rest alphabetically. */
function orderImpls(names: Iterable<string>): string[] {
  const known = Object.keys(IMPL_COLOURS);
  const rank = (n: string) => (known.includes(n) ? known.indexOf(n) : known.length);
  return [...new Set(names)].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

/** The colour of an implementation, given every implementation on the page. */
function colourOf(impl: string, all: string[]): string {
  const spare = all.filter((n) => !(n in IMPL_COLOURS));
  return IMPL_COLOURS[impl] ?? SPARE_COLOURS[spare.indexOf(impl) % SPARE_COLOURS.length]!;
}

function betterNote(unit: string): string {
  return LOWER_IS_BETTER.has(unit) ? "lower is better" : "higher is better";
}

/** The data-* attributes naming a cell. */
function cellAttrs(c: Cell): string {
  return `data-table="${esc(c.table)}" data-row="${esc(c.row)}" data-column="${esc(c.column)}" data-impl="${esc(c.impl)}"`;
}

function missingOf(c: Cell): { missing: string; why: string } {
  return { missing: c.skipped ? "skipped" : c.errors?.length ? "failed" : "none", why: c.skipped ?? c.errors?.join("; ") ?? "" };
}

function tipOf(c: Cell): string {
  let tip = `${c.impl}: median ${c.median} ${c.unit}`;
  if (c.runs > 1 && c.min !== null && c.max !== null) tip += `, min ${c.min}, max ${c.max}, ${c.runs} runs`;
  return tip;
}

/** Rows of a table in order of first appearance, each with its columns ascending. */
function rowsOf(cells: Cell[]): { row: string; unit: string; columns: number[] }[] {
  return [...new Set(cells.map((c) => c.row))].map((row) => {
    const inRow = cells.filter((c) => c.row === row);
    return { row, unit: inRow[0]!.unit, columns: [...new Set(inRow.map((c) => c.column))].sort((a, b) => a - b) };
  });
}

function colLabel(table: string, c: number): string {
  if (c === 0) return "value";
  return table.includes("-lo-") ? `lo MTU ${c}` : `MTU ${c}`;
}

// ---------------------------------------------------------------- grid and summary

interface GridCell {
  row: string;
  column: number;
  unit: string;
  ratio: number | null;
  verdict: Verdict | null;
  /** who the best reference was, and both medians, for the tooltip */
  tip: string;
}

/** Every row × column of a table as ours ÷ the best reference. */
function gridOf(table: string, cells: Cell[]): GridCell[] {
  const out: GridCell[] = [];
  for (const { row, unit, columns } of rowsOf(cells)) {
    for (const column of columns) {
      const at = (impl: string) => cells.find((c) => c.row === row && c.column === column && c.impl === impl);
      const ours = at("project")?.median;
      const best = bestReference(
        refImpls(table, row).map((impl) => ({ impl, median: at(impl)?.median })),
        unit,
      );
      if (ours == null || !best || !best.median) {
        const tip = ours == null ? "ours: no value" : `ours ${ours} ${unit}; ${oursOnly(row) ?? "no reference value"}`;
        out.push({ row, column, unit, ratio: null, verdict: null, tip });
        continue;
      }
      const ratio = ratioOf(ours, best.median);
      out.push({
        row,
        column,
        unit,
        ratio,
        verdict: verdictOf(ratio, unit),
        tip: `ours ${ours} ${unit}, best reference ${best.impl} ${best.median} ${unit}`,
      });
    }
  }
  return out;
}

function renderGrid(table: string, grid: GridCell[]): string {
  const columns = [...new Set(grid.map((g) => g.column))].sort((a, b) => a - b);
  const rows = [...new Set(grid.map((g) => g.row))];
  const head = `<tr><th></th>${columns.map((c) => `<th>${esc(colLabel(table, c))}</th>`).join("")}</tr>`;
  const body = rows.map((row) => {
    const unit = grid.find((g) => g.row === row)!.unit;
    const tds = columns.map((column) => {
      const g = grid.find((x) => x.row === row && x.column === column);
      if (!g) return `<td class="empty"></td>`;
      const attrs = `data-grid="${esc(table)}" data-row="${esc(row)}" data-column="${esc(column)}"`;
      if (g.ratio === null) return `<td class="none" ${attrs} data-verdict="none" title="${esc(g.tip)}">–</td>`;
      return `<td class="${g.verdict}" ${attrs} data-verdict="${g.verdict}" data-ratio="${esc(g.ratio)}" title="${esc(g.tip)}">×${esc(formatRatio(g.ratio))}</td>`;
    });
    return `<tr><th>${esc(row)} <span class="unit">(${esc(unit)}, ${betterNote(unit)})</span></th>${tds.join("")}</tr>`;
  });
  return `<table class="grid">${head}${body.join("")}</table>`;
}

/** Counts of a grid's verdicts. */
function countsOf(grid: GridCell[]): Record<Verdict, number> {
  const n = { better: 0, parity: 0, worse: 0 };
  for (const g of grid) if (g.verdict) n[g.verdict]++;
  return n;
}

/** The weakest cell of a grid (the lowest ratio read in its direction), if any is worse. */
function weakest(grid: GridCell[]): GridCell | null {
  const goodness = (g: GridCell) => (LOWER_IS_BETTER.has(g.unit) ? 1 / g.ratio! : g.ratio!);
  const worse = grid.filter((g) => g.verdict === "worse").sort((a, b) => goodness(a) - goodness(b));
  return worse[0] ?? null;
}

function renderSummary(tables: string[], grids: Map<string, GridCell[]>): string {
  const total = countsOf([...grids.values()].flat());
  const items = tables.map((t) => {
    const grid = grids.get(t)!;
    const n = countsOf(grid);
    const weak = weakest(grid);
    const weakText = weak
      ? `; weakest: ${weak.row}${weak.column ? ` at ${colLabel(t, weak.column)}` : ""}, ×${formatRatio(weak.ratio!)}`
      : "";
    return (
      `<li data-summary="${esc(t)}" data-better="${n.better}" data-parity="${n.parity}" data-worse="${n.worse}">` +
      `<a href="#${esc(t)}">${esc(TABLE_TITLES[t] ?? t)}</a>: ` +
      `<span class="better">${n.better} better</span>, <span class="parity">${n.parity} at parity</span>, <span class="worse">${n.worse} worse</span>${esc(weakText)}</li>`
    );
  });
  return (
    `<section class="summary"><h2>Summary</h2>` +
    `<p>Each cell of a table compares ours with the best reference in it (Debian's pasta or passt, or upstream's): better, at parity (within ${PARITY * 100} %), or worse.</p>` +
    `<p class="total" data-summary="*" data-better="${total.better}" data-parity="${total.parity}" data-worse="${total.worse}">All tables: ` +
    `<span class="better">${total.better} better</span>, <span class="parity">${total.parity} at parity</span>, <span class="worse">${total.worse} worse</span></p>` +
    `<ul>${items.join("")}</ul></section>`
  );
}

// ---------------------------------------------------------------- charts

/** Largest median or max of each row: the scale its bars share. */
function scalesOf(cells: Cell[]): Map<string, number> {
  const scales = new Map<string, number>();
  for (const c of cells) scales.set(c.row, Math.max(scales.get(c.row) ?? 0, c.max ?? 0, c.median ?? 0));
  return scales;
}

/** One horizontal bar: name, bar, whisker, printed median (or why there is none), at vertical offset y. */
function renderBar(c: Cell, y: number, scale: number, colour: string): string {
  const mid = y + BAR_H / 2;
  const name = `<text class="impl" x="${BAR_X - 6}" y="${mid + 4}" text-anchor="end">${esc(c.impl)}</text>`;
  if (c.median === null) {
    const { missing, why } = missingOf(c);
    return (
      `<g><title>${esc(`${c.impl}: ${missing}${why ? `: ${why}` : ""}`)}</title>${name}` +
      `<text class="missing" x="${BAR_X + 4}" y="${mid + 4}" ${cellAttrs(c)} data-missing="${missing}">${missing}</text></g>`
    );
  }
  const x = (v: number) => BAR_X + (Math.max(v, 0) / scale) * BAR_W;
  const parts = [name, `<rect x="${BAR_X}" y="${y}" width="${(x(c.median) - BAR_X).toFixed(1)}" height="${BAR_H}" fill="${colour}"/>`];
  let end = x(c.median);
  if (c.runs > 1 && c.min !== null && c.max !== null) {
    const [x1, x2] = [x(c.min).toFixed(1), x(c.max).toFixed(1)];
    parts.push(`<path class="whisker" d="M${x1} ${mid - 4}v8M${x1} ${mid}H${x2}M${x2} ${mid - 4}v8"/>`);
    end = Math.max(end, x(c.max));
  }
  parts.push(
    `<text class="value" x="${(end + 6).toFixed(1)}" y="${mid + 4}" ${cellAttrs(c)} data-value="${esc(c.median)}">${esc(formatValue(c.median, c.unit))}</text>`,
  );
  return `<g><title>${esc(tipOf(c))}</title>${parts.join("")}</g>`;
}

/** The one-column rows of a table (latency, start-up) as groups of horizontal bars in one chart. */
function renderHorizontal(table: string, cells: Cell[], allImpls: string[]): string {
  const scales = scalesOf(cells);
  const body: string[] = [];
  let y = 0;
  for (const { row, unit, columns } of rowsOf(cells)) {
    for (const column of columns) {
      const label = column === 0 ? row : `${row} · MTU ${column}`;
      body.push(
        `<text class="group" x="0" y="${y + 15}">${esc(label)} <tspan class="unit">(${esc(unit)}, ${betterNote(unit)})</tspan></text>`,
      );
      y += HEAD_H;
      const inGroup = cells.filter((c) => c.row === row && c.column === column);
      for (const impl of orderImpls(inGroup.map((c) => c.impl))) {
        body.push(renderBar(inGroup.find((c) => c.impl === impl)!, y, scales.get(row) || 1, colourOf(impl, allImpls)));
        y += BAR_H + BAR_GAP;
      }
      y += GROUP_GAP;
    }
  }
  return `<svg class="chart" data-chart="${esc(table)}" viewBox="0 0 ${WIDTH} ${y}" width="100%" role="img">${body.join("")}</svg>`;
}

/** One row with several columns as vertical bars grouped by MTU, one bar per implementation. */
function renderVertical(table: string, row: string, unit: string, cells: Cell[], allImpls: string[]): string {
  const columns = [...new Set(cells.map((c) => c.column))].sort((a, b) => a - b);
  const impls = orderImpls(cells.map((c) => c.impl));
  const scale = scalesOf(cells).get(row) || 1;
  const groupW = impls.length * (VBAR_W + VBAR_GAP);
  const slot = Math.max(groupW + 30, (WIDTH - VPLOT_X) / columns.length);
  const base = VPLOT_TOP + VPLOT_H;
  const h = (v: number) => (Math.max(v, 0) / scale) * VPLOT_H;
  const body: string[] = [
    `<text class="group" x="0" y="15">${esc(row)} <tspan class="unit">(${esc(unit)}, ${betterNote(unit)})</tspan></text>`,
    `<path class="axis" d="M${VPLOT_X} ${base}H${WIDTH}"/>`,
  ];
  columns.forEach((column, ci) => {
    const x0 = VPLOT_X + ci * slot + (slot - groupW) / 2;
    body.push(
      `<text class="col" x="${(x0 + groupW / 2).toFixed(1)}" y="${base + 16}" text-anchor="middle">${esc(colLabel(table, column))}</text>`,
    );
    impls.forEach((impl, ii) => {
      const c = cells.find((x) => x.column === column && x.impl === impl);
      if (!c) return;
      const x = x0 + ii * (VBAR_W + VBAR_GAP);
      const mid = x + VBAR_W / 2;
      if (c.median === null) {
        const { missing, why } = missingOf(c);
        body.push(
          `<g><title>${esc(`${c.impl}: ${missing}${why ? `: ${why}` : ""}`)}</title>` +
            `<text class="missing" transform="translate(${(mid + 4).toFixed(1)} ${base - 4}) rotate(-90)" ${cellAttrs(c)} data-missing="${missing}">${missing}</text></g>`,
        );
        return;
      }
      const parts = [
        `<rect x="${x.toFixed(1)}" y="${(base - h(c.median)).toFixed(1)}" width="${VBAR_W}" height="${h(c.median).toFixed(1)}" fill="${colourOf(impl, allImpls)}"/>`,
      ];
      let top = base - h(c.median);
      if (c.runs > 1 && c.min !== null && c.max !== null) {
        const [y1, y2] = [(base - h(c.min)).toFixed(1), (base - h(c.max)).toFixed(1)];
        parts.push(`<path class="whisker" d="M${mid - 4} ${y1}h8M${mid} ${y1}V${y2}M${mid - 4} ${y2}h8"/>`);
        top = Math.min(top, base - h(c.max));
      }
      parts.push(
        `<text class="value" transform="translate(${(mid + 4).toFixed(1)} ${(top - 4).toFixed(1)}) rotate(-90)" ${cellAttrs(c)} data-value="${esc(c.median)}">${esc(formatValue(c.median, c.unit))}</text>`,
      );
      body.push(`<g><title>${esc(tipOf(c))}</title>${parts.join("")}</g>`);
    });
  });
  const width = Math.max(WIDTH, VPLOT_X + slot * columns.length);
  return `<svg class="chart" data-chart="${esc(table)}" viewBox="0 0 ${width} ${base + 26}" width="100%" role="img">${body.join("")}</svg>`;
}

/** A table: its title, its grid, a legend, and its charts. */
function renderTable(table: string, cells: Cell[], grid: GridCell[], allImpls: string[]): string {
  const rows = rowsOf(cells);
  const charts = rows
    .filter((r) => r.columns.length > 1)
    .map((r) =>
      renderVertical(
        table,
        r.row,
        r.unit,
        cells.filter((c) => c.row === r.row),
        allImpls,
      ),
    );
  const single = rows.filter((r) => r.columns.length === 1).map((r) => r.row);
  if (single.length)
    charts.push(
      renderHorizontal(
        table,
        cells.filter((c) => single.includes(c.row)),
        allImpls,
      ),
    );
  const legend = orderImpls(cells.map((c) => c.impl))
    .map((n) => `<span class="key"><span class="swatch" style="background:${colourOf(n, allImpls)}"></span>${esc(n)}</span>`)
    .join(" ");
  return (
    `<section data-table="${esc(table)}" id="${esc(table)}"><h2>${esc(TABLE_TITLES[table] ?? table)} <code>${esc(table)}</code></h2>` +
    `<p class="note">Ours ÷ the best reference:</p>${renderGrid(table, grid)}` +
    `<p class="legend">${legend}</p>${charts.join("")}</section>`
  );
}

/** The header: when, where, what ran, with which settings. */
function renderHeader(res: any, allImpls: string[]): string {
  const m = res.machine ?? {};
  const machine = [
    m.cpu,
    m.cores !== undefined ? `${m.cores} cores` : undefined,
    m.mhz !== undefined ? `${m.mhz} MHz` : undefined,
    m.kernel !== undefined ? `Linux ${m.kernel}` : undefined,
  ].filter((x) => x !== undefined);
  const load =
    m.loadavgBefore && m.loadavg ? `load average (1, 5, 15 min) ${m.loadavgBefore.join(" ")} before, ${m.loadavg.join(" ")} after` : "";
  const impls = allImpls
    .map(
      (n) =>
        `<li><span class="swatch" style="background:${colourOf(n, allImpls)}"></span><b>${esc(n)}</b>: ${esc(res.implementations?.[n]?.version ?? "not measured")}</li>`,
    )
    .join("");
  const settings = Object.entries(res.settings ?? {})
    .map(([k, v]) => `<code>${esc(k)}=${esc(JSON.stringify(v))}</code>`)
    .join(" ");
  return (
    `<header><h1>Performance: ours vs the references</h1>` +
    `<p>Measured ${esc(res.date)}, ${esc(res.mode)} mode, on ${esc(machine.join(", "))}${load ? `; ${esc(load)}` : ""}.</p>` +
    `<ul class="impls">${impls}</ul>` +
    (settings ? `<p class="settings">Settings: ${settings}</p>` : "") +
    `</header>`
  );
}

/** A titled list of strings (the skipped rows, the notes), or nothing when empty. */
function renderList(title: string, items: unknown): string {
  if (!Array.isArray(items) || items.length === 0) return "";
  return `<section><h2>${esc(title)}</h2><ul>${items.map((s) => `<li>${esc(s)}</li>`).join("")}</ul></section>`;
}

const CSS = `
body { font: 14px/1.4 system-ui, sans-serif; color: #222; max-width: 1000px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; } h2 code { font-weight: normal; color: #777; }
ul.impls { list-style: none; padding: 0; } .settings code { margin-right: 0.6em; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; margin-right: 0.35em; vertical-align: -0.1em; }
.key { margin-right: 1.2em; }
.better { background: #c7e9c0; } .parity { background: #eeeeee; } .worse { background: #fcbba1; } .none { color: #999; }
.summary li span { padding: 0 0.3em; border-radius: 3px; }
table.grid { border-collapse: collapse; margin: 0.5em 0; font-size: 13px; }
table.grid th, table.grid td { border: 1px solid #ddd; padding: 0.2em 0.5em; }
table.grid th { text-align: left; font-weight: normal; } table.grid tr:first-child th { font-weight: 600; text-align: center; }
table.grid td { text-align: right; font-variant-numeric: tabular-nums; min-width: 4.5em; }
.unit { color: #666; }
svg.chart { margin: 0.6em 0 1.2em; }
svg text { font: 12px system-ui, sans-serif; fill: #222; }
svg text.value { font-size: 10px; } svg text.col { fill: #444; }
svg text.group { font-weight: 600; } svg tspan.unit { font-weight: normal; fill: #666; }
svg text.missing { fill: #a00; font-style: italic; font-size: 10px; }
svg .whisker { stroke: #222; stroke-width: 1.2; fill: none; } svg .axis { stroke: #999; }
`;

/** The whole page for one results object (the shape of perf/results.json). */
export function renderHtml(results: any): string {
  const cells: Cell[] = Array.isArray(results?.rows) ? results.rows : [];
  const allImpls = orderImpls([...Object.keys(results?.implementations ?? {}), ...cells.map((c) => c.impl)]);
  const planned = Object.keys(TABLE_TITLES);
  const rank = (t: string) => (planned.includes(t) ? planned.indexOf(t) : planned.length);
  const tables = [...new Set(cells.map((c) => c.table))].sort((a, b) => rank(a) - rank(b));
  const grids = new Map(
    tables.map((t) => [
      t,
      gridOf(
        t,
        cells.filter((c) => c.table === t),
      ),
    ]),
  );
  const sections = tables.map((t) =>
    renderTable(
      t,
      cells.filter((c) => c.table === t),
      grids.get(t)!,
      allImpls,
    ),
  );
  return (
    `<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Bench results ${esc(results?.date ?? "")}</title>` +
    `<style>${CSS}</style></head><body>` +
    renderHeader(results ?? {}, allImpls) +
    renderSummary(tables, grids) +
    sections.join("") +
    renderList("Skipped", results?.skipped) +
    renderList("Notes from this run", results?.notes) +
    `</body></html>\n`
  );
}
