/**
 * Sealing and opening a stored credential (activities/crypto/seal.ts, format 2) against a bare
 * encrypt-then-MAC loop over the same passwords: AES-256-CBC + HMAC-SHA256 with keys derived once,
 * outside the loop. The key derivation the real format does on every call is timed on its own, so its
 * share is visible (with format 1's HKDF beside it). Rounds interleave the candidates and the median
 * round is reported (process CPU time per operation, with wall-clock time beside it); nothing is asserted.
 *
 * Fairness: every candidate starts from the same password strings (seal) or sealed bytes (open) and
 * ends with the same kind of result (one Buffer holding IV, ciphertext and tag; the password as a
 * string). The seal's argument objects are built once, outside the loop, as the bare loop's keys are.
 * Both draw IVs the same way, from a batch of CSPRNG bytes refilled every 256 seals; the bare loop with
 * one randomBytes(16) call per seal is shown too.
 *   npx tsx test/bench/seal.ts        (part of `npm run bench`; needs no running services)
 */
import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  hkdfSync,
  randomBytes,
  randomFillSync,
  timingSafeEqual,
} from 'node:crypto';
import { cpus, loadavg } from 'node:os';
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
// Format 2's key derivation input (activities/crypto/seal.ts): SP 800-108 counter mode, one iteration.
const KDF_INPUT = Buffer.concat([
  Buffer.from([0, 0, 0, 1]),
  Buffer.from('anc-credential/v2/keys'),
  Buffer.from([0, 0, 0, 2, 0]),
]);
// The bare loop's keys are derived once, outside the timed loop.
const encKey = randomBytes(32);
const macKey = randomBytes(32);

// IVs in batches, as activities/crypto/seal.ts draws them.
const ivPool = Buffer.alloc(16 * 256);
let ivOffset = ivPool.length;
function pooledIv(out: Buffer): void {
  if (ivOffset === ivPool.length) {
    randomFillSync(ivPool);
    ivOffset = 0;
  }
  ivOffset += ivPool.copy(out, 0, ivOffset, ivOffset + 16);
}
function freshIv(out: Buffer): void {
  randomBytes(16).copy(out, 0);
}

/** iv | AES-256-CBC(PKCS#7(UTF-8(password))) | HMAC-SHA256(iv | ciphertext). */
function bareSeal(password: string, iv: (out: Buffer) => void = pooledIv): Buffer {
  const pt = Buffer.from(password, 'utf8');
  const ctLen = (Math.floor(pt.length / 16) + 1) * 16;
  const out = Buffer.allocUnsafe(16 + ctLen + 32);
  iv(out);
  const c = createCipheriv('aes-256-cbc', encKey, out.subarray(0, 16));
  const n = c.update(pt).copy(out, 16);
  c.final().copy(out, 16 + n);
  createHmac('sha256', macKey)
    .update(out.subarray(0, 16 + ctLen))
    .digest()
    .copy(out, 16 + ctLen);
  return out;
}

/** The same passwords padded the way format 2 pads them (u16 length, UTF-8, zeros to 784 bytes), no PKCS#7. */
const padScratch = Buffer.alloc(V2_PLAINTEXT_BYTES);
function bareSealPadded(password: string, iv: (out: Buffer) => void = pooledIv): Buffer {
  const n = padScratch.write(password, 2, 'utf8');
  padScratch.writeUInt16BE(n, 0);
  const out = Buffer.allocUnsafe(16 + V2_PLAINTEXT_BYTES + 32);
  iv(out);
  const c = createCipheriv('aes-256-cbc', encKey, out.subarray(0, 16));
  c.setAutoPadding(false);
  c.update(padScratch).copy(out, 16);
  padScratch.fill(0, 0, 2 + n);
  createHmac('sha256', macKey)
    .update(out.subarray(0, 16 + V2_PLAINTEXT_BYTES))
    .digest()
    .copy(out, 16 + V2_PLAINTEXT_BYTES);
  return out;
}

function bareOpen(sealed: Buffer): string {
  const ctEnd = sealed.length - 32;
  const tag = createHmac('sha256', macKey).update(sealed.subarray(0, ctEnd)).digest();
  if (!timingSafeEqual(tag, sealed.subarray(ctEnd))) throw new Error('bad tag');
  const d = createDecipheriv('aes-256-cbc', encKey, sealed.subarray(0, 16));
  return Buffer.concat([d.update(sealed.subarray(16, ctEnd)), d.final()]).toString('utf8');
}

function bareOpenPadded(sealed: Buffer): string {
  const ctEnd = sealed.length - 32;
  const tag = createHmac('sha256', macKey).update(sealed.subarray(0, ctEnd)).digest();
  if (!timingSafeEqual(tag, sealed.subarray(ctEnd))) throw new Error('bad tag');
  const d = createDecipheriv('aes-256-cbc', encKey, sealed.subarray(0, 16));
  d.setAutoPadding(false);
  const pt = d.update(sealed.subarray(16, ctEnd));
  return pt.toString('utf8', 2, 2 + pt.readUInt16BE(0));
}

const P = PASSWORDS.length;
const bareSealedRaw = PASSWORDS.map((p) => bareSeal(p));
const bareSealedPad = PASSWORDS.map((p) => bareSealPadded(p));
const sealArgs = PASSWORDS.map((plaintext) => ({ ...ctx, plaintext }));
const openArgs = sealArgs.map((a) => ({ ...ctx, sealed: sealCredential(a) }));
for (let i = 0; i < P; i++) {
  // The candidates must agree before they are timed.
  const want = PASSWORDS[i];
  if (
    bareOpen(bareSealedRaw[i] as Buffer) !== want ||
    bareOpenPadded(bareSealedPad[i] as Buffer) !== want ||
    openCredential(openArgs[i] as (typeof openArgs)[number]) !== want
  ) {
    throw new Error('a candidate does not round-trip');
  }
}

const BARE_SEAL = 'bare encrypt-then-MAC, seal (same passwords)';
const BARE_SEAL_PAD = 'bare encrypt-then-MAC, seal (passwords padded to 784 B)';
const BARE_SEAL_PAD_FRESH = '  ... padded, one randomBytes(16) call per IV';
const SEAL = 'sealCredential (KDF + pad + CBC + HMAC)';
const KDF2 = 'key derivation alone (format 2: one HMAC-SHA512)';
const KDF1 = "key derivation alone (format 1's two HKDF-SHA256)";
const BARE_OPEN = 'bare encrypt-then-MAC, open (same passwords)';
const BARE_OPEN_PAD = 'bare encrypt-then-MAC, open (passwords padded to 784 B)';
const OPEN = 'openCredential (KDF + HMAC check + CBC + unpad)';

const candidates: Record<string, (i: number) => unknown> = {
  [BARE_SEAL]: (i) => bareSeal(PASSWORDS[i % P] as string),
  [BARE_SEAL_PAD]: (i) => bareSealPadded(PASSWORDS[i % P] as string),
  [BARE_SEAL_PAD_FRESH]: (i) => bareSealPadded(PASSWORDS[i % P] as string, freshIv),
  [SEAL]: (i) => sealCredential(sealArgs[i % P] as (typeof sealArgs)[number]),
  [KDF2]: () => createHmac('sha512', tenantKey).update(KDF_INPUT).digest(),
  [KDF1]: () => [
    hkdfSync('sha256', tenantKey, Buffer.alloc(0), 'anc-credential/v1/enc', 32),
    hkdfSync('sha256', tenantKey, Buffer.alloc(0), 'anc-credential/v1/mac', 32),
  ],
  [BARE_OPEN]: (i) => bareOpen(bareSealedRaw[i % P] as Buffer),
  [BARE_OPEN_PAD]: (i) => bareOpenPadded(bareSealedPad[i % P] as Buffer),
  [OPEN]: (i) => openCredential(openArgs[i % P] as (typeof openArgs)[number]),
};

/** One round of OPS calls: [wall-clock µs per op, process CPU µs per op]. */
function timeOnce(fn: (i: number) => unknown): [number, number] {
  const cpu = process.cpuUsage();
  const start = performance.now();
  for (let i = 0; i < OPS; i++) fn(i);
  const wall = ((performance.now() - start) * 1000) / OPS;
  const used = process.cpuUsage(cpu);
  return [wall, (used.user + used.system) / OPS];
}

export function sealingBench(): void {
  const names = Object.keys(candidates);
  for (const name of names) timeOnce(candidates[name] as (i: number) => unknown); // warm-up
  const wall = new Map<string, number[]>(names.map((n) => [n, []]));
  const cpu = new Map<string, number[]>(names.map((n) => [n, []]));
  for (let r = 0; r < ROUNDS; r++) {
    // Interleaved, in a different order each round.
    const order = r % 2 === 0 ? names : [...names].reverse();
    for (const name of order) {
      const [w, c] = timeOnce(candidates[name] as (i: number) => unknown);
      wall.get(name)?.push(w);
      cpu.get(name)?.push(c);
    }
  }
  const med = (m: Map<string, number[]>, name: string): number => {
    const s = [...(m.get(name) ?? [])].sort((a, b) => a - b);
    return s[Math.floor(s.length / 2)] as number;
  };
  // CPU time, not wall-clock time, for the ratios: on a shared machine a round's wall-clock time also
  // counts the time the process waited for a core.
  const median = (name: string): number => med(cpu, name);
  console.log(
    `Sealing a stored credential vs a bare encrypt-then-MAC loop (${P} passwords of 8-256 characters,` +
      ` ${OPS} ops x ${ROUNDS} interleaved rounds, median round; ${cpus()[0]?.model ?? 'cpu'}, node ${process.version},` +
      ` load average ${loadavg()[0]?.toFixed(1)})`,
  );
  console.log(`  ${'(µs per operation)'.padEnd(58)} ${'CPU'.padStart(8)} ${'wall'.padStart(8)}`);
  for (const name of names) {
    console.log(
      `  ${name.padEnd(58)} ${median(name).toFixed(2).padStart(8)} ${med(wall, name).toFixed(2).padStart(8)}`,
    );
  }
  const seal = median(SEAL);
  const open = median(OPEN);
  const kdf = median(KDF2);
  const r = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
  console.log(`  => seal vs bare loop (same passwords):      ${r(seal, median(BARE_SEAL))}`);
  console.log(`  => seal vs bare loop (padded passwords):    ${r(seal, median(BARE_SEAL_PAD))}`);
  console.log(`  => open vs bare loop (same passwords):      ${r(open, median(BARE_OPEN))}`);
  console.log(`  => open vs bare loop (padded passwords):    ${r(open, median(BARE_OPEN_PAD))}`);
  console.log(
    `  => key derivation share: ${((kdf / seal) * 100).toFixed(0)}% of a seal, ${((kdf / open) * 100).toFixed(0)}% of an open;` +
      ` without it, vs the padded bare loop: seal ${r(seal - kdf, median(BARE_SEAL_PAD))},` +
      ` open ${r(open - kdf, median(BARE_OPEN_PAD))}; format 1's HKDF derivations cost ${r(median(KDF1), kdf)} format 2's\n`,
  );
}

if (process.argv[1]?.endsWith('seal.ts')) sealingBench();
