import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { AzureKeyVaultKekProvider } from '../../activities/kek/azure-key-vault';
import { AzureKeyVaultCertificateKekProvider } from '../../activities/kek/azure-key-vault-certificate';
import { SlidingWindowLimiter } from '../../activities/kek/rate-limiter';
import type { EmulatorStats, FaultSpec, FaultStatus } from '../../stack/keyvault-emulator/server';
import { emulatorCredential } from '../../worker/kek';
import { selfSignedCert } from './certs';
import { ROOT } from './stack';

/**
 * A Key Vault emulator of a test file's own: `stack/keyvault-emulator/main.ts` (what stack/up.sh runs) in a child
 * process, on a free port, with a throw-away certificate. Its statistics and fault queue are global to the process,
 * so a private one keeps other test files' requests out of the counts and away from the faults injected.
 * It is driven only through its HTTP control endpoints, as an out-of-process client would.
 */
export interface EmulatorProcess {
  url: string;
  /** The process started (a tsx launcher; the emulator runs in it or in its child). */
  pid: number;
  /** The emulator's self-signed certificate, to trust as a CA. */
  caPem: string;
  /** Its private key, to serve the same certificate from another (in-process) emulator. */
  keyPem: string;
  stats(): Promise<EmulatorStats>;
  /** Clears queued faults and statistics; keys are kept. */
  reset(): Promise<void>;
  /** The next `count` authenticated vault requests fail with `status`. */
  faults(count: number, status: FaultStatus, retryAfterSeconds?: number): Promise<void>;
  /** Moves the emulator's clock forward (its AutoRenew actions run); returns its new time (ms). */
  advanceClock(seconds: number): Promise<number>;
  /** The emulator's test CA (PEM), which issues certificates of any issuer other than Self. */
  testCaPem(): Promise<string>;
  /** From now on a `share` of vault requests fail with one of `faults` (0 stops it). */
  faultShare(share: number, faults: FaultSpec[], seed?: number): Promise<void>;
  /** Stops the process and removes its certificate. */
  stop(): Promise<void>;
}

/**
 * `testCa`: the certificate and key files of the CA that issues its non-Self KEK certificates (e.g.
 * the stack's, so clients trusting the stack's KEK CA trust this emulator's KEKs too); a fresh one
 * when absent.
 */
export async function startEmulatorProcess(
  opts: { testCa?: { certPath: string; keyPath: string } } = {},
): Promise<EmulatorProcess> {
  const cert = selfSignedCert('kv-emulator-process-');
  const caArgs = opts.testCa ? ['--ca-cert', opts.testCa.certPath, '--ca-key', opts.testCa.keyPath] : [];
  const child: ChildProcess = spawn(
    join(ROOT, 'node_modules', '.bin', 'tsx'),
    [
      join(ROOT, 'stack/keyvault-emulator/main.ts'),
      ...['--port', '0', '--cert', cert.certPath, '--key', cert.keyPath],
      ...caArgs,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /listening on (https:\/\/\S+)\n/.exec(out);
      if (m?.[1]) resolve(m[1]);
    });
    child.once('exit', (code) =>
      reject(new Error(`the Key Vault emulator exited (${code}) before listening: ${stderr}`)),
    );
  });

  const control = (method: 'GET' | 'POST', path: string, body?: unknown): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const req = request(
        new URL(path, url),
        { method, ca: cert.certPem, headers: payload ? { 'content-type': 'application/json' } : {} },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => {
            if (res.statusCode !== 200) reject(new Error(`${method} ${path}: HTTP ${res.statusCode} ${text}`));
            else resolve(JSON.parse(text));
          });
        },
      );
      req.on('error', reject);
      req.end(payload);
    });

  return {
    url,
    pid: child.pid as number,
    caPem: cert.certPem,
    keyPem: cert.keyPem,
    stats: async () => (await control('GET', '/_emulator/stats')) as EmulatorStats,
    reset: async () => {
      await control('POST', '/_emulator/reset', {});
    },
    faults: async (count, status, retryAfterSeconds) => {
      await control('POST', '/_emulator/faults', {
        count,
        status,
        ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds }),
      });
    },
    advanceClock: async (seconds) =>
      ((await control('POST', '/_emulator/clock', { advanceSeconds: seconds })) as { nowMs: number }).nowMs,
    testCaPem: async () => ((await control('GET', '/_emulator/ca')) as { pem: string }).pem,
    faultShare: async (share, faults, seed) => {
      await control('POST', '/_emulator/fault-share', { share, faults, ...(seed === undefined ? {} : { seed }) });
    },
    async stop() {
      child.kill('SIGTERM');
      await exited;
      rmSync(cert.dir, { recursive: true, force: true });
    },
  };
}

/**
 * An AzureKeyVaultKekProvider talking HTTPS to the Key Vault emulator at `vault.url`, trusting `vault.caPem`
 * (an {@link EmulatorProcess}, or any emulator serving that certificate); a fresh key name unless one is given.
 */
export function azureEmulatorKek(
  vault: { url: string; caPem: string },
  opts: { keyName?: string; hsmOpsPerSecond?: number } = {},
): AzureKeyVaultKekProvider {
  return new AzureKeyVaultKekProvider({
    vaultUrl: vault.url,
    keyName: opts.keyName ?? `kek-${randomBytes(6).toString('hex')}`,
    keySize: 2048,
    credential: emulatorCredential,
    limiter: new SlidingWindowLimiter(opts.hsmOpsPerSecond ?? 1000),
    trustedCaPem: vault.caPem,
    disableChallengeResourceVerification: true,
  });
}

/** The certificate-mode KEK on the emulator: a fresh certificate name unless one is given. */
export function azureEmulatorCertificateKek(
  vault: { url: string; caPem: string },
  opts: { keyName?: string; hsmOpsPerSecond?: number; issuerName?: string; subject?: string } = {},
): AzureKeyVaultCertificateKekProvider {
  const keyName = opts.keyName ?? `kek-${randomBytes(6).toString('hex')}`;
  return new AzureKeyVaultCertificateKekProvider({
    vaultUrl: vault.url,
    keyName,
    keySize: 2048,
    credential: emulatorCredential,
    limiter: new SlidingWindowLimiter(opts.hsmOpsPerSecond ?? 1000),
    trustedCaPem: vault.caPem,
    disableChallengeResourceVerification: true,
    issuerName: opts.issuerName ?? 'anc-test-ca',
    subject: opts.subject ?? `CN=${keyName}`,
    pollIntervalMs: 20,
  });
}
