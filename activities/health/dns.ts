import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP } from 'node:net';

export type DnsOutcome =
  | { ok: true; address: string; family: 4 | 6; source: 'override' | 'dns' }
  | { ok: false; reason: 'not-found' | 'timeout' | 'error'; code?: string };

export type LookupFn = (hostname: string) => Promise<{ address: string; family: number }>;

/** Normalises an AD domain name for lookups and overrides: lower case, no trailing dot. */
export function normaliseDomain(domain: string): string {
  return domain.trim().toLowerCase().replace(/\.$/, '');
}

/**
 * Resolves the AD domain name to an address, the way a client that joins the domain would: the
 * static overrides first (tests, air-gapped sites), else the system resolver (getaddrinfo, so
 * /etc/hosts counts). getaddrinfo has no timeout of its own, so the lookup races `timeoutMs`.
 */
export async function resolveDomain(
  domain: string,
  opts: { overrides: Record<string, string>; timeoutMs: number; lookup?: LookupFn },
): Promise<DnsOutcome> {
  const name = normaliseDomain(domain);
  const override = opts.overrides[name];
  if (override !== undefined) {
    const family = isIP(override);
    if (family === 4 || family === 6) return { ok: true, address: override, family, source: 'override' };
    // An override that is itself a name: resolve that name instead.
    return resolveDomain(override, { overrides: {}, timeoutMs: opts.timeoutMs, lookup: opts.lookup });
  }
  const literal = isIP(name);
  if (literal === 4 || literal === 6) return { ok: true, address: name, family: literal, source: 'dns' };

  const lookup = opts.lookup ?? ((host: string) => dnsLookup(host));
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<DnsOutcome>((resolve) => {
    timer = setTimeout(() => resolve({ ok: false, reason: 'timeout' }), opts.timeoutMs);
  });
  const answer = lookup(name).then(
    (r): DnsOutcome => {
      const family = r.family === 6 ? 6 : 4;
      return { ok: true, address: r.address, family, source: 'dns' };
    },
    (err: unknown): DnsOutcome => {
      const code = typeof (err as { code?: unknown }).code === 'string' ? (err as { code: string }).code : undefined;
      const notFound = code === 'ENOTFOUND' || code === 'ENODATA' || code === 'EAI_NONAME' || code === 'EAI_AGAIN';
      return { ok: false, reason: notFound ? 'not-found' : 'error', code };
    },
  );
  try {
    return await Promise.race([answer, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
