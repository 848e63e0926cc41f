// Line and bar charts as standalone SVG, with no dependency: axes with round ticks (linear or log),
// one colour per series, dashed reference lines, a legend. Good enough to read a figure in a browser
// or on GitHub, which is all the report needs.
import type { BarFigure, Figure, LineFigure } from './lib.js';

const W = 720, H = 440;
const M = { left: 78, right: 190, top: 44, bottom: 58 };
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#17becf', '#bcbd22'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function fmt(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e3) return `${+(v / 1e3).toPrecision(3)}k`;
  if (a >= 1) return `${+v.toPrecision(3)}`;
  return `${+v.toPrecision(2)}`;
}

interface Scale {
  map(v: number): number;
  ticks: number[];
}

function linearScale(lo: number, hi: number, from: number, to: number): Scale {
  if (hi <= lo) hi = lo + 1;
  const raw = (hi - lo) / 6;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((s) => s >= raw)!;
  const start = Math.floor(lo / step) * step, end = Math.ceil(hi / step) * step;
  const ticks: number[] = [];
  for (let v = start; v <= end + step / 2; v += step) ticks.push(+v.toPrecision(12));
  return { map: (v) => from + ((v - start) / (end - start)) * (to - from), ticks };
}

function logScale(lo: number, hi: number, from: number, to: number): Scale {
  const a = Math.floor(Math.log10(Math.max(lo, 1e-12))), b = Math.ceil(Math.log10(Math.max(hi, lo * 10, 1e-12)));
  const ticks: number[] = [];
  for (let e = a; e <= b; e++) {
    ticks.push(10 ** e);
    // few decades: label 2x and 5x too, or the axis says little
    if (b - a <= 2 && e < b) ticks.push(2 * 10 ** e, 5 * 10 ** e);
  }
  ticks.sort((x, y) => x - y);
  return { map: (v) => from + ((Math.log10(Math.max(v, 10 ** a)) - a) / (b - a || 1)) * (to - from), ticks };
}

function frame(title: string, note: string | undefined): string[] {
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`,
  ];
  if (note) out.push(`<text x="${M.left}" y="${H - 8}" font-size="10" fill="#555">${esc(note)}</text>`);
  return out;
}

function yAxis(out: string[], y: Scale, label: string): void {
  for (const t of y.ticks) {
    const py = y.map(t);
    out.push(`<line x1="${M.left}" x2="${W - M.right}" y1="${py}" y2="${py}" stroke="#e6e6e6"/>`);
    out.push(`<text x="${M.left - 6}" y="${py + 4}" text-anchor="end">${fmt(t)}</text>`);
  }
  out.push(`<text transform="translate(16 ${(M.top + H - M.bottom) / 2}) rotate(-90)" text-anchor="middle">${esc(label)}</text>`);
}

function legend(out: string[], items: { name: string; color: string; dashed?: boolean }[]): void {
  items.forEach((s, i) => {
    const x = W - M.right + 14, y = M.top + 10 + i * 18;
    out.push(`<line x1="${x}" x2="${x + 22}" y1="${y}" y2="${y}" stroke="${s.color}" stroke-width="3"${s.dashed ? ' stroke-dasharray="5 4"' : ''}/>`);
    out.push(`<text x="${x + 28}" y="${y + 4}">${esc(s.name.length > 24 ? s.name.slice(0, 23) + '…' : s.name)}</text>`);
  });
}

function line(f: LineFigure): string {
  const xs = f.series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = f.series.flatMap((s) => s.points.map((p) => p[1]));
  if (!xs.length) return [...frame(f.title, 'no data'), '</svg>'].join('\n');
  const x = (f.x.log ? logScale : linearScale)(Math.min(...xs), Math.max(...xs), M.left, W - M.right);
  const yLo = f.y.min ?? (f.y.log ? Math.min(...ys.filter((v) => v > 0)) : Math.min(0, ...ys));
  const y = (f.y.log ? logScale : linearScale)(yLo, Math.max(...ys), H - M.bottom, M.top);
  const out = frame(f.title, f.note);
  yAxis(out, y, f.y.label);
  for (const t of x.ticks) {
    const px = x.map(t);
    out.push(`<line x1="${px}" x2="${px}" y1="${M.top}" y2="${H - M.bottom}" stroke="#f0f0f0"/>`);
    out.push(`<text x="${px}" y="${H - M.bottom + 16}" text-anchor="middle">${fmt(t)}</text>`);
  }
  out.push(`<text x="${(M.left + W - M.right) / 2}" y="${H - M.bottom + 36}" text-anchor="middle">${esc(f.x.label)}</text>`);
  out.push(`<rect x="${M.left}" y="${M.top}" width="${W - M.left - M.right}" height="${H - M.top - M.bottom}" fill="none" stroke="#888"/>`);
  f.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length]!;
    const pts = [...s.points].sort((a, b) => a[0] - b[0]).map(([px, py]) => `${x.map(px).toFixed(1)},${y.map(py).toFixed(1)}`);
    out.push(`<polyline fill="none" stroke="${color}" stroke-width="2"${s.reference ? ' stroke-dasharray="5 4"' : ''} points="${pts.join(' ')}"/>`);
    if (!s.reference) for (const p of pts) out.push(`<circle cx="${p.split(',')[0]}" cy="${p.split(',')[1]}" r="3" fill="${color}"/>`);
  });
  legend(out, f.series.map((s, i) => ({ name: s.name, color: COLORS[i % COLORS.length]!, dashed: s.reference })));
  out.push('</svg>');
  return out.join('\n');
}

function bar(f: BarFigure): string {
  const ys = f.series.flatMap((s) => s.values);
  const y = (f.y.log ? logScale : linearScale)(f.y.log ? Math.min(...ys.filter((v) => v > 0)) : 0, Math.max(...ys, 0), H - M.bottom, M.top);
  const out = frame(f.title, f.note);
  yAxis(out, y, f.y.label);
  const groupW = (W - M.left - M.right) / Math.max(1, f.categories.length);
  const barW = (groupW * 0.8) / Math.max(1, f.series.length);
  f.categories.forEach((c, ci) => {
    const gx = M.left + ci * groupW + groupW * 0.1;
    out.push(`<text x="${gx + groupW * 0.4}" y="${H - M.bottom + 16}" text-anchor="middle">${esc(c)}</text>`);
    f.series.forEach((s, si) => {
      const v = s.values[ci] ?? 0;
      const top = y.map(v), base = y.map(f.y.log ? y.ticks[0]! : 0);
      out.push(`<rect x="${(gx + si * barW).toFixed(1)}" y="${Math.min(top, base).toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${Math.abs(base - top).toFixed(1)}" fill="${COLORS[si % COLORS.length]}"><title>${esc(`${s.name} ${c}: ${v}`)}</title></rect>`);
      out.push(`<text x="${(gx + si * barW + barW / 2).toFixed(1)}" y="${(Math.min(top, base) - 4).toFixed(1)}" text-anchor="middle" font-size="10">${fmt(v)}</text>`);
    });
  });
  out.push(`<rect x="${M.left}" y="${M.top}" width="${W - M.left - M.right}" height="${H - M.top - M.bottom}" fill="none" stroke="#888"/>`);
  legend(out, f.series.map((s, i) => ({ name: s.name, color: COLORS[i % COLORS.length]! })));
  out.push('</svg>');
  return out.join('\n');
}

export function renderSvg(f: Figure): string {
  return f.kind === 'line' ? line(f) : bar(f);
}
