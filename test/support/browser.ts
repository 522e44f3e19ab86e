import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

/** Debian's chromium package (stack/up.sh installs it); playwright-core never downloads a browser. */
export const CHROMIUM_PATHS = ['/usr/bin/chromium', '/usr/bin/chromium-browser'];

export async function launchChromium(): Promise<Browser> {
  const executablePath = process.env.CHROMIUM_PATH ?? CHROMIUM_PATHS.find((p) => existsSync(p));
  if (!executablePath) {
    throw new Error(
      `no Chromium at ${CHROMIUM_PATHS.join(' or ')}: run "bash stack/up.sh" (it installs Debian's chromium package)`,
    );
  }
  // The sandbox needs user namespaces, which CI containers running as root do not have.
  return chromium.launch({ executablePath, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
}
