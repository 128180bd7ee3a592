/**
 * When to try again: failed attempts counted against the backoff, the wait before the next one, and
 * (in browsers) the `online` event that cuts that wait short.
 */
import { type BackoffOptions, backoffDelay } from "./backoff.js";

export class Reconnects {
  readonly #backoff: BackoffOptions;
  readonly #connect: () => void;
  readonly #isWaiting: () => boolean;
  #attempt = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #isListeningOnline = false;

  /** `connect` starts the next attempt; `isWaiting` says whether an `online` event may cut a wait short. */
  constructor(backoff: BackoffOptions, connect: () => void, isWaiting: () => boolean) {
    this.#backoff = backoff;
    this.#connect = connect;
    this.#isWaiting = isWaiting;
  }

  /** Failed attempts in a row. */
  get attempt(): number {
    return this.#attempt;
  }

  get maxAttempts(): number {
    return this.#backoff.maxAttempts;
  }

  /** A connection was welcomed, or the client starts over: the count starts again. */
  reset(): void {
    this.#attempt = 0;
  }

  /** Counts a failed attempt: the delay before the next one, or `undefined` when retries are exhausted. */
  fail(isImmediate: boolean): number | undefined {
    this.#attempt += 1;
    if (this.#attempt > this.#backoff.maxAttempts) return undefined;
    return isImmediate ? 0 : backoffDelay(this.#attempt, this.#backoff);
  }

  /** Connects after `delayMs`; from now on, coming back online cuts a wait short. */
  wait(delayMs: number): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#connect();
    }, delayMs);
    this.#listenOnline(true);
  }

  /** Stops waiting, and stops listening for `online`. */
  cancel(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#listenOnline(false);
  }

  readonly #onOnline = () => {
    if (this.#timer === undefined || !this.#isWaiting()) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#connect();
  };

  #listenOnline(on: boolean): void {
    const target = globalThis as { addEventListener?: EventTarget["addEventListener"] } & Partial<EventTarget>;
    if (typeof target.addEventListener !== "function" || on === this.#isListeningOnline) return;
    if (on) target.addEventListener("online", this.#onOnline);
    else target.removeEventListener?.("online", this.#onOnline);
    this.#isListeningOnline = on;
  }
}
