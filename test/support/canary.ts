/** The forms a secret could take in a sink: UTF-8, UTF-16LE, hex, and base64/base64url at each alignment. */
export function canaryForms(secret: string): string[] {
  const utf8 = Buffer.from(secret, 'utf8');
  const forms = [secret, Buffer.from(secret, 'utf16le').toString('latin1'), utf8.toString('hex')];
  for (let shift = 0; shift < 3; shift++) {
    for (const enc of ['base64', 'base64url'] as const) {
      const encoded = Buffer.concat([Buffer.alloc(shift), utf8]).toString(enc);
      // Drop the characters that depend on the unknown neighbouring bytes.
      forms.push(encoded.slice(Math.ceil((shift * 4) / 3) + 1, -3));
    }
  }
  return forms;
}

/** The forms of a canary found in a haystack (forms shorter than 8 characters are too likely by chance). */
export function findCanary(haystack: string, forms: string[]): string[] {
  return forms.filter((f) => f.length >= 8 && haystack.includes(f));
}
