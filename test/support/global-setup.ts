import { execFileSync } from 'node:child_process';
import { ROOT } from './stack';

/**
 * Builds dist/ once per test run (`npm run build`): the compiled worker, the bundled CLI and the
 * packed SDK are tested as they ship. A failing build fails the run with the compiler's output.
 */
export default function setup(): void {
  try {
    execFileSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, stdio: 'pipe', encoding: 'utf8' });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    throw new Error(`npm run build failed:\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
}
