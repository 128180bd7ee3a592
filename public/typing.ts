/**
 * "Who is typing", from ephemeral signals: while the input changes, a `{"typing":true}` signal at most
 * once a second; each one shows its sender for 3 s; a sent message or `{"typing":false}` clears it.
 */
import type { RoomClient, Signal, User } from "edge-rooms/client";

const SEND_EVERY_MS = 1000;
const SHOW_FOR_MS = 3000;

export class TypingIndicator {
  readonly #typing = new Map<string, { user: User; timer: ReturnType<typeof setTimeout> }>();
  #lastSentAt = 0;

  constructor(readonly root: HTMLElement) {}

  /** The local input changed: tell the others, not more than once a second. */
  typed(client: RoomClient): void {
    const now = Date.now();
    if (now - this.#lastSentAt < SEND_EVERY_MS) return;
    this.#lastSentAt = now;
    client.signal({ typing: true });
  }

  /** The local user sent its message: it stopped typing. */
  sent(client: RoomClient): void {
    this.#lastSentAt = 0;
    client.signal({ typing: false });
  }

  onSignal(signal: Signal): void {
    const data = signal.data as { typing?: unknown } | null;
    if (typeof data !== "object" || data === null || typeof data.typing !== "boolean") return;
    if (data.typing) this.#show(signal.from);
    else this.stopped(signal.from.id);
  }

  /** `userId` stopped typing (it sent a message, or left). */
  stopped(userId: string): void {
    const entry = this.#typing.get(userId);
    if (!entry) return;
    clearTimeout(entry.timer);
    this.#typing.delete(userId);
    this.#render();
  }

  clear(): void {
    for (const userId of [...this.#typing.keys()]) this.stopped(userId);
  }

  #show(user: User): void {
    const entry = this.#typing.get(user.id);
    if (entry) clearTimeout(entry.timer);
    const timer = setTimeout(() => this.stopped(user.id), SHOW_FOR_MS);
    this.#typing.set(user.id, { user, timer });
    this.#render();
  }

  #render(): void {
    const names = [...this.#typing.values()].map((t) => t.user.name).sort();
    this.root.dataset.users = [...this.#typing.keys()].sort().join(",");
    this.root.textContent =
      names.length === 0
        ? ""
        : names.length === 1
          ? `${names[0]} is typing…`
          : `${names.slice(0, -1).join(", ")} and ${names.at(-1)} are typing…`;
  }
}
