import { StringDecoder } from 'node:string_decoder';

/**
 * Terminal and stream helpers for the operators' CLI: exit codes, the CLI's own errors, human
 * output (aligned key: value lines, tables) and reading a password without it ever touching argv,
 * the environment or the screen.
 */

/** The CLI's exit codes; `anc --help` documents them (keep EXIT_CODES_HELP in step). */
export const EXIT = {
  OK: 0,
  /** The service refused the request: bad input, not found, limit reached... Retrying cannot help. */
  REFUSED: 1,
  /** The command line, its interactive input or the CLI's configuration is wrong. Nothing was sent. */
  USAGE: 2,
  /** Temporal, the worker or PostgreSQL did not answer (in time). Retrying later may help. */
  UNAVAILABLE: 3,
  /** `audit verify` found a record that does not verify. */
  AUDIT_BROKEN: 4,
  /** Ctrl-C or end of input at the password prompt. */
  INTERRUPTED: 130,
} as const;

export const EXIT_CODES_HELP = `
Exit codes:
  0    success
  1    the service refused the request (invalid input, ANC not found, tenant limit reached, ...);
       retrying the same command cannot succeed
  2    usage error: unknown command or option, missing or invalid option, passwords that do not
       match at the prompt, no terminal to prompt on, invalid configuration; nothing was sent
  3    the service is unavailable or did not answer in time (Temporal, worker, PostgreSQL);
       retrying later may help (a timed-out change may still complete)
  4    audit verify: the audit chain is broken (the first broken record is printed)
  130  interrupted at the password prompt (Ctrl-C, or end of input)

Errors are printed on stderr as "error: <Type>: <message>"; with --json, stdout carries exactly
one JSON document when the command succeeds (and for audit verify, also when the chain is broken).
`;

/** An error the CLI itself raises, with the exit code it ends the process with. */
export class CliError extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** Where output goes: process.stdout/stderr, or a buffer in tests. */
export interface TextSink {
  write(chunk: string): unknown;
}

/** Aligned "key: value" lines; undefined values are left out. */
export function keyValues(rows: Array<[string, unknown]>): string {
  const present = rows.filter(([, v]) => v !== undefined && v !== null && v !== '');
  const width = Math.max(0, ...present.map(([k]) => k.length)) + 1;
  return present.map(([k, v]) => `${`${k}:`.padEnd(width)} ${String(v)}`).join('\n') + '\n';
}

/** A plain-text table with upper-case headers; the last column is not padded. */
export function table<T>(rows: T[], columns: Array<[header: string, value: (row: T) => unknown]>): string {
  const cells = rows.map((row) => columns.map(([, value]) => String(value(row) ?? '')));
  const headers = columns.map(([h]) => h.toUpperCase());
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...cells.map(line)].join('\n') + '\n';
}

/** What `--password-stdin` reads from, and what the hidden prompt needs of a terminal. */
export interface PasswordInput extends NodeJS.ReadableStream {
  isTTY?: boolean;
  isRaw?: boolean;
  setRawMode?(mode: boolean): unknown;
}

/** Most bytes read for one line of stdin; far above the service's 256-character limit. */
const MAX_LINE_BYTES = 64 * 1024;

/**
 * Reads the first line of `input` (up to "\n" or the end of input) without its line ending, then
 * stops reading. The rest of the input is left alone.
 */
export function readFirstLine(input: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (err?: Error) => {
      input.removeListener('data', onData);
      input.removeListener('end', onEnd);
      input.removeListener('error', onError);
      input.pause();
      if (err) return reject(err);
      const line = Buffer.concat(chunks).toString('utf8');
      resolve(line.endsWith('\r') ? line.slice(0, -1) : line);
    };
    const onData = (chunk: Buffer | string) => {
      const buf = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
      const nl = buf.indexOf(0x0a);
      chunks.push(nl >= 0 ? buf.subarray(0, nl) : buf);
      size += buf.length;
      if (nl >= 0) finish();
      else if (size > MAX_LINE_BYTES) {
        finish(
          new CliError('PasswordTooLong', `the first line of stdin is longer than ${MAX_LINE_BYTES} bytes`, EXIT.USAGE),
        );
      }
    };
    const onEnd = () => finish();
    const onError = (err: Error) => finish(err);
    input.on('data', onData);
    input.on('end', onEnd);
    input.on('error', onError);
    input.resume();
  });
}

/**
 * Asks for a secret on a terminal with echo off (raw mode): Enter ends it, Backspace deletes,
 * Ctrl-U clears, Ctrl-C (or Ctrl-D on an empty line) cancels; escape sequences such as arrow keys
 * are ignored. The question and the final newline go to `output` (stderr), nothing else does.
 * Refuses, rather than echoing, when `input` is not a terminal.
 */
export function promptHidden(question: string, input: PasswordInput, output: TextSink): Promise<string> {
  if (!input.isTTY || typeof input.setRawMode !== 'function') {
    return Promise.reject(
      new CliError(
        'NoTerminal',
        'cannot prompt for the password: stdin is not a terminal (pipe the password with --password-stdin)',
        EXIT.USAGE,
      ),
    );
  }
  const setRawMode = input.setRawMode.bind(input);
  const wasRaw = input.isRaw === true;
  output.write(question);
  setRawMode(true);
  return new Promise((resolve, reject) => {
    const decoder = new StringDecoder('utf8');
    let value = '';
    // 0: text; 1: after ESC; 2: inside a CSI/SS3 sequence, until its final byte.
    let escape: 0 | 1 | 2 = 0;
    const finish = (err?: Error) => {
      input.removeListener('data', onData);
      input.removeListener('end', onEnd);
      input.removeListener('error', onError);
      setRawMode(wasRaw);
      input.pause();
      output.write('\n');
      if (err) reject(err);
      else resolve(value);
    };
    const cancelled = () =>
      new CliError('Interrupted', 'cancelled at the password prompt; nothing was sent', EXIT.INTERRUPTED);
    const onData = (chunk: Buffer | string) => {
      const text = typeof chunk === 'string' ? chunk : decoder.write(chunk);
      for (const ch of text) {
        if (escape === 1) {
          escape = ch === '[' || ch === 'O' ? 2 : 0;
          continue;
        }
        if (escape === 2) {
          if (ch >= '@' && ch <= '~') escape = 0;
          continue;
        }
        switch (ch) {
          case '\r':
          case '\n':
            return finish();
          case '\u0003':
            return finish(cancelled());
          case '\u0004':
            if (value === '') return finish(cancelled());
            continue;
          case '\u007f':
          case '\b':
            value = Array.from(value).slice(0, -1).join('');
            continue;
          case '\u0015':
            value = '';
            continue;
          case '\u001b':
            escape = 1;
            continue;
          default:
            if (ch >= ' ') value += ch;
        }
      }
    };
    const onEnd = () => finish(cancelled());
    const onError = (err: Error) => finish(err);
    input.on('data', onData);
    input.on('end', onEnd);
    input.on('error', onError);
    input.resume();
  });
}
