import { temporal } from '@temporalio/proto';

/** proto3-style JSON of a history (bytes as base64, enums by name), as saved for replay tests. */
export function historyAsJson(history: temporal.api.history.v1.IHistory): string {
  const message = temporal.api.history.v1.History.fromObject(history);
  return JSON.stringify(
    temporal.api.history.v1.History.toObject(message, { longs: String, enums: String, bytes: String }),
  );
}
