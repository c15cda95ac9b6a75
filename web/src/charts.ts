// Line charts (uPlot) that follow the page's colours and width.

import uPlot from "uplot";

export interface SeriesSpec {
  label: string;
  color: string; // a CSS variable name, e.g. "--ok"
  fill?: boolean;
  unit?: string;
}

function css(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

function alpha(color: string, a: number): string {
  // color is "#rrggbb"
  const n = parseInt(color.slice(1), 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${a})`;
}

export class Chart {
  private plot: uPlot | null = null;
  private data: uPlot.AlignedData = [[]];
  private xRange: [number, number] = [0, 1];
  private readonly observer: ResizeObserver;
  private theme = "";

  constructor(
    readonly element: HTMLElement,
    private readonly series: SeriesSpec[],
    private readonly opts: { yMax?: number; yUnit?: string; height?: number } = {},
  ) {
    this.observer = new ResizeObserver(() => this.resize());
    this.observer.observe(element);
  }

  private build(): void {
    this.plot?.destroy();
    const axis = css("--muted");
    const grid = css("--grid");
    const unit = this.opts.yUnit ?? "";
    const opts: uPlot.Options = {
      width: Math.max(this.element.clientWidth, 100),
      height: this.opts.height ?? 150,
      legend: { show: true, live: true },
      cursor: { drag: { x: false, y: false }, points: { size: 6 } },
      scales: {
        x: { time: true, range: () => this.xRange },
        y: {
          range: (_u, _min, max) => [0, Math.max(this.opts.yMax ?? 0, max * 1.15, unit === "%" ? 5 : 1)],
        },
      },
      axes: [
        { stroke: axis, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, size: 28 },
        {
          stroke: axis,
          grid: { stroke: grid, width: 1 },
          ticks: { show: false },
          size: 44,
          values: (_u, ticks) => ticks.map((v) => `${+v.toFixed(2)}${unit}`),
        },
      ],
      series: [
        {},
        ...this.series.map((s) => {
          const c = css(s.color);
          return {
            label: s.label,
            stroke: c,
            width: 1.5,
            fill: s.fill ? alpha(c, 0.16) : undefined,
            points: { show: false },
            spanGaps: false,
            value: (_u: uPlot, v: number | null) => (v === null ? "–" : `${+v.toFixed(2)}${s.unit ?? unit}`),
          };
        }),
      ],
    };
    this.plot = new uPlot(opts, this.data, this.element);
  }

  // `data[0]` is in seconds; the x axis spans [from, to] (ms) whatever the data covers.
  set(data: uPlot.AlignedData, from: number, to: number): void {
    this.data = data;
    this.xRange = [from / 1000, to / 1000];
    const theme = document.documentElement.dataset.theme ?? "";
    if (!this.plot || theme !== this.theme) {
      this.theme = theme;
      this.build();
    } else {
      this.plot.setData(data);
    }
  }

  private resize(): void {
    if (!this.plot) return;
    const w = Math.max(this.element.clientWidth, 100);
    if (w !== this.plot.width) this.plot.setSize({ width: w, height: this.plot.height });
  }

  destroy(): void {
    this.observer.disconnect();
    this.plot?.destroy();
    this.plot = null;
  }
}
