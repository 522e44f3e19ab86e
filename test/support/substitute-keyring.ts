/**
 * A substitute keyring for tests: a workflow of the same type and id as the service's keyring that
 * answers the same query with whatever key it was started with (a tester's key), as someone able
 * to replace workflows in the namespace could.
 */
import { condition, setHandler } from '@temporalio/workflow';
import type { PublicKek } from '../../common/types';
import { getPublicKekQuery } from '../../workflows/definitions';

export async function keyringWorkflow(forged: PublicKek): Promise<void> {
  setHandler(getPublicKekQuery, () => forged);
  await condition(() => false);
}
