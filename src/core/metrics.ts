/**
 * Counters and one latency histogram, rendered in the Prometheus text
 * exposition format (version 0.0.4, prometheus.io/docs/instrumenting/exposition_formats).
 * Per process: Prometheus sums instances itself. Labels are route patterns,
 * provider ids and outcome codes, never a user id or a path.
 */

const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const DEFINITIONS = {
  linkgate_flows_started_total: { help: 'Link flows started (Continue pressed), by provider and tenant', type: 'counter' },
  linkgate_flows_completed_total: { help: 'Link flows that stored a link, by provider and tenant', type: 'counter' },
  linkgate_flows_failed_total: { help: 'Link flows that ended without a link, by provider, tenant and error code', type: 'counter' },
  linkgate_flows_cancelled_total: { help: 'Linking cancelled by the user, on our page (user) or at the provider (provider_denied)', type: 'counter' },
  linkgate_token_refreshes_total: { help: 'Token refreshes, by provider, tenant and outcome', type: 'counter' },
  linkgate_webhook_deliveries_total: { help: 'Webhook delivery attempts, by tenant and outcome', type: 'counter' },
  linkgate_links_deleted_total: { help: 'Links deleted, by provider, tenant and where the unlink came from (api, rpc, admin, account, console, annie_auth)', type: 'counter' },
  linkgate_http_request_duration_seconds: { help: 'HTTP requests, by method, route pattern and status', type: 'histogram' },
  linkgate_rpc_duration_seconds: { help: 'RPCs (gRPC, gRPC-Web, Connect), by procedure and status', type: 'histogram' },
} as const;

type HistogramName = 'linkgate_http_request_duration_seconds' | 'linkgate_rpc_duration_seconds';
export type CounterName = Exclude<keyof typeof DEFINITIONS, HistogramName>;
type Labels = Record<string, string>;

interface Histogram {
  labels: Labels;
  counts: number[];
  sum: number;
  count: number;
}

// Label values are ids and codes, but escape them as the format requires anyway.
const escape = (value: string) => value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
const labelText = (labels: Labels) => {
  const parts = Object.entries(labels).map(([k, value]) => `${k}="${escape(value)}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
};

export function createMetrics() {
  const counters = new Map<CounterName, Map<string, { labels: Labels; value: number }>>();
  const histograms = new Map<HistogramName, Map<string, Histogram>>();

  function observe(name: HistogramName, labels: Labels, seconds: number): void {
    let series = histograms.get(name);
    if (!series) histograms.set(name, (series = new Map()));
    const key = labelText(labels);
    let h = series.get(key);
    if (!h) series.set(key, (h = { labels, counts: BUCKETS.map(() => 0), sum: 0, count: 0 }));
    for (let i = 0; i < BUCKETS.length; i++) if (seconds <= BUCKETS[i]!) h.counts[i]! += 1;
    h.sum += seconds;
    h.count += 1;
  }

  return {
    inc(name: CounterName, labels: Labels = {}, by = 1): void {
      let series = counters.get(name);
      if (!series) counters.set(name, (series = new Map()));
      const key = labelText(labels);
      const entry = series.get(key);
      if (entry) entry.value += by;
      else series.set(key, { labels, value: by });
    },

    observeRequest(labels: { method: string; route: string; status: string }, seconds: number): void {
      observe('linkgate_http_request_duration_seconds', labels, seconds);
    },

    /** `rpc` is the procedure (`linkgate.v1.LinkService/GetLink`), `status` `OK` or the status code's name (`NOT_FOUND`). */
    observeRpc(labels: { rpc: string; status: string }, seconds: number): void {
      observe('linkgate_rpc_duration_seconds', labels, seconds);
    },

    render(): string {
      const lines: string[] = [];
      for (const [name, { help, type }] of Object.entries(DEFINITIONS)) {
        lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
        if (type === 'counter') {
          for (const { labels, value } of counters.get(name as CounterName)?.values() ?? []) lines.push(`${name}${labelText(labels)} ${value}`);
          continue;
        }
        for (const h of histograms.get(name as HistogramName)?.values() ?? []) {
          BUCKETS.forEach((le, i) => lines.push(`${name}_bucket${labelText({ ...h.labels, le: String(le) })} ${h.counts[i]}`));
          lines.push(`${name}_bucket${labelText({ ...h.labels, le: '+Inf' })} ${h.count}`);
          lines.push(`${name}_sum${labelText(h.labels)} ${h.sum}`, `${name}_count${labelText(h.labels)} ${h.count}`);
        }
      }
      return `${lines.join('\n')}\n`;
    },
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
