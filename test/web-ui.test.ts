import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ancWorkflowId, tenantWorkflowId } from '../common/ids';
import { launchChromium } from './support/browser';
import { DIRECTORY_PASSWORD } from './support/fixtures';
import { freePort } from './support/worker-process';
import { canaryForms, findCanary } from './support/canary';
import { ALL_SEARCH_ATTRIBUTES, createHarness, type Harness } from './support/harness';
import { quietTemporalCli, ROOT } from './support/stack';

// Screenshots and page dumps of every step, kept as test artifacts (git-ignored). With
// UPDATE_DOCS_SCREENSHOT=1 the filtered list also replaces the one the README shows.
const ARTIFACTS = `${ROOT}test-artifacts/web-ui`;
const DOCS_SCREENSHOT = `${ROOT}docs/web-ui-tenant-workflows.png`;

async function eventually<T>(read: () => Promise<T>, ok: (v: T) => boolean, what: string, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await read();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: last ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** The text of a page including its frames (the UI renders summaries and details as Markdown in iframes). */
async function pageText(page: Page): Promise<string> {
  const parts: string[] = [];
  for (const frame of page.frames()) {
    try {
      parts.push(await frame.innerText('body', { timeout: 2_000 }));
    } catch {
      // A frame that navigated away or has no body yet.
    }
  }
  return parts.join('\n');
}

/** The HTML of a page and its frames. */
async function pageHtml(page: Page): Promise<string> {
  const parts: string[] = [];
  for (const frame of page.frames()) parts.push(await frame.content().catch(() => ''));
  return parts.join('\n');
}

describe('the Temporal Web UI in headless Chromium: what an operator sees', () => {
  let env: TestWorkflowEnvironment;
  let h: Harness;
  let browser: Browser;
  let uiPort: number;

  beforeAll(async () => {
    uiPort = await freePort();
    env = await TestWorkflowEnvironment.createLocal({
      server: {
        executable: { type: 'existing-path', path: quietTemporalCli() },
        ip: '127.0.0.1',
        ui: true,
        uiPort,
        searchAttributes: ALL_SEARCH_ATTRIBUTES,
        extraArgs: ['--log-level', 'error'],
      },
    });
    h = await createHarness({ env });
    await h.startWorker();
    browser = await launchChromium();
    mkdirSync(ARTIFACTS, { recursive: true });
  });

  afterAll(async () => {
    await browser?.close();
    await h?.close();
    await env?.teardown();
  });

  it('filters by tenant, shows summaries, state, purge date and timer, hides the password, and signals reactivation', async () => {
    const suffix = randomBytes(3).toString('hex');
    const contoso = `contoso-${suffix}`;
    const fabrikam = `fabrikam-${suffix}`;
    const canary = `Canary-${randomBytes(12).toString('hex')}`;
    const actor = 'ops@contoso.test';
    const domain = { adDomainName: 'corp.contoso.test', adDomainUsername: 'svcDomainJoin@corp.contoso.test' };
    await h.sdk.createAnc({
      tenantId: contoso,
      ancId: 'hq',
      displayName: 'Contoso HQ',
      ...domain,
      password: canary,
      actor,
    });
    await h.sdk.createAnc({
      tenantId: contoso,
      ancId: 'branch',
      displayName: 'Contoso Branch',
      ...domain,
      password: DIRECTORY_PASSWORD,
      actor,
    });
    await h.sdk.createAnc({
      tenantId: fabrikam,
      ancId: 'hq',
      displayName: 'Fabrikam HQ',
      ...domain,
      password: canary,
      actor,
    });
    const deactivated = await h.sdk.deactivateTenant(contoso, { actor, reason: 'subscription ended' });
    const purgeAt = deactivated.purgeAt as string;
    expect(purgeAt).toBeDefined();

    const contosoIds = [tenantWorkflowId(contoso), ancWorkflowId(contoso, 'hq'), ancWorkflowId(contoso, 'branch')];
    // Visibility is eventually consistent: wait until the server lists them all with their state.
    await eventually(
      async () => {
        const ids: string[] = [];
        for await (const wf of env.client.workflow.list({ query: `TenantId = "${contoso}"` })) ids.push(wf.workflowId);
        const deact: string[] = [];
        const q = `TenantId = "${contoso}" AND (AncState = "deactivated" OR TenantState = "deactivated")`;
        for await (const wf of env.client.workflow.list({ query: q })) deact.push(wf.workflowId);
        return [ids.length, deact.length];
      },
      ([all, deact]) => all === 3 && deact === 3,
      'the tenant workflows to be listed as deactivated',
    );

    const page = await browser.newPage({ viewport: { width: 1920, height: 1000 } });
    const base = `http://127.0.0.1:${uiPort}/namespaces/default`;
    const seen: string[] = [];
    const keep = async (name: string) => {
      const text = await pageText(page);
      const html = await pageHtml(page);
      seen.push(text, html);
      writeFileSync(`${ARTIFACTS}/${name}.txt`, text);
      writeFileSync(`${ARTIFACTS}/${name}.html`, html);
      await page.screenshot({ path: `${ARTIFACTS}/${name}.png`, fullPage: true });
      return text;
    };

    // 1. The workflow list, filtered by TenantId, with the service's search attributes as columns.
    await page.goto(`${base}/workflows?query=${encodeURIComponent(`TenantId="${contoso}"`)}`);
    const rows = page.locator('table tbody tr');
    await expect.poll(async () => rows.count(), { timeout: 30_000 }).toBe(3);
    await page.getByLabel('Configure Columns').click();
    for (const column of ['Run ID', 'End']) await page.getByLabel(`Remove ${column} column`).click();
    for (const column of ['AncState', 'HealthStatus', 'TenantState', 'PurgeAt'])
      await page.getByLabel(`Add ${column} column`).click();
    await page.getByLabel('Close Workflows Table configuration').click();
    await expect.poll(async () => (await page.innerText('table')).includes('PurgeAt')).toBe(true);
    const listed = await page.innerText('table');
    await page.screenshot({
      path: `${ARTIFACTS}/tenant-workflows.png`,
      clip: { x: 250, y: 0, width: 1670, height: 420 },
    });
    if (process.env.UPDATE_DOCS_SCREENSHOT) copyFileSync(`${ARTIFACTS}/tenant-workflows.png`, DOCS_SCREENSHOT);
    await keep('01-list-filtered-by-tenant');
    for (const id of contosoIds) expect(listed).toContain(id);
    expect(listed).not.toContain(fabrikam);
    expect(await rows.count()).toBe(3);
    expect(listed.match(/deactivated/g)?.length).toBe(3); // two ANCs and the tenant
    expect(listed).toMatch(/passed/); // branch: the directory accepts its credential
    expect(listed).toMatch(/failed/); // hq: it does not

    // 2. Each listed workflow shows its summary and current details (User Metadata).
    const summaries: Record<string, string> = {
      [tenantWorkflowId(contoso)]: `Tenant ${contoso} — lifecycle and data retention`,
      [ancWorkflowId(contoso, 'hq')]: 'ANC hq — Contoso HQ, corp.contoso.test',
      [ancWorkflowId(contoso, 'branch')]: 'ANC branch — Contoso Branch, corp.contoso.test',
    };
    for (const [id, summary] of Object.entries(summaries)) {
      await page.goto(`${base}/workflows?query=${encodeURIComponent(`TenantId="${contoso}"`)}`);
      await page.getByRole('link', { name: id, exact: true }).click();
      await page.getByRole('tab', { name: /User Metadata/ }).click();
      await expect.poll(async () => pageText(page), { timeout: 15_000 }).toContain(summary);
      await expect.poll(async () => pageText(page), { timeout: 15_000 }).toContain('State:');
      const text = await keep(`02-metadata-${id.replace(/\//g, '_')}`);
      expect(text).toContain('State: deactivated');
    }

    // 3. One ANC: its details, and its event history with the steps named.
    const hq = await env.client.workflow.getHandle(ancWorkflowId(contoso, 'hq')).describe();
    const hqPath = `${base}/workflows/${encodeURIComponent(hq.workflowId)}/${hq.runId}`;
    await page.goto(hqPath);
    await page.getByRole('tab', { name: /User Metadata/ }).click();
    await expect.poll(async () => pageText(page), { timeout: 15_000 }).toContain('Credential version: 1');
    const hqText = await keep('03-anc-metadata');
    expect(hqText).toContain('Health check: failed — IncorrectCredentials');
    await page.goto(`${hqPath}/history`);
    await expect
      .poll(async () => pageText(page), { timeout: 15_000 })
      .toContain('Provide: seal and store the credential');
    await keep('04-anc-history');
    // Open the accepted create request: the sealed envelope is there, the password is not.
    await page.locator('tr', { hasText: 'Update Accepted' }).filter({ hasText: 'createAnc' }).first().click();
    await expect.poll(async () => pageText(page), { timeout: 15_000 }).toContain('passwordEnvelope');
    await keep('05-anc-history-create-request');

    // 4. The deactivated tenant: purge date, time left and the pending retention timer.
    const tenant = await env.client.workflow.getHandle(tenantWorkflowId(contoso)).describe();
    const tenantPath = `${base}/workflows/${encodeURIComponent(tenant.workflowId)}/${tenant.runId}`;
    await page.goto(tenantPath);
    await page.getByRole('tab', { name: /User Metadata/ }).click();
    await expect.poll(async () => pageText(page), { timeout: 15_000 }).toContain(`Purge at: ${purgeAt}`);
    const tenantText = await keep('06-tenant-metadata');
    expect(tenantText).toMatch(/time left: 2[89]d/);
    await page.getByRole('tab', { name: /Search Attributes/ }).click();
    await expect.poll(async () => pageText(page), { timeout: 15_000 }).toContain('PurgeAt');
    await keep('07-tenant-search-attributes');
    await page.goto(`${tenantPath}/history`);
    await expect.poll(async () => pageText(page), { timeout: 15_000 }).toContain('Timer Started');
    await keep('08-tenant-history');
    await page.goto(`${tenantPath}/timeline`);
    // The pending timer, labelled with its full length (29 days less the time to start it).
    await expect.poll(async () => pageText(page), { timeout: 15_000 }).toMatch(/\(28d, 23h, 59m/);
    await keep('09-tenant-timeline');

    // 5. Not one rendered page or history view holds the password, in any encoding.
    expect(seen.length).toBeGreaterThanOrEqual(20);
    const everything = seen.join('\n');
    expect(everything).toContain(contoso); // the pages were read
    expect(findCanary(everything, canaryForms(canary))).toEqual([]);

    // 6. Reactivate the tenant from the UI's signal dialog.
    await page.getByRole('button', { name: 'More Actions' }).click();
    await page.getByTestId('signal-button').filter({ visible: true }).click();
    const dialog = page.getByTestId('signal-confirmation-modal').filter({ visible: true });
    await dialog.getByTestId('signal-select-button').click();
    await dialog.getByRole('option', { name: 'reactivateTenant' }).click();
    const input = dialog.getByRole('textbox', { name: 'Data' });
    await input.click();
    await page.keyboard.insertText(JSON.stringify({ actor, reason: 'paid again' }));
    expect(JSON.parse(await input.innerText())).toEqual({ actor, reason: 'paid again' });
    await keep('10-signal-dialog');
    await dialog.locator('button[type=submit]').click();

    const reactivated = await eventually(
      () => h.sdk.getTenant(contoso),
      (t) => t.state === 'active',
      'the tenant to be active after the signal',
    );
    expect(reactivated.purgeAt).toBeUndefined();
    await page.goto(`${base}/workflows?query=${encodeURIComponent(`TenantId="${contoso}"`)}`);
    await keep('11-list-after-reactivation');
    const history = await env.client.workflow.getHandle(tenant.workflowId, tenant.runId).fetchHistory();
    const signals = (history.events ?? []).filter((e) => e.workflowExecutionSignaledEventAttributes);
    expect(signals.map((e) => e.workflowExecutionSignaledEventAttributes?.signalName)).toContain('reactivateTenant');
    expect(findCanary(seen.join('\n'), canaryForms(canary))).toEqual([]);
    await page.close();
  }, 300_000); // a browser session through eleven pages: minutes on a loaded machine
});
