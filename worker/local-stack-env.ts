import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

// Light on purpose: the CLI loads it before anything else (see client/cli.ts).

/** The project's folder (the one with package.json), from source, dist/ or a bundle alike. */
export function projectRoot(): string {
  let dir = fileURLToPath(new URL('.', import.meta.url));
  for (let i = 0; i < 4; i++) {
    if (existsSync(`${dir}package.json`)) return dir;
    dir = fileURLToPath(new URL('..', `file://${dir}`));
  }
  return fileURLToPath(new URL('..', import.meta.url));
}

/**
 * For local development, `.stack/env` (written by stack/up.sh) fills in what the environment does
 * not set. Production sets everything explicitly and has no such file.
 */
export function loadLocalStackEnv(env: NodeJS.ProcessEnv = process.env): void {
  const file = env.ANC_STACK_ENV ?? `${projectRoot()}.stack/env`;
  if (!existsSync(file)) return;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m && m[1] && env[m[1]] === undefined) env[m[1]] = m[2];
  }
}
