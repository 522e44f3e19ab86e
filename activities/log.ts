import { Context } from '@temporalio/activity';
import type { ActivityDeps } from './deps';

type Attrs = Record<string, unknown>;

export interface OperationLog {
  info(message: string, attrs: Attrs): void;
  warn(message: string, attrs: Attrs): void;
}

/**
 * The activity `log` when running as an activity (its lines carry the workflow and activity ids
 * and reach the worker's one log stream); the service logger when called directly, as tests do.
 * Callers pass ids and outcomes only, never secrets.
 */
export function operationLog(deps: Pick<ActivityDeps, 'logger'>): OperationLog {
  let context: Context | undefined;
  try {
    context = Context.current();
  } catch {
    context = undefined;
  }
  if (context) return context.log;
  return {
    info: (message, attrs) => deps.logger.info(attrs, message),
    warn: (message, attrs) => deps.logger.warn(attrs, message),
  };
}
