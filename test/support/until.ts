/**
 * Waits until `check` holds (polled every 20 ms), for a condition no single frame tells: a count over
 * many clients, a timer in an object, a stored row. Fails naming what was awaited. Used by the
 * workerd pool's helpers and the Node-side e2e kit alike, so it imports nothing.
 */
export async function until(
  check: () => boolean | Promise<boolean>,
  what: string | (() => string),
  timeoutMs: number,
): Promise<void> {
  // performance.now(), not Date.now(): tests may fake the Date clock.
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === "string" ? what : what()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
