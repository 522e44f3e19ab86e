/**
 * Sealing and opening a stored credential (activities/crypto/seal.ts, format 2) against a bare
 * encrypt-then-MAC loop over the same passwords: AES-256-CBC + HMAC-SHA256 with keys derived once,
 * outside the loop. The key derivation the real format does on every call is timed on its own, so its
 * share is visible (with format 1's HKDF beside it). Rounds interleave the candidates and the median round is reported; nothing is
 * asserted.
 *   npx tsx test/bench/seal.ts        (part of `npm run bench`; needs no running services)
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import { V2_PLAINTEXT_BYTES, openCredential, sealCredential } from '../../activities/crypto/seal';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 41);
const OPS = Number(process.env.BENCH_OPS ?? 2_000);

// Passwords of the lengths people and generators use, cycled through by every candidate.
const PASSWORDS = [8, 12, 16, 24, 32, 64, 128, 256].map((n, i) =>
  Array.from({ length: n }, (_, j) => String.fromCharCode(33 + ((i * 7 + j * 13) % 94))).join(''),
);
const tenantKey = randomBytes(32);
const ctx = { tenantKey, keyVersion: 3, tenantId: 'tenant-bench', ancId: 'anc-bench' };
// The bare loop's keys are derived once, outside the timed loop.
const encKey = randomBytes(32);
// Format 2's key derivation input (activities/crypto/seal.ts): SP 800-108 counter mode, one iteration.
const KDF_INPUT = Buffer.concat([
  Buffer.from([0, 0, 0, 1]),
  Buffer.from('anc-credential/v2/keys'),
  Buffer.from([0, 0, 0, 2, 0]),
]);
const macKey = randomBytes(32);

function bareSeal(plaintext: Buffer): Buffer {
  const iv = randomBytes(16);
  const c = createCipheriv('aes-256-cbc', encKey, iv);
  const ct = Buffer.concat([c.update(plaintext), c.final()]);
  const tag = createHmac('sha256', macKey).update(iv).update(ct).digest();
  return Buffer.concat([iv, ct, tag]);
}

function bareOpen(sealed: Buffer): Buffer {
  const iv = sealed.subarray(0, 16);
  const ct = sealed.subarray(16, sealed.length - 32);
  const tag = createHmac('sha256', macKey).update(iv).update(ct).digest();
  if (!timingSafeEqual(tag, sealed.subarray(sealed.length - 32))) throw new Error('bad tag');
  const d = createDecipheriv('aes-256-cbc', encKey, iv);
  return Buffer.concat([d.update(ct), d.final()]);
}

/** The same passwords, padded the way format 2 pads them (length prefix, zeros to 784 bytes). */
function padded(password: string): Buffer {
  const b = Buffer.alloc(V2_PLAINTEXT_BYTES);
  b.writeUInt16BE(b.write(password, 2, 'utf8'));
  return b;
}

const raw = PASSWORDS.map((p) => Buffer.from(p, 'utf8'));
const pad = PASSWORDS.map(padded);
const bareSealedRaw = raw.map(bareSeal);
const bareSealedPad = pad.map(bareSeal);
const sealed = PASSWORDS.map((plaintext) => sealCredential({ ...ctx, plaintext }));

const candidates: Record<string, (i: number) => unknown> = {
  'bare encrypt-then-MAC, seal (same passwords)': (i) => bareSeal(raw[i % raw.length] as Buffer),
  'bare encrypt-then-MAC, seal (passwords padded to 784 B)': (i) => bareSeal(pad[i % pad.length] as Buffer),
  'sealCredential (KDF + pad + CBC + HMAC)': (i) => sealCredential({ ...ctx, plaintext: PASSWORDS[i % 8] as string }),
  'key derivation alone (format 2: one HMAC-SHA512)': () => createHmac('sha512', tenantKey).update(KDF_INPUT).digest(),
  "key derivation alone (format 1's two HKDF-SHA256)": () => [
    hkdfSync('sha256', tenantKey, Buffer.alloc(0), 'anc-credential/v1/enc', 32),
    hkdfSync('sha256', tenantKey, Buffer.alloc(0), 'anc-credential/v1/mac', 32),
  ],
  'bare encrypt-then-MAC, open (same passwords)': (i) => bareOpen(bareSealedRaw[i % raw.length] as Buffer),
  'bare encrypt-then-MAC, open (passwords padded to 784 B)': (i) => bareOpen(bareSealedPad[i % pad.length] as Buffer),
  'openCredential (KDF + HMAC check + CBC + unpad)': (i) => openCredential({ ...ctx, sealed: sealed[i % 8] as Buffer }),
};

function timeOnce(fn: (i: number) => unknown): number {
  const start = performance.now();
  for (let i = 0; i < OPS; i++) fn(i);
  return ((performance.now() - start) * 1000) / OPS; // µs per op
}

export function sealingBench(): void {
  const names = Object.keys(candidates);
  for (const name of names) timeOnce(candidates[name] as (i: number) => unknown); // warm-up
  const samples = new Map<string, number[]>(names.map((n) => [n, []]));
  for (let r = 0; r < ROUNDS; r++) {
    // Interleaved, in a different order each round.
    const order = r % 2 === 0 ? names : [...names].reverse();
    for (const name of order) samples.get(name)?.push(timeOnce(candidates[name] as (i: number) => unknown));
  }
  const median = (name: string): number => {
    const s = [...(samples.get(name) ?? [])].sort((a, b) => a - b);
    return s[Math.floor(s.length / 2)] as number;
  };
  console.log(
    `Sealing a stored credential vs a bare encrypt-then-MAC loop (${PASSWORDS.length} passwords of 8-256 characters,` +
      ` ${OPS} ops x ${ROUNDS} interleaved rounds, median round; ${cpus()[0]?.model ?? 'cpu'}, node ${process.version})`,
  );
  for (const name of names) console.log(`  ${name.padEnd(58)} ${median(name).toFixed(2).padStart(8)} µs/op`);
  const seal = median('sealCredential (KDF + pad + CBC + HMAC)');
  const open = median('openCredential (KDF + HMAC check + CBC + unpad)');
  const hkdf = median('key derivation alone (format 2: one HMAC-SHA512)');
  const v1Kdf = median("key derivation alone (format 1's two HKDF-SHA256)");
  const r = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
  console.log(`  => seal vs bare loop (same passwords):      ${r(seal, median(names[0] as string))}`);
  console.log(`  => seal vs bare loop (padded passwords):    ${r(seal, median(names[1] as string))}`);
  console.log(`  => open vs bare loop (same passwords):      ${r(open, median(names[5] as string))}`);
  console.log(`  => open vs bare loop (padded passwords):    ${r(open, median(names[6] as string))}`);
  console.log(
    `  => key derivation share: ${((hkdf / seal) * 100).toFixed(0)}% of a seal, ${((hkdf / open) * 100).toFixed(0)}% of an open;` +
      ` seal without it vs bare loop (same passwords): ${r(seal - hkdf, median(names[0] as string))};` +
      ` format 1's HKDF derivations cost ${r(v1Kdf, hkdf)} format 2's\n`,
  );
}

if (process.argv[1]?.endsWith('seal.ts')) sealingBench();
