declare module 'parse-prometheus-text-format' {
  /** Parses Prometheus text exposition into metric families (throws on an invalid line). */
  export default function parsePrometheusTextFormat(text: string): unknown[];
}
