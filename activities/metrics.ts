import { Context } from '@temporalio/activity';
import { noopMetricMeter, type MetricMeter } from '@temporalio/common';
import { Runtime } from '@temporalio/worker';

let outsideActivities: MetricMeter = noopMetricMeter;

/**
 * Where metrics recorded outside an activity go (the KEK bootstrap at worker start, a background
 * refresh): the worker may pass its Runtime's meter. Tests that call activities directly leave
 * the default, which records nothing.
 */
export function setMeterOutsideActivities(meter: MetricMeter): void {
  outsideActivities = meter;
}

/** The running activity's metric meter (tagged by the SDK with namespace, task queue, activity type). */
export function serviceMeter(): MetricMeter {
  try {
    return Context.current().metricMeter;
  } catch {
    return outsideActivities;
  }
}

/**
 * The worker process's meter, without per-activity tags: for gauges, whose one value per process
 * must not split by the activity that last set it. Activities always run in a process whose
 * Runtime the worker has installed.
 */
export function processMeter(): MetricMeter {
  return Runtime.instance().metricMeter;
}
