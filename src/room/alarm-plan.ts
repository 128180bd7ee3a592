/**
 * The room's one alarm serves two clocks: the heartbeat round (every HEARTBEAT_INTERVAL_MS) and
 * each live connection's token expiry, enforced at `exp` rather than at the next round. The alarm is
 * set for whichever comes first; a wake runs the round only when it is due. Pure, so it is tested
 * without a clock.
 *
 * When the round is due is kept in storage (HEARTBEAT_DUE_KEY), written only when a round runs, in
 * the same turn as the alarm it sets: a wake for an expiry, even after an eviction, knows it is not
 * a round. A missing key (a room from before it) means due.
 */

export const HEARTBEAT_DUE_KEY = "heartbeat_due_at";

/**
 * A wake this close before the round's time runs the round too, rather than setting an alarm a
 * moment later (at most a tenth of the interval, so heartbeats stay close to their period).
 */
export function roundSlackMs(intervalMs: number): number {
  return Math.min(1000, intervalMs / 10);
}

/** Whether a wake at `now` runs the heartbeat round. At-least-once alarms: a repeat finds it done. */
export function isRoundDue(now: number, dueAt: number | undefined, intervalMs: number): boolean {
  return dueAt === undefined || now >= dueAt - roundSlackMs(intervalMs);
}

/**
 * When the alarm should next fire: the round's time or the earliest expiry of a live connection,
 * whichever is first, never in the past.
 */
export function nextAlarmAt(now: number, roundDueAt: number, exps: Iterable<number>): number {
  let at = roundDueAt;
  for (const exp of exps) if (exp < at) at = exp;
  return Math.max(at, now);
}

/**
 * On a connect or a token refresh: the alarm to set so that `exp` is enforced, given the one set
 * (`current`), or `undefined` when that one already comes first.
 */
export function alarmForExpiry(current: number, exp: number, now: number): number | undefined {
  return exp < current ? Math.max(exp, now) : undefined;
}
