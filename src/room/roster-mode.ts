/**
 * Whether a room's members get the full roster or counts only (PRESENCE_ROSTER_MAX).
 *
 * At or below the setting a room sends the roster as always: `welcome.presence`, `join`/`leave` and
 * presence `update`s. Above it every join or leave would be a frame to every member (n² frames for n
 * arrivals), and a list of thousands makes no sense to a person: the room sends counts instead, an
 * `occupancy` frame on change at most once a second. The switch has hysteresis: counts above `max`,
 * the roster again only at or below `max` less a tenth (at least one), so a room at the threshold
 * does not flap. The mode is stored (one key, written on a switch only), so that a room that wakes
 * within the band keeps the mode its members were told.
 */

import type { OccupancyFrame } from "../protocol";

const STORED_KEY = "rosterMode";

/** The count at or below which a room in counts mode sends its roster again. */
export function resumeAt(max: number): number {
  return max - Math.max(1, Math.floor(max / 10));
}

export class RosterMode {
  readonly #max: number;
  readonly #store: SyncKvStorage | undefined;
  #isFull: boolean;

  constructor(max: number, store?: SyncKvStorage) {
    this.#max = max;
    this.#store = store;
    this.#isFull = store?.get<string>(STORED_KEY) !== "counts";
  }

  get isFull(): boolean {
    return this.#isFull;
  }

  /** The room's user count is `online`: whether that switched the mode. */
  update(online: number): boolean {
    const isFull = this.#isFull ? online <= this.#max : online <= resumeAt(this.#max);
    if (isFull === this.#isFull) return false;
    this.#isFull = isFull;
    try {
      if (isFull) this.#store?.delete(STORED_KEY);
      else this.#store?.put(STORED_KEY, "counts");
    } catch {
      // Not stored: a wake in the band then starts in roster mode, and the next change corrects it.
    }
    return true;
  }
}

/** At most one `occupancy` frame a second, and none that repeats the last. */
export class OccupancyThrottle {
  readonly #intervalMs: number;
  readonly #send: (frame: string) => void;
  #last = "";
  #sentAt = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(intervalMs: number, send: (frame: string) => void) {
    this.#intervalMs = intervalMs;
    this.#send = send;
  }

  /** The counts may have changed: `read` is asked for them when the frame goes out. */
  changed(read: () => OccupancyFrame | undefined): void {
    if (this.#timer !== undefined) return;
    const wait = Math.max(0, this.#sentAt + this.#intervalMs - Date.now());
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const frame = read();
      if (frame === undefined) return;
      const text = JSON.stringify(frame);
      if (text === this.#last) return;
      this.#last = text;
      this.#sentAt = Date.now();
      this.#send(text);
    }, wait);
  }

  /** Forgets the last frame sent: the next change sends even the same counts (after a switch back). */
  reset(): void {
    this.#last = "";
  }
}
