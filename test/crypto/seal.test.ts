import { createCipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  CredentialOpenError,
  MAX_PASSWORD_LENGTH,
  MIN_SEALED_BYTES,
  PasswordPolicyError,
  V2_SEALED_BYTES,
  _sealWithIvForTestVectors,
  openCredential,
  readSealedFormat,
  readSealedKeyVersion,
  sealCredential,
} from '../../activities/crypto/seal';
import { generateTenantKey } from '../../activities/crypto/tenant-key';

interface Vector {
  name: string;
  keyVersion: number;
  tenantId: string;
  ancId: string;
  plaintext: string;
  iv: string;
  sealed: string;
}
const V2_VECTORS = (
  JSON.parse(readFileSync(new URL('./seal-v2-vectors.json', import.meta.url), 'utf8')) as { vectors: Vector[] }
).vectors;

const OPEN_MESSAGE = 'sealed credential could not be opened';

/** Key 00 01 02 … 1f, used by the pinned vectors. */
const VECTOR_KEY = Buffer.from(Array.from({ length: 32 }, (_, i) => i));

const V1_VECTORS = [
  {
    name: 'ASCII, one block, keyVersion 1',
    keyVersion: 1,
    tenantId: 'contoso',
    ancId: 'anc-1',
    plaintext: 'P@ssw0rd!',
    iv: '000102030405060708090a0b0c0d0e0f',
    sealed:
      '0100000001000102030405060708090a0b0c0d0e0f04254d60584d3e7cb295c8a5ebba0ace8de9ac37cf50df4ce4fdd8337db7534660764c9eed1e5b6c17768fe838aca39c',
  },
  {
    name: 'exactly 16 bytes so PKCS#7 adds a full block, GUID ids',
    keyVersion: 7,
    tenantId: '72f988bf-86f1-41af-91ab-2d7cd011db47',
    ancId: 'c5b5f1a2-0f3e-4a4b-9c1d-2e3f4a5b6c7d',
    plaintext: 'exactly sixteen!',
    iv: 'f0e0d0c0b0a090807060504030201000',
    sealed:
      '0100000007f0e0d0c0b0a0908070605040302010002f04c30ff44d325c18ec72721233bb49aba8fec41ddca92e224e5de97b87baff078e79de4289532bbb82741f110f4d5d5153512319d62f05725887c669170fa1',
  },
  {
    name: 'non-ASCII ids and password (emoji, combining accent), keyVersion 2^32-1',
    keyVersion: 0xffff_ffff,
    tenantId: 'ten\u00e4nt',
    ancId: 'anc-\u00fc',
    plaintext: 'p\u00e4ssw\u00f6rd \u{1F510} e\u0301',
    iv: 'ffffffffffffffffffffffffffffffff',
    sealed:
      '01fffffffffffffffffffffffffffffffffffffffffb76d4ce9d4cf0bc0944d6509129b525eee6c18e8f368b5c508c541d1955badd91379ce89cb2e88ee35851df01a60b5a996cd02ffb207854642b3eeaf0ab2032',
  },
] as const;

/**
 * Independent re-implementation of the v2 format straight from its description, taking the
 * already-padded 784-byte plaintext so tests can also forge authentic ciphertexts whose padding
 * is wrong.
 */
function buildV2FromSpec(
  key: Buffer,
  keyVersion: number,
  tenantId: string,
  ancId: string,
  iv: Buffer,
  paddedPlaintext: Buffer,
): Buffer {
  const kdfInput = Buffer.concat([
    Buffer.from([0, 0, 0, 1]),
    Buffer.from('anc-credential/v2/keys'),
    Buffer.from([0, 0, 0, 2, 0]),
  ]);
  const both = createHmac('sha512', key).update(kdfInput).digest();
  const encKey = both.subarray(0, 32);
  const macKey = both.subarray(32);
  const str = (s: string) => {
    const b = Buffer.from(s, 'utf8');
    const len = Buffer.alloc(2);
    len.writeUInt16BE(b.length);
    return Buffer.concat([len, b]);
  };
  const kv = Buffer.alloc(4);
  kv.writeUInt32BE(keyVersion);
  const aad = Buffer.concat([Buffer.from([2]), str(tenantId), str(ancId), kv]);
  const cipher = createCipheriv('aes-256-cbc', encKey, iv).setAutoPadding(false);
  const e = Buffer.concat([cipher.update(paddedPlaintext), cipher.final()]);
  const al = Buffer.alloc(8);
  al.writeBigUInt64BE(BigInt(aad.length * 8));
  const tag = createHmac('sha256', macKey)
    .update(Buffer.concat([aad, iv, e, al]))
    .digest();
  return Buffer.concat([Buffer.from([2]), kv, iv, e, tag]);
}

/** u16be(n) | bytes | zeros to 784. */
function padV2(bytes: Buffer, n = bytes.length): Buffer {
  const p = Buffer.alloc(784);
  p.writeUInt16BE(n);
  bytes.copy(p, 2);
  return p;
}

/**
 * Independent re-implementation of the v1 format straight from its description,
 * taking already-padded plaintext bytes so tests can also forge authentic
 * ciphertexts with bad padding or invalid UTF-8.
 */
function buildFromSpec(
  key: Buffer,
  keyVersion: number,
  tenantId: string,
  ancId: string,
  iv: Buffer,
  paddedPlaintext: Buffer,
): Buffer {
  const sub = (info: string) => Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), info, 32));
  const encKey = sub('anc-credential/v1/enc');
  const macKey = sub('anc-credential/v1/mac');
  const str = (s: string) => {
    const b = Buffer.from(s, 'utf8');
    const len = Buffer.alloc(2);
    len.writeUInt16BE(b.length);
    return Buffer.concat([len, b]);
  };
  const kv = Buffer.alloc(4);
  kv.writeUInt32BE(keyVersion);
  const aad = Buffer.concat([Buffer.from([1]), str(tenantId), str(ancId), kv]);
  const cipher = createCipheriv('aes-256-cbc', encKey, iv).setAutoPadding(false);
  const e = Buffer.concat([cipher.update(paddedPlaintext), cipher.final()]);
  const al = Buffer.alloc(8);
  al.writeBigUInt64BE(BigInt(aad.length * 8));
  const tag = createHmac('sha256', macKey)
    .update(Buffer.concat([aad, iv, e, al]))
    .digest();
  return Buffer.concat([Buffer.from([1]), kv, iv, e, tag]);
}

function pkcs7(data: Buffer): Buffer {
  const n = 16 - (data.length % 16);
  return Buffer.concat([data, Buffer.alloc(n, n)]);
}

const key = generateTenantKey();
const ctx = {
  tenantKey: key,
  keyVersion: 3,
  tenantId: 'tenant-a',
  ancId: 'anc-a',
};
const PASSWORD = 'Correct-Horse-9!';

function expectOpenFails(f: () => unknown): CredentialOpenError {
  let caught: unknown;
  try {
    f();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(CredentialOpenError);
  const err = caught as CredentialOpenError;
  expect(err.message).toBe(OPEN_MESSAGE);
  expect(err.cause).toBeUndefined();
  return err;
}

describe('format v2: pinned test vectors', () => {
  it('has vectors, each 837 bytes', () => {
    expect(V2_VECTORS.length).toBeGreaterThanOrEqual(4);
    for (const v of V2_VECTORS) expect(v.sealed.length / 2, v.name).toBe(V2_SEALED_BYTES);
    expect(V2_SEALED_BYTES).toBe(837);
  });

  for (const v of V2_VECTORS) {
    const args = { tenantKey: VECTOR_KEY, keyVersion: v.keyVersion, tenantId: v.tenantId, ancId: v.ancId };

    it(`seal is byte-for-byte stable: ${v.name}`, () => {
      const sealed = _sealWithIvForTestVectors({ ...args, plaintext: v.plaintext }, Buffer.from(v.iv, 'hex'));
      expect(sealed.toString('hex')).toBe(v.sealed);
    });

    it(`pinned hex opens to the plaintext: ${v.name}`, () => {
      expect(openCredential({ ...args, sealed: Buffer.from(v.sealed, 'hex') })).toBe(v.plaintext);
    });

    it(`pinned hex matches an independent build from the format description: ${v.name}`, () => {
      const rebuilt = buildV2FromSpec(
        VECTOR_KEY,
        v.keyVersion,
        v.tenantId,
        v.ancId,
        Buffer.from(v.iv, 'hex'),
        padV2(Buffer.from(v.plaintext, 'utf8')),
      );
      expect(rebuilt.toString('hex')).toBe(v.sealed);
    });
  }

  it('the default seal is format 2', () => {
    const sealed = sealCredential({ ...ctx, plaintext: PASSWORD });
    expect(sealed[0]).toBe(2);
    expect(readSealedFormat(sealed)).toBe(2);
  });
});

describe('format v2: the size reveals nothing about the password', () => {
  const passwords: Array<[string, string]> = [
    ['1 ASCII character', 'x'],
    ['15 ASCII', 'a'.repeat(15)],
    ['16 ASCII', 'a'.repeat(16)],
    ['24 ASCII', 'Correct-Horse-Battery-9!'],
    ['100 ASCII', 'b'.repeat(100)],
    ['256 ASCII (the longest AD accepts)', 'c'.repeat(MAX_PASSWORD_LENGTH)],
    ['256 three-byte characters (768 UTF-8 bytes)', '\u20ac'.repeat(MAX_PASSWORD_LENGTH)],
    ['128 emoji (256 code units, 512 bytes)', '\u{1F511}'.repeat(MAX_PASSWORD_LENGTH / 2)],
  ];

  it('every password, 1 to 256 code units and 1 to 768 bytes, seals to exactly 837 bytes and opens', () => {
    const sizes = new Set<number>();
    for (const [name, plaintext] of passwords) {
      const sealed = sealCredential({ ...ctx, plaintext });
      sizes.add(sealed.length);
      expect(openCredential({ ...ctx, sealed }), name).toBe(plaintext);
    }
    for (let n = 1; n <= MAX_PASSWORD_LENGTH; n++)
      sizes.add(sealCredential({ ...ctx, plaintext: 'p'.repeat(n) }).length);
    expect([...sizes]).toEqual([V2_SEALED_BYTES]);
  });

  it('a long password sealed before a short one leaves nothing in the short one’s padding', () => {
    // open() refuses any non-zero byte after the password, so a leftover of the long one would fail here.
    const iv = Buffer.alloc(16, 3);
    const long = '\u20ac'.repeat(MAX_PASSWORD_LENGTH);
    expect(openCredential({ ...ctx, sealed: sealCredential({ ...ctx, plaintext: long }) })).toBe(long);
    const short = _sealWithIvForTestVectors({ ...ctx, plaintext: 'ab' }, iv);
    expect(openCredential({ ...ctx, sealed: short })).toBe('ab');
    const rebuilt = buildV2FromSpec(
      ctx.tenantKey,
      ctx.keyVersion,
      ctx.tenantId,
      ctx.ancId,
      iv,
      padV2(Buffer.from('ab')),
    );
    expect(short.equals(rebuilt)).toBe(true);
  });

  it('format 1 sizes differ with the length, which is why format 2 exists', () => {
    const iv = Buffer.alloc(16, 7);
    const short = _sealWithIvForTestVectors({ ...ctx, plaintext: 'x' }, iv, 1);
    const long = _sealWithIvForTestVectors({ ...ctx, plaintext: 'x'.repeat(40) }, iv, 1);
    expect(long.length - short.length).toBe(32);
  });
});

describe('format v1: pinned test vectors still open', () => {
  for (const v of V1_VECTORS) {
    const args = {
      tenantKey: VECTOR_KEY,
      keyVersion: v.keyVersion,
      tenantId: v.tenantId,
      ancId: v.ancId,
    };

    it(`seal is byte-for-byte stable: ${v.name}`, () => {
      const sealed = _sealWithIvForTestVectors({ ...args, plaintext: v.plaintext }, Buffer.from(v.iv, 'hex'), 1);
      expect(sealed.toString('hex')).toBe(v.sealed);
    });

    it(`pinned hex opens to the plaintext: ${v.name}`, () => {
      expect(openCredential({ ...args, sealed: Buffer.from(v.sealed, 'hex') })).toBe(v.plaintext);
    });

    it(`pinned hex matches an independent build from the format description: ${v.name}`, () => {
      const rebuilt = buildFromSpec(
        VECTOR_KEY,
        v.keyVersion,
        v.tenantId,
        v.ancId,
        Buffer.from(v.iv, 'hex'),
        pkcs7(Buffer.from(v.plaintext, 'utf8')),
      );
      expect(rebuilt.toString('hex')).toBe(v.sealed);
    });
  }

  it('test-vector seal refuses an IV that is not 16 bytes', () => {
    expect(() => _sealWithIvForTestVectors({ ...ctx, plaintext: 'x' }, Buffer.alloc(15))).toThrow();
  });
});

describe('round trip', () => {
  const cases: Array<[string, string]> = [
    ['ASCII', PASSWORD],
    ['1 char', 'x'],
    ['unicode: accents, CJK, emoji', 'Pässwörd-密码-🔑🚀'],
    ['combining characters are kept as-is (no normalisation)', 'e\u0301a\u0308\u0301'],
    ['exactly MAX_PASSWORD_LENGTH (256) ASCII code units', 'a'.repeat(MAX_PASSWORD_LENGTH)],
    ['256 code units made of 128 emoji surrogate pairs', '😀'.repeat(MAX_PASSWORD_LENGTH / 2)],
    ['whitespace and NUL are ordinary characters', ' \t\0 '],
  ];
  for (const [name, plaintext] of cases) {
    it(name, () => {
      const sealed = sealCredential({ ...ctx, plaintext });
      expect(openCredential({ ...ctx, sealed })).toBe(plaintext);
    });
  }

  it('format 1: sealed length = 5 + 16 + padded ciphertext + 32', () => {
    const iv = randomBytes(16);
    expect(_sealWithIvForTestVectors({ ...ctx, plaintext: 'x' }, iv, 1).length).toBe(MIN_SEALED_BYTES);
    expect(_sealWithIvForTestVectors({ ...ctx, plaintext: 'a'.repeat(16) }, iv, 1).length).toBe(MIN_SEALED_BYTES + 16);
  });

  for (const [name, plaintext] of cases) {
    it(`format 1 still opens: ${name}`, () => {
      const sealed = _sealWithIvForTestVectors({ ...ctx, plaintext }, randomBytes(16), 1);
      expect(sealed[0]).toBe(1);
      expect(openCredential({ ...ctx, sealed })).toBe(plaintext);
    });
  }
});

describe('precondition: password policy', () => {
  it('empty password is refused with PasswordEmpty', () => {
    const f = () => sealCredential({ ...ctx, plaintext: '' });
    expect(f).toThrow(PasswordPolicyError);
    expect(f).toThrow(expect.objectContaining({ code: 'PasswordEmpty' }));
  });

  it('257 code units is refused with PasswordTooLong', () => {
    const f = () =>
      sealCredential({
        ...ctx,
        plaintext: 'a'.repeat(MAX_PASSWORD_LENGTH + 1),
      });
    expect(f).toThrow(PasswordPolicyError);
    expect(f).toThrow(expect.objectContaining({ code: 'PasswordTooLong' }));
  });

  it('256 emoji (512 code units) is refused: the limit counts UTF-16 code units', () => {
    expect(() => sealCredential({ ...ctx, plaintext: '😀'.repeat(256) })).toThrow(
      expect.objectContaining({ code: 'PasswordTooLong' }),
    );
  });

  it('policy is checked before the other arguments', () => {
    expect(() => sealCredential({ ...ctx, tenantKey: Buffer.alloc(1), plaintext: '' })).toThrow(PasswordPolicyError);
  });

  it('policy error messages never contain the password', () => {
    const long = 'S3cr3t-'.repeat(40);
    let caught: unknown;
    try {
      sealCredential({ ...ctx, plaintext: long });
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(PasswordPolicyError);
    const err = caught as PasswordPolicyError;
    expect(err.code).toBe('PasswordTooLong');
    expect(err.message).not.toContain('S3cr3t');
    expect(String(err.stack)).not.toContain('S3cr3t');
  });

  it('a lone surrogate is refused (it would not survive UTF-8)', () => {
    expect(() => sealCredential({ ...ctx, plaintext: 'ab\uD800c' })).toThrow();
  });
});

describe('precondition: key, key version and ids', () => {
  it('tenant key must be exactly 32 bytes (seal and open)', () => {
    const sealed = sealCredential({ ...ctx, plaintext: PASSWORD });
    for (const n of [0, 16, 31, 33, 64]) {
      expect(() =>
        sealCredential({
          ...ctx,
          tenantKey: Buffer.alloc(n),
          plaintext: PASSWORD,
        }),
      ).toThrow('tenant key must be 32 bytes');
      expect(() => openCredential({ ...ctx, tenantKey: Buffer.alloc(n), sealed })).toThrow(
        'tenant key must be 32 bytes',
      );
    }
  });

  it('keyVersion must be a positive integer < 2^32', () => {
    for (const keyVersion of [0, -1, 1.5, 2 ** 32, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => sealCredential({ ...ctx, keyVersion, plaintext: PASSWORD })).toThrow(Error);
    }
    for (const keyVersion of [1, 2 ** 32 - 1]) {
      const sealed = sealCredential({
        ...ctx,
        keyVersion,
        plaintext: PASSWORD,
      });
      expect(openCredential({ ...ctx, keyVersion, sealed })).toBe(PASSWORD);
    }
  });

  it('tenantId and ancId must be non-empty and at most 255 UTF-8 bytes', () => {
    expect(() => sealCredential({ ...ctx, tenantId: '', plaintext: PASSWORD })).toThrow();
    expect(() => sealCredential({ ...ctx, ancId: '', plaintext: PASSWORD })).toThrow();
    expect(() =>
      sealCredential({
        ...ctx,
        tenantId: 'a'.repeat(256),
        plaintext: PASSWORD,
      }),
    ).toThrow();
    // 128 × 'ä' = 256 UTF-8 bytes though only 128 code units.
    expect(() =>
      sealCredential({
        ...ctx,
        ancId: '\u00e4'.repeat(128),
        plaintext: PASSWORD,
      }),
    ).toThrow();
    const sealed = sealCredential({
      ...ctx,
      tenantId: 'a'.repeat(255),
      plaintext: PASSWORD,
    });
    expect(openCredential({ ...ctx, tenantId: 'a'.repeat(255), sealed })).toBe(PASSWORD);
  });
});

describe('integrity: tampering with the sealed bytes', () => {
  const sealed = sealCredential({ ...ctx, plaintext: PASSWORD });

  it('flipping any single byte (xor 0x01) at every position fails', () => {
    for (let i = 0; i < sealed.length; i++) {
      const bad = Buffer.from(sealed);
      bad[i] = (bad[i] ?? 0) ^ 0x01;
      expectOpenFails(() => openCredential({ ...ctx, sealed: bad }));
    }
  });

  it('truncation to every length 0..len-1 fails', () => {
    for (let n = 0; n < sealed.length; n++) {
      expectOpenFails(() => openCredential({ ...ctx, sealed: sealed.subarray(0, n) }));
    }
  });

  it('extension by one byte fails', () => {
    for (const b of [0x00, 0x10, 0xff]) {
      expectOpenFails(() =>
        openCredential({
          ...ctx,
          sealed: Buffer.concat([sealed, Buffer.from([b])]),
        }),
      );
    }
  });

  it('extension by a whole block fails', () => {
    expectOpenFails(() =>
      openCredential({
        ...ctx,
        sealed: Buffer.concat([sealed, Buffer.alloc(16)]),
      }),
    );
  });
});

describe('binding: wrong AAD or key', () => {
  const sealed = sealCredential({ ...ctx, plaintext: PASSWORD });

  it('other tenantId fails', () => {
    expectOpenFails(() => openCredential({ ...ctx, tenantId: 'tenant-b', sealed }));
  });

  it('other ancId fails', () => {
    expectOpenFails(() => openCredential({ ...ctx, ancId: 'anc-b', sealed }));
  });

  it('other keyVersion fails (header mismatch)', () => {
    expectOpenFails(() => openCredential({ ...ctx, keyVersion: ctx.keyVersion + 1, sealed }));
  });

  it('header keyVersion rewritten to match the caller still fails (keyVersion is in the MAC)', () => {
    const bad = Buffer.from(sealed);
    bad.writeUInt32BE(ctx.keyVersion + 1, 1);
    expectOpenFails(() => openCredential({ ...ctx, keyVersion: ctx.keyVersion + 1, sealed: bad }));
  });

  it('ids are length-prefixed: ("ab","c") does not open as ("a","bc")', () => {
    const s = sealCredential({
      ...ctx,
      tenantId: 'ab',
      ancId: 'c',
      plaintext: PASSWORD,
    });
    expect(openCredential({ ...ctx, tenantId: 'ab', ancId: 'c', sealed: s })).toBe(PASSWORD);
    expectOpenFails(() => openCredential({ ...ctx, tenantId: 'a', ancId: 'bc', sealed: s }));
  });

  it('tenantId and ancId swapped fails', () => {
    expectOpenFails(() =>
      openCredential({
        ...ctx,
        tenantId: ctx.ancId,
        ancId: ctx.tenantId,
        sealed,
      }),
    );
  });

  it('another random tenant key fails', () => {
    expectOpenFails(() => openCredential({ ...ctx, tenantKey: generateTenantKey(), sealed }));
  });
});

describe('freshness: IV per seal', () => {
  it('10,000 seals of the same plaintext have distinct IVs and distinct ciphertexts', () => {
    const ivs = new Set<string>();
    const cts = new Set<string>();
    const N = 10_000;
    for (let i = 0; i < N; i++) {
      const s = sealCredential({ ...ctx, plaintext: PASSWORD });
      ivs.add(s.subarray(5, 21).toString('hex'));
      cts.add(s.subarray(21, s.length - 32).toString('hex'));
    }
    expect(ivs.size).toBe(N);
    expect(cts.size).toBe(N);
  });
});

describe('uniform failure: one error class, one message, no details', () => {
  it('every failure kind throws the same CredentialOpenError and never reveals the plaintext', () => {
    const secret = 'Tr0ub4dor&3-secret';
    const sealed = sealCredential({ ...ctx, plaintext: secret });
    const iv = randomBytes(16);
    const forge = (padded: Buffer) => buildFromSpec(ctx.tenantKey, ctx.keyVersion, ctx.tenantId, ctx.ancId, iv, padded);
    const flip = (i: number) => {
      const b = Buffer.from(sealed);
      b[i] = (b[i] ?? 0) ^ 0x80;
      return b;
    };

    const forge2 = (padded: Buffer) =>
      buildV2FromSpec(ctx.tenantKey, ctx.keyVersion, ctx.tenantId, ctx.ancId, iv, padded);

    // Sanity: the forgers produce something open() accepts.
    expect(openCredential({ ...ctx, sealed: forge(pkcs7(Buffer.from(secret))) })).toBe(secret);
    expect(openCredential({ ...ctx, sealed: forge2(padV2(Buffer.from(secret))) })).toBe(secret);

    const failures: Record<string, () => unknown> = {
      'too short': () =>
        openCredential({
          ...ctx,
          sealed: sealed.subarray(0, MIN_SEALED_BYTES - 1),
        }),
      'ciphertext not a whole number of blocks': () =>
        openCredential({
          ...ctx,
          sealed: Buffer.concat([sealed, Buffer.alloc(3)]),
        }),
      'wrong version byte': () => openCredential({ ...ctx, sealed: flip(0) }),
      'key version mismatch': () => openCredential({ ...ctx, keyVersion: 99, sealed }),
      'bad tag': () => openCredential({ ...ctx, sealed: flip(sealed.length - 1) }),
      'bad ciphertext': () => openCredential({ ...ctx, sealed: flip(30) }),
      'wrong key': () => openCredential({ ...ctx, tenantKey: generateTenantKey(), sealed }),
      // Authentic (correct MAC) but malformed inside: only reachable with the key.
      'bad padding (0x00)': () =>
        openCredential({
          ...ctx,
          sealed: forge(Buffer.concat([Buffer.from(secret.slice(0, 15)), Buffer.from([0])])),
        }),
      'bad padding (0x11)': () => openCredential({ ...ctx, sealed: forge(Buffer.alloc(16, 0x11)) }),
      'invalid UTF-8': () =>
        openCredential({
          ...ctx,
          sealed: forge(pkcs7(Buffer.from([0x61, 0xff, 0xfe]))),
        }),
      'v2: length prefix 0': () => openCredential({ ...ctx, sealed: forge2(padV2(Buffer.alloc(0))) }),
      'v2: length prefix beyond the longest password': () =>
        openCredential({ ...ctx, sealed: forge2(padV2(Buffer.from(secret), 769)) }),
      'v2: length prefix shorter than the bytes (non-zero fill)': () =>
        openCredential({ ...ctx, sealed: forge2(padV2(Buffer.from(secret), 4)) }),
      'v2: invalid UTF-8': () => openCredential({ ...ctx, sealed: forge2(padV2(Buffer.from([0x61, 0xff]))) }),
      'v2 bytes with a v1 header': () =>
        openCredential({ ...ctx, sealed: Buffer.concat([Buffer.from([1]), sealed.subarray(1)]) }),
      'v1 bytes with a v2 header': () => {
        const v1 = forge(pkcs7(Buffer.from(secret)));
        v1[0] = 2;
        return openCredential({ ...ctx, sealed: v1 });
      },
      'truncated UTF-8 sequence': () =>
        openCredential({
          ...ctx,
          sealed: forge(pkcs7(Buffer.from([0xf0, 0x9f]))),
        }),
    };

    const seen = new Set<string>();
    for (const [kind, f] of Object.entries(failures)) {
      const err = expectOpenFails(f);
      expect(Object.getPrototypeOf(err), kind).toBe(CredentialOpenError.prototype);
      expect(Object.keys(err), kind).toEqual([]);
      expect(err.message, kind).not.toContain(secret);
      expect(String(err.stack), kind).not.toContain(secret);
      seen.add(`${err.name}|${err.message}`);
    }
    expect([...seen]).toEqual([`CredentialOpenError|${OPEN_MESSAGE}`]);
  });
});

describe('readSealedKeyVersion', () => {
  it('reads the key version from the header', () => {
    for (const keyVersion of [1, 3, 0x0102_0304, 2 ** 32 - 1]) {
      const sealed = sealCredential({
        ...ctx,
        keyVersion,
        plaintext: PASSWORD,
      });
      expect(readSealedKeyVersion(sealed)).toBe(keyVersion);
    }
  });

  it('reads the pinned vectors', () => {
    for (const v of [...V1_VECTORS, ...V2_VECTORS]) {
      expect(readSealedKeyVersion(Buffer.from(v.sealed, 'hex'))).toBe(v.keyVersion);
    }
    for (const v of V1_VECTORS) expect(readSealedFormat(Buffer.from(v.sealed, 'hex'))).toBe(1);
    for (const v of V2_VECTORS) expect(readSealedFormat(Buffer.from(v.sealed, 'hex'))).toBe(2);
  });

  it('rejects input that cannot be a sealed credential with CredentialOpenError', () => {
    const sealed = sealCredential({ ...ctx, plaintext: PASSWORD });
    expectOpenFails(() => readSealedKeyVersion(Buffer.alloc(0)));
    expectOpenFails(() => readSealedKeyVersion(sealed.subarray(0, MIN_SEALED_BYTES - 1)));
    // A v2 header on anything but 837 bytes.
    expectOpenFails(() => readSealedKeyVersion(sealed.subarray(0, V2_SEALED_BYTES - 16)));
    for (const version of [0, 3, 0xff]) {
      const other = Buffer.from(sealed);
      other[0] = version;
      expectOpenFails(() => readSealedKeyVersion(other));
    }
  });
});
