/**
 * Benchmarks, each against a baseline measured in the same run; prints ratios, asserts nothing.
 *   npm run bench                      every figure (needs the local stack: bash stack/up.sh)
 *   npm run bench -- e2e rotation      only the figures named (sealing, wrapping, e2e, rotation, idle)
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { AzureKeyVaultKekProvider } from '../../activities/kek/azure-key-vault';
import { SlidingWindowLimiter } from '../../activities/kek/rate-limiter';
import { emulatorCredential } from '../../worker/kek';
import { stackEnv } from '../support/stack';
import { sealingBench } from './seal';
import { e2e } from './e2e';
import { idle } from './idle';
import { rotation } from './rotation';

async function time(label: string, n: number, fn: (i: number) => unknown | Promise<unknown>): Promise<number> {
  for (let i = 0; i < Math.min(20, n); i++) await fn(i); // warm-up
  const start = performance.now();
  for (let i = 0; i < n; i++) await fn(i);
  const perOp = (performance.now() - start) / n;
  console.log(`  ${label.padEnd(58)} ${(perOp * 1000).toFixed(1).padStart(9)} µs/op`);
  return perOp;
}

function ratio(what: string, value: number, baseline: number): void {
  console.log(`  => ${what}: ${(value / baseline).toFixed(2)}x the baseline\n`);
}

async function wrapping(): Promise<void> {
  const env = stackEnv();
  console.log('Wrapping a tenant key: locally with the cached public key vs a Key Vault call (emulator over HTTPS)');
  const provider = new AzureKeyVaultKekProvider({
    vaultUrl: env.KEYVAULT_URL,
    keyName: `bench-${randomBytes(4).toString('hex')}`,
    keySize: 3072,
    credential: emulatorCredential,
    limiter: new SlidingWindowLimiter(100_000),
    trustedCaPem: readFileSync(env.KEYVAULT_CA, 'utf8'),
    disableChallengeResourceVerification: true,
  });
  const version = await provider.createVersion(new Date(Date.now() + 365 * 86_400_000));
  const key = randomBytes(32);
  const wrapped = await provider.wrap(key, version);
  const remoteUnwrap = await time('baseline: remote unwrap (one HSM call)', 200, () =>
    provider.unwrap(wrapped, version.version),
  );
  const localWrap = await time('local wrap (RSA-OAEP-256, public key)', 2_000, () => provider.wrap(key, version));
  ratio('local wrap vs one HSM call', localWrap, remoteUnwrap);
  console.log(
    `  Re-wrapping N tenant keys costs N HSM calls (unwrap) + N local wraps, instead of 2N HSM calls:` +
      ` ${((remoteUnwrap + localWrap) / (2 * remoteUnwrap)).toFixed(2)}x the time of a fully remote re-wrap\n`,
  );
}

const sealing = async (): Promise<void> => sealingBench();
const figures: Record<string, () => Promise<void>> = { sealing, wrapping, e2e, rotation, idle };
const chosen = process.argv.slice(2);
for (const name of chosen) {
  if (!(name in figures)) {
    console.error(`unknown benchmark "${name}"; choose from: ${Object.keys(figures).join(', ')}`);
    process.exit(2);
  }
}
for (const name of chosen.length ? chosen : Object.keys(figures)) await figures[name]?.();
