import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface StackEnv {
  DATABASE_URL: string;
  KEYVAULT_URL: string;
  KEYVAULT_CA: string;
  TEMPORAL_CLI: string;
  TEMPORAL_TEST_SERVER: string;
  LDAP_URL?: string;
}

/**
 * The services stack/up.sh started. A missing service is a failure that says which one and how to
 * start it, never a skip.
 */
export function stackEnv(): StackEnv {
  const file = `${ROOT}.stack/env`;
  if (!existsSync(file))
    throw new Error(`no ${file}: run "bash stack/up.sh" (npm test does) to start the local services`);
  const env: Record<string, string> = {};
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m && m[1] && m[2] !== undefined) env[m[1]] = m[2];
  }
  for (const name of ['DATABASE_URL', 'KEYVAULT_URL', 'KEYVAULT_CA', 'TEMPORAL_CLI', 'TEMPORAL_TEST_SERVER']) {
    if (!env[name]) throw new Error(`${file} has no ${name}: the stack did not start completely`);
  }
  return env as unknown as StackEnv;
}

/** What clients of the local stack trust: the test CA stack/up.sh made, for the KEK certificate's subject. */
export function stackKekTrust(): { trustAnchorPem: string; subject: string } {
  const file = `${ROOT}.stack/keyvault/kek-ca.pem`;
  if (!existsSync(file)) throw new Error(`no ${file}: run "bash stack/up.sh" to create the local test CA`);
  return { trustAnchorPem: readFileSync(file, 'utf8'), subject: 'CN=anc-credential-kek' };
}

/**
 * The Temporal CLI for dev servers that tests and benchmarks start, with the server's start-up banner
 * (printed on stdout once per server) sent to /dev/null so it does not fill the test output. Errors
 * still reach stderr.
 */
export function quietTemporalCli(): string {
  const cli = stackEnv().TEMPORAL_CLI;
  const dir = `${ROOT}.stack/run`;
  const wrapper = `${dir}/temporal-quiet`;
  const script = `#!/bin/sh\nexec '${cli.replace(/'/g, "'\\''")}' "$@" >/dev/null\n`;
  if (!existsSync(wrapper) || readFileSync(wrapper, 'utf8') !== script) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(`${wrapper}.tmp${process.pid}`, script);
    chmodSync(`${wrapper}.tmp${process.pid}`, 0o755);
    renameSync(`${wrapper}.tmp${process.pid}`, wrapper);
  }
  return wrapper;
}
