// A time-series chart (uPlot: small and fast, draws on a canvas). The canvas says nothing to a
// screen reader, so the figure carries a text summary and the legend shows each series' last value.
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface ChartSeries {
  label: string;
  values: number[];
  color: string;
  dash?: number[];
}

export function Chart({
  title,
  times,
  series,
  format,
  height = 170,
}: {
  title: string;
  times: number[];
  series: ChartSeries[];
  format: (n: number) => string;
  height?: number;
}) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const shape = series.map((s) => s.label).join('|');

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const u = new uPlot(
      {
        width: Math.max(200, el.clientWidth),
        height,
        legend: { show: false },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
        axes: [
          { stroke: '#4b5563', grid: { stroke: '#e5e7eb' }, ticks: { stroke: '#e5e7eb' } },
          {
            stroke: '#4b5563',
            grid: { stroke: '#e5e7eb' },
            ticks: { stroke: '#e5e7eb' },
            size: 50,
            values: (_u, splits) => splits.map(format),
          },
        ],
        series: [
          {},
          ...series.map((s) => ({
            label: s.label,
            stroke: s.color,
            width: 2,
            ...(s.dash ? { dash: s.dash } : {}),
            points: { show: false },
          })),
        ],
      },
      [times, ...series.map((s) => s.values)],
      el,
    );
    plot.current = u;
    const resize = new ResizeObserver(() => u.setSize({ width: Math.max(200, el.clientWidth), height }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      u.destroy();
      plot.current = null;
    };
    // Rebuilt only when the set of series changes; new data goes through setData below.
  }, [shape, height]);

  useEffect(() => {
    plot.current?.setData([times, ...series.map((s) => s.values)]);
  }, [times, series]);

  const last = (values: number[]) => (values.length > 0 ? values[values.length - 1]! : 0);
  const summary = series
    .map((s) => `${s.label}: latest ${format(last(s.values))}, highest ${format(Math.max(0, ...s.values))}`)
    .join('; ');
  return (
    <figure class="chart">
      <figcaption>{title}</figcaption>
      <div ref={box} class="chart-canvas" role="img" aria-label={`${title}. ${summary}`} />
      <ul class="legend">
        {series.map((s) => (
          <li key={s.label}>
            <span class="swatch" style={{ background: s.color }} aria-hidden="true" />
            {s.label} <strong>{format(last(s.values))}</strong>
          </li>
        ))}
      </ul>
    </figure>
  );
}
