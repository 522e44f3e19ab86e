import { createServer, type Server } from 'node:http';

/** One dependency the worker needs: resolves when reachable, rejects with the reason otherwise. */
export type Probe = () => Promise<void>;

export interface HealthReport {
  ok: boolean;
  checks: Record<string, { ok: boolean; error?: string }>;
}

const withTimeout = (probe: Probe, ms: number): Promise<void> =>
  new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    probe().then(
      () => {
        clearTimeout(timer);
        resolve();
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });

/** Runs every probe at once; the report names each and, for a failed one, its error message. */
export async function checkHealth(probes: Record<string, Probe>, timeoutMs = 3000): Promise<HealthReport> {
  const names = Object.keys(probes);
  const results = await Promise.allSettled(names.map((name) => withTimeout(probes[name] as Probe, timeoutMs)));
  const checks: HealthReport['checks'] = {};
  results.forEach((r, i) => {
    checks[names[i] as string] =
      r.status === 'fulfilled' ? { ok: true } : { ok: false, error: String(r.reason?.message ?? r.reason) };
  });
  return { ok: results.every((r) => r.status === 'fulfilled'), checks };
}

/**
 * GET /healthz: 200 with the report when every dependency answers, 503 otherwise (the container's
 * HEALTHCHECK and an orchestrator's probes use it). Nothing else is served.
 */
export function startHealthServer(port: number, probes: Record<string, Probe>, host = '0.0.0.0'): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url !== '/healthz' && req.url !== '/health')) {
      res.writeHead(404).end();
      return;
    }
    checkHealth(probes).then(
      (report) => {
        res.writeHead(report.ok ? 200 : 503, { 'content-type': 'application/json' });
        res.end(JSON.stringify(report));
      },
      () => res.writeHead(500).end(),
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}
