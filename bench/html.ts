/**
 * The bench report as one HTML page: `renderHtml(results)` turns the object
 * bench/run.ts writes to perf/results.json into a self-contained page (inline
 * CSS and inline SVG only: no scripts, stylesheets, fonts or images from
 * elsewhere, so it opens from disk and from a CI artifact alike).
 *
 * The page: a header (date, mode, machine, implementations and versions,
 * settings), then one chart per table present in the rows. A chart has one
 * group per row × column (MTU), and in a group one horizontal bar per
 * implementation, its median printed next to it and, when there was more
 * than one run, its min–max drawn as a thin whisker. Bars of one row share a
 * scale across its columns, so MTUs compare at a glance; different rows
 * (Gbit/s, µs) do not share one. Skipped cells and notes close the page.
 *
 * Contract for machines (test/e2e/bench-html.test.ts reads it): every printed
 * median is the text content of an element carrying data-table, data-row,
 * data-column, data-impl (the cell's fields) and data-value (the median,
 * String(median), so exactly the JSON number), its text formatValue(median,
 * unit). A cell with a null median is an element with the same first four
 * attributes and data-missing ("failed", "skipped" or "none") instead of
 * data-value. Each chart is an <svg data-table="TABLE">. Min and max appear
 * only in tooltips (<title>), never as printed text.
 */
import { TABLE_TITLES } from "./plan.ts";
import type { Cell as ReportCell } from "./report.ts";

/** What the page reads of a cell (results.json's rows; errors may be missing in hand-made results). */
type Cell = Omit<ReportCell, "errors" | "values" | "cpu"> & { errors?: string[] };

/** One row × column of a table: the bars drawn together. */
interface Group {
  row: string;
  column: number;
  unit: string;
  cells: Cell[];
}

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

const LOWER_IS_BETTER = new Set(["µs", "ms", "MB"]);

// Chart geometry, in SVG user units (the SVG scales to the page width).
const WIDTH = 960;
const BAR_X = 130; // bars start here; implementation names end just left of it
const BAR_W = 640; // the longest bar (the row's largest max or median)
const BAR_H = 14;
const BAR_GAP = 4;
const HEAD_H = 22; // a group's label line
const GROUP_GAP = 12;

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

/** A table's cells as groups, rows in order of first appearance, columns ascending. */
function groupsOf(cells: Cell[]): Group[] {
  const rows = [...new Set(cells.map((c) => c.row))];
  const groups: Group[] = [];
  for (const row of rows) {
    const inRow = cells.filter((c) => c.row === row);
    const columns = [...new Set(inRow.map((c) => c.column))].sort((a, b) => a - b);
    for (const column of columns) {
      const inGroup = inRow.filter((c) => c.column === column);
      const order = orderImpls(inGroup.map((c) => c.impl));
      inGroup.sort((a, b) => order.indexOf(a.impl) - order.indexOf(b.impl));
      groups.push({ row, column, unit: inGroup[0]!.unit, cells: inGroup });
    }
  }
  return groups;
}

/** The data-* attributes naming a cell. */
function cellAttrs(c: Cell): string {
  return `data-table="${esc(c.table)}" data-row="${esc(c.row)}" data-column="${esc(c.column)}" data-impl="${esc(c.impl)}"`;
}

/** One bar: name, bar, whisker, printed median (or why there is none), at vertical offset y. */
function renderBar(c: Cell, y: number, scale: number, colour: string): string {
  const mid = y + BAR_H / 2;
  const name = `<text class="impl" x="${BAR_X - 6}" y="${mid + 4}" text-anchor="end">${esc(c.impl)}</text>`;
  if (c.median === null) {
    const missing = c.skipped ? "skipped" : c.errors?.length ? "failed" : "none";
    const why = c.skipped ?? c.errors?.join("; ") ?? "";
    return (
      `<g><title>${esc(`${c.impl}: ${missing}${why ? `: ${why}` : ""}`)}</title>${name}` +
      `<text class="missing" x="${BAR_X + 4}" y="${mid + 4}" ${cellAttrs(c)} data-missing="${missing}">${missing}</text></g>`
    );
  }
  const x = (v: number) => BAR_X + (Math.max(v, 0) / scale) * BAR_W;
  const parts = [name, `<rect x="${BAR_X}" y="${y}" width="${(x(c.median) - BAR_X).toFixed(1)}" height="${BAR_H}" fill="${colour}"/>`];
  let end = x(c.median);
  let tip = `${c.impl}: median ${c.median} ${c.unit}`;
  if (c.runs > 1 && c.min !== null && c.max !== null) {
    const [x1, x2] = [x(c.min).toFixed(1), x(c.max).toFixed(1)];
    parts.push(`<path class="whisker" d="M${x1} ${mid - 4}v8M${x1} ${mid}H${x2}M${x2} ${mid - 4}v8"/>`);
    end = Math.max(end, x(c.max));
    tip += `, min ${c.min}, max ${c.max}, ${c.runs} runs`;
  }
  parts.push(
    `<text class="value" x="${(end + 6).toFixed(1)}" y="${mid + 4}" ${cellAttrs(c)} data-value="${esc(c.median)}">${esc(formatValue(c.median, c.unit))}</text>`,
  );
  return `<g><title>${esc(tip)}</title>${parts.join("")}</g>`;
}

/** One table's chart: a title, a legend, and the SVG with every group. */
function renderChart(table: string, cells: Cell[], allImpls: string[]): string {
  const groups = groupsOf(cells);
  const scales = new Map<string, number>();
  for (const c of cells) {
    const top = Math.max(c.max ?? 0, c.median ?? 0);
    scales.set(c.row, Math.max(scales.get(c.row) ?? 0, top));
  }
  const body: string[] = [];
  let y = 0;
  for (const g of groups) {
    const label = g.column === 0 ? g.row : `${g.row} · MTU ${g.column}`;
    body.push(
      `<text class="group" x="0" y="${y + 15}">${esc(label)} <tspan class="unit">(${esc(g.unit)}, ${betterNote(g.unit)})</tspan></text>`,
    );
    y += HEAD_H;
    const scale = scales.get(g.row) || 1;
    for (const c of g.cells) {
      body.push(renderBar(c, y, scale, colourOf(c.impl, allImpls)));
      y += BAR_H + BAR_GAP;
    }
    y += GROUP_GAP;
  }
  const legend = orderImpls(cells.map((c) => c.impl))
    .map((n) => `<span class="key"><span class="swatch" style="background:${colourOf(n, allImpls)}"></span>${esc(n)}</span>`)
    .join(" ");
  return (
    `<section><h2>${esc(TABLE_TITLES[table] ?? table)} <code>${esc(table)}</code></h2>` +
    `<p class="legend">${legend}</p>` +
    `<svg data-table="${esc(table)}" viewBox="0 0 ${WIDTH} ${y}" width="100%" role="img">${body.join("")}</svg></section>`
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
    `<header><h1>Performance: ours vs the reference</h1>` +
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
svg text { font: 12px system-ui, sans-serif; fill: #222; }
svg text.group { font-weight: 600; } svg tspan.unit { font-weight: normal; fill: #666; }
svg text.missing { fill: #a00; font-style: italic; }
svg .whisker { stroke: #222; stroke-width: 1.2; fill: none; }
`;

/** The whole page for one results object (the shape of perf/results.json). */
export function renderHtml(results: any): string {
  const cells: Cell[] = Array.isArray(results?.rows) ? results.rows : [];
  const allImpls = orderImpls([...Object.keys(results?.implementations ?? {}), ...cells.map((c) => c.impl)]);
  const tables = [...new Set(cells.map((c) => c.table))];
  const charts = tables.map((t) =>
    renderChart(
      t,
      cells.filter((c) => c.table === t),
      allImpls,
    ),
  );
  return (
    `<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Bench results ${esc(results?.date ?? "")}</title>` +
    `<style>${CSS}</style></head><body>` +
    renderHeader(results ?? {}, allImpls) +
    charts.join("") +
    renderList("Skipped", results?.skipped) +
    renderList("Notes from this run", results?.notes) +
    `</body></html>\n`
  );
}
