import { performance } from 'node:perf_hooks';
import { addCounter, recordHistogram } from '../../common/metrics';
import { serviceMeter } from '../metrics';
import { KekUnwrapError, KekVersionNotFoundError, type KekProvider } from './provider';

function outcomeOf(err: unknown): string {
  if (err instanceof KekVersionNotFoundError) return 'not_found';
  if (err instanceof KekUnwrapError) return 'refused';
  const status = (err as { statusCode?: number } | null)?.statusCode;
  if (status === 429) return 'throttled';
  if (status === 404) return 'not_found';
  if (status === 400 || status === 401 || status === 403) return 'refused';
  return 'error';
}

/** Provider methods that call Key Vault, and the operation label each is counted under. */
const OPERATIONS: Record<string, string> = {
  currentVersion: 'list_versions',
  listVersions: 'list_versions',
  getVersion: 'get_key',
  createVersion: 'create_key',
  unwrap: 'unwrap_key',
  disableVersion: 'disable_key',
};

async function timed<T>(operation: string, vault: string, fn: () => Promise<T>): Promise<T> {
  const started = performance.now();
  let outcome = 'success';
  try {
    return await fn();
  } catch (err) {
    outcome = outcomeOf(err);
    throw err;
  } finally {
    const meter = serviceMeter();
    addCounter(meter, 'keyVaultRequests', 1, { operation, outcome, vault });
    recordHistogram(meter, 'keyVaultLatency', performance.now() - started, { operation, vault });
  }
}

/**
 * Counts and times every call a KEK provider makes to Key Vault (or to what stands in for it), by
 * operation, outcome and vault (the id of the vault the provider's key is in). Wrapping is local with the public key and is not counted. Other methods
 * pass through unchanged, and calls the provider makes to itself are not counted twice.
 */
export function metered<P extends KekProvider>(inner: P, vault: string): P {
  return new Proxy(inner, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      const operation = typeof prop === 'string' ? OPERATIONS[prop] : undefined;
      const fn = value as (...args: unknown[]) => unknown;
      if (!operation) return fn.bind(target);
      return (...args: unknown[]) => timed(operation, vault, async () => fn.apply(target, args));
    },
  });
}
