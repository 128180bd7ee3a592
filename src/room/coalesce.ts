/**
 * Rate-bounds a stream of "latest value" updates per key: the first update of a quiet key goes out at
 * once, later ones at most once per `intervalMs`, and each time only the newest value. Updates 60
 * times a second then cost about 1000 / `intervalMs` sends a second, and the last value always goes
 * out. Pure but for the timer, which is injected so tests can drive the clock.
 */

export type Schedule = (run: () => void, ms: number) => () => void;

const schedule: Schedule = (run, ms) => {
  const timer = setTimeout(run, ms);
  return () => clearTimeout(timer);
};

export class Coalescer<K, V> {
  readonly #intervalMs: number;
  readonly #send: (key: K, value: V) => void;
  readonly #schedule: Schedule;
  readonly #lastSentAt = new Map<K, number>();
  /** Keys with a send due, their newest value, and how to cancel it. */
  readonly #due = new Map<K, { value: V; cancel: () => void }>();

  constructor(intervalMs: number, send: (key: K, value: V) => void, options: { schedule?: Schedule } = {}) {
    this.#intervalMs = intervalMs;
    this.#send = send;
    this.#schedule = options.schedule ?? schedule;
  }

  push(key: K, value: V, now: number): void {
    const due = this.#due.get(key);
    if (due !== undefined) {
      due.value = value; // the send already due takes the newest value
      return;
    }
    const wait = (this.#lastSentAt.get(key) ?? Number.NEGATIVE_INFINITY) + this.#intervalMs - now;
    if (wait <= 0) {
      this.#fire(key, value, now);
      return;
    }
    const entry = { value, cancel: () => {} };
    this.#due.set(key, entry);
    entry.cancel = this.#schedule(() => {
      this.#due.delete(key);
      this.#fire(key, entry.value, Date.now());
    }, wait);
  }

  /** Drops what is due for `key` and forgets when it last went out. */
  forget(key: K): void {
    this.#due.get(key)?.cancel();
    this.#due.delete(key);
    this.#lastSentAt.delete(key);
  }

  #fire(key: K, value: V, now: number): void {
    this.#lastSentAt.set(key, now);
    this.#send(key, value);
  }
}
