import { expect } from 'vitest';
import { ConfigError, loadConfig } from '../../worker/config';

/** The least environment the worker's configuration accepts (and no Temporal config file). */
export const CONFIG_BASE = { DATABASE_URL: 'postgres://anc:anc@127.0.0.1:5432/anc', HOME: '/nonexistent' };

/** The problems `loadConfig` reports for `env`; fails the test if it accepts it. */
export function configProblems(env: NodeJS.ProcessEnv): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('loadConfig accepted the environment');
}
