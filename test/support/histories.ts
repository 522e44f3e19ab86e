import { temporal } from '@temporalio/proto';

const { EventType } = temporal.api.enums.v1;

/** proto3-style JSON of a history (bytes as base64, enums by name), as saved for replay tests. */
export function historyJson(history: temporal.api.history.v1.IHistory): string {
  const message = temporal.api.history.v1.History.fromObject(history);
  return JSON.stringify(
    temporal.api.history.v1.History.toObject(message, { longs: String, enums: String, bytes: String }),
  );
}

/** How many events of the type a history holds (e.g. WORKFLOW_TASK_FAILED, MARKER_RECORDED). */
export function countEvents(
  history: temporal.api.history.v1.IHistory,
  type: keyof typeof temporal.api.enums.v1.EventType,
): number {
  const wanted = EventType[type];
  return (history.events ?? []).filter((e) => e.eventType === wanted).length;
}

/**
 * A saved history with every string longer than `keep` characters inside a JSON payload cut to
 * `keep` characters, so histories of oversized inputs stay small in the repository. Only for
 * inputs whose refusal does not depend on the exact length beyond `keep` (every limit is lower).
 */
export function shrinkLongStrings(historyJsonText: string, keep = 2000): string {
  const cut = (v: unknown): unknown => {
    if (typeof v === 'string') return v.length > keep ? v.slice(0, keep) : v;
    if (Array.isArray(v)) return v.map(cut);
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, cut(x)]));
    return v;
  };
  const walk = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(walk);
    if (!node || typeof node !== 'object') return node;
    const record = node as Record<string, unknown>;
    if (typeof record.data === 'string' && 'metadata' in record && record.data.length > 4 * keep) {
      const text = Buffer.from(record.data, 'base64').toString('utf8');
      try {
        return { ...record, data: Buffer.from(JSON.stringify(cut(JSON.parse(text))), 'utf8').toString('base64') };
      } catch {
        return record; // not JSON: kept as it is
      }
    }
    return Object.fromEntries(Object.entries(record).map(([k, v]) => [k, walk(v)]));
  };
  return JSON.stringify(walk(JSON.parse(historyJsonText)));
}
