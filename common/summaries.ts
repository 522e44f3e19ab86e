import type { AncSpec, AncView } from './types';

/**
 * What operators read in the Temporal Web UI: a one-line summary set when a workflow starts and
 * Markdown "current details" the workflow keeps up to date. Built only from ids, names, states,
 * versions and times: never from a password, an envelope or key material.
 */

/** One line, e.g. "ANC hq — Contoso HQ, corp.contoso.test". */
export function ancSummary(ancId: string, spec: Pick<AncSpec, 'displayName' | 'adDomainName'>): string {
  return `ANC ${ancId} — ${oneLine(spec.displayName)}, ${oneLine(spec.adDomainName)}`;
}

export function tenantSummary(tenantId: string): string {
  return `Tenant ${tenantId} — lifecycle and data retention`;
}

export function ancDetails(view: AncView): string {
  const h = view.healthCheck;
  const health = [
    `**Health check:** ${h.status}`,
    h.errorType ? ` — \`${h.errorType}\`` : '',
    h.finishedAt ? ` at ${h.finishedAt}` : '',
  ].join('');
  const lines = [
    view.displayName ? `**${ancSummary(view.ancId, view)}**` : `**ANC ${view.ancId}**`,
    `**Tenant:** ${view.tenantId} · **State:** ${view.state}`,
    view.credentialVersion > 0
      ? `**Credential version:** ${view.credentialVersion} · **Tenant key version:** ${view.tenantKeyVersion}` +
        (view.updatedAt ? ` · updated ${view.updatedAt}` : '')
      : '',
    view.adDomainUsername ? `**Domain-join account:** ${view.adDomainUsername}` : '',
    view.state === 'creating' ? '' : health,
  ];
  return lines.filter(Boolean).join('\n\n');
}

export interface TenantDetailsInput {
  tenantId: string;
  state: string;
  deactivatedAtMs?: number;
  purgeAtMs?: number;
  purgedAtMs?: number;
  cycles: number;
  /** Workflow time the details are written at. */
  nowMs: number;
}

export function tenantDetails(t: TenantDetailsInput): string {
  const iso = (ms: number) => new Date(ms).toISOString();
  const lines = [
    `**Tenant ${t.tenantId}** · **State:** ${t.state}`,
    t.deactivatedAtMs !== undefined && t.state !== 'active' ? `**Deactivated at:** ${iso(t.deactivatedAtMs)}` : '',
    t.purgeAtMs !== undefined && t.state !== 'active'
      ? `**Purge at:** ${iso(t.purgeAtMs)}` +
        (t.state === 'deactivated' || t.state === 'purging'
          ? ` · **time left:** ${formatDuration(t.purgeAtMs - t.nowMs)} (as of ${iso(t.nowMs)})`
          : '')
      : '',
    t.purgedAtMs !== undefined ? `**Purged at:** ${iso(t.purgedAtMs)}` : '',
    `Deactivate/reactivate cycles: ${t.cycles}`,
  ];
  return lines.filter(Boolean).join('\n\n');
}

/** "28d 23h 59m"; zero or less is "none". */
export function formatDuration(ms: number): string {
  if (ms <= 0) return 'none';
  const minutes = Math.floor(ms / 60_000);
  const d = Math.floor(minutes / 1440);
  const h = Math.floor((minutes % 1440) / 60);
  const m = minutes % 60;
  return [d ? `${d}d` : '', h ? `${h}h` : '', `${m}m`].filter(Boolean).join(' ');
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}
