import { describe, expect, it } from 'vitest';
import {
  TENANT_KEY_VALIDITY_MONTHS,
  generateTenantKey,
  tenantKeyExpiry,
  zero,
} from '../../activities/crypto/tenant-key';

describe('generateTenantKey', () => {
  it('is 32 bytes', () => {
    const k = generateTenantKey();
    expect(Buffer.isBuffer(k)).toBe(true);
    expect(k.length).toBe(32);
  });

  it('two keys differ', () => {
    expect(generateTenantKey().equals(generateTenantKey())).toBe(false);
  });
});

describe('tenantKeyExpiry: +12 calendar months, UTC', () => {
  const cases: Array<[string, string]> = [
    ['2025-03-15T10:20:30.456Z', '2026-03-15T10:20:30.456Z'],
    ['2025-01-31T00:00:00.000Z', '2026-01-31T00:00:00.000Z'],
    ['2028-02-29T12:00:00.000Z', '2029-02-28T12:00:00.000Z'],
    ['2027-02-28T23:59:59.999Z', '2028-02-28T23:59:59.999Z'],
    ['2025-12-31T23:59:59.999Z', '2026-12-31T23:59:59.999Z'],
  ];
  it('validity is 12 months', () => {
    expect(TENANT_KEY_VALIDITY_MONTHS).toBe(12);
  });
  for (const [from, to] of cases) {
    it(`${from} -> ${to}`, () => {
      expect(tenantKeyExpiry(new Date(from)).toISOString()).toBe(to);
    });
  }
  it('does not mutate its input', () => {
    const d = new Date('2025-01-31T00:00:00Z');
    tenantKeyExpiry(d);
    expect(d.toISOString()).toBe('2025-01-31T00:00:00.000Z');
  });
  it('rejects an invalid date', () => {
    expect(() => tenantKeyExpiry(new Date('nope'))).toThrow();
  });
});

describe('zero', () => {
  it('zeroes a Buffer in place', () => {
    const b = Buffer.from([1, 2, 3, 255]);
    zero(b);
    expect([...b]).toEqual([0, 0, 0, 0]);
  });
  it('zeroes a Uint8Array in place', () => {
    const u = new Uint8Array([9, 9, 9]);
    zero(u);
    expect([...u]).toEqual([0, 0, 0]);
  });
  it('tolerates undefined', () => {
    expect(() => zero(undefined)).not.toThrow();
  });
});
