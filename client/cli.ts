#!/usr/bin/env -S npx tsx
/**
 * `anc`: the operators' CLI. Run it as `npm run anc -- <command> ...`, `npx tsx client/cli.ts ...`
 * or, once linked (`npm link`), `anc ...`. `anc --help` lists the commands and exit codes.
 * The program itself is client/cli-program.ts; this file only wires it to the process.
 */
import { loadLocalStackEnv } from '../worker/local-stack-env';
import type { TemporalSdk } from './cli-env';
import { promptHidden, readFirstLine } from './cli-io';
import { rotationCommands, tenantCommands } from './cli-lifecycle';
import { COMMAND_GROUPS, runCli } from './cli-program';

// `anc list | head` closes stdout early: that is not an error worth a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}

loadLocalStackEnv();
// The Temporal SDK (and its protocol definitions) load only for a command that connects.
let temporal: TemporalSdk | undefined;
const code = await runCli(
  process.argv.slice(2),
  {
    sdk: async () => {
      temporal ??= (await import('./cli-env')).temporalSdkFromEnv(process.env);
      return temporal.sdk();
    },
    out: process.stdout,
    err: process.stderr,
    readPassword: (prompt) => promptHidden(prompt, process.stdin, process.stderr),
    readStdinLine: () => readFirstLine(process.stdin),
    env: process.env,
  },
  [...COMMAND_GROUPS, tenantCommands, rotationCommands],
);
await temporal?.close().catch(() => undefined);
// Exit once what was written is flushed, rather than wait for stray handles (an abandoned
// connection attempt after --timeout, stdin) to wind down.
await Promise.all([process.stdout, process.stderr].map((s) => new Promise((resolve) => s.write('', resolve))));
process.exit(code);
