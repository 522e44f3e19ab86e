import { condition, continueAsNew, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { AuditAnchor } from '../common/types';
import { anchorAuditSignal, getAuditAnchorsQuery } from './definitions';

const { anchorAuditHead } = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '5 seconds', maximumInterval: '5 minutes' },
});

/** Anchors kept in the workflow's state (each also stays in the history that produced it). */
const KEEP = 48;

/**
 * A singleton that anchors the audit chain's head outside PostgreSQL: every `intervalMinutes`, and
 * whenever a rotation run signals it, an activity signs the head (newest seq and MAC) with a Key
 * Vault key, and the anchor is kept here, in Temporal, which the database's owner cannot rewrite.
 * `anc audit verify` reads them with the query.
 */
export async function auditAnchorWorkflow(
  args: { intervalMinutes?: number; carried?: AuditAnchor[] } = {},
): Promise<void> {
  const anchors: AuditAnchor[] = [...(args.carried ?? [])];
  const interval = `${args.intervalMinutes ?? 60} minutes`;
  let requested = true;
  setHandler(getAuditAnchorsQuery, () => anchors);
  setHandler(anchorAuditSignal, () => {
    requested = true;
  });
  while (!workflowInfo().continueAsNewSuggested) {
    if (requested) {
      requested = false;
      const anchor = await anchorAuditHead();
      const last = anchors.at(-1);
      if (!last || last.seq !== anchor.seq || last.mac !== anchor.mac) {
        anchors.push(anchor);
        if (anchors.length > KEEP) anchors.shift();
      }
    }
    if (!(await condition(() => requested || workflowInfo().continueAsNewSuggested, interval))) requested = true;
  }
  await continueAsNew<typeof auditAnchorWorkflow>({ ...args, carried: anchors });
}
