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
