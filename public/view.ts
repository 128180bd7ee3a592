/** DOM rendering for the demo. Text always goes in through textContent, never as HTML. */
import type { MessageFrame, PresenceUser, User } from "edge-rooms/client";

function el<K extends keyof HTMLElementTagNameMap>(tag: K, className?: string, text?: string) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

const PALETTE = ["#4f46e5", "#0891b2", "#db2777", "#ea580c", "#16a34a", "#7c3aed", "#0d9488", "#b45309"];

function colorFor(id: string): string {
  let hash = 0;
  for (const ch of id) hash = (hash * 31 + (ch.codePointAt(0) ?? 0)) >>> 0;
  return PALETTE[hash % PALETTE.length] ?? "#4f46e5";
}

function avatar(user: User): HTMLElement {
  const node = el("span", "avatar", user.name.trim().slice(0, 1).toUpperCase() || "?");
  node.style.background = colorFor(user.id);
  node.title = user.name;
  return node;
}

function clock(ts: number): string {
  return new Date(ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/** The message list: seq'd messages and notices in order, the user's pending sends kept last. */
export class MessageList {
  constructor(
    readonly root: HTMLOListElement,
    readonly me: () => User | undefined,
  ) {}

  /** Shows a message from the server; an own pending bubble with the same id becomes it. */
  addMessage(message: MessageFrame): void {
    const pending = message.id === undefined ? null : this.#pending(message.id);
    const item = pending ?? this.#bubble(message.from, message.text ?? JSON.stringify(message.data), message.ts);
    item.classList.remove("pending");
    if (message.seq !== undefined) item.dataset.seq = String(message.seq);
    if (message.id !== undefined) item.dataset.id = message.id;
    if (message.to !== undefined) item.classList.add("direct");
    this.#insert(item);
  }

  /** A bubble for a send not yet acknowledged. */
  addPending(id: string, text: string): HTMLElement {
    const me = this.me() ?? { id: "me", name: "Me" };
    const item = this.#bubble(me, text, Date.now());
    item.classList.add("pending");
    item.dataset.id = id;
    this.root.append(item);
    this.#scroll();
    return item;
  }

  /** The send failed: the bubble says why. */
  failPending(id: string, why: string): void {
    const item = this.#pending(id);
    if (!item) return;
    item.classList.replace("pending", "failed");
    const meta = item.querySelector(".meta time");
    if (meta) meta.textContent = `not sent: ${why}`;
  }

  notice(text: string, tone: "info" | "warn" = "info"): void {
    this.#insert(el("li", tone === "warn" ? "system warn" : "system", text));
  }

  clear(): void {
    this.root.replaceChildren();
  }

  #pending(id: string): HTMLElement | null {
    return this.root.querySelector<HTMLElement>(`li.pending[data-id="${CSS.escape(id)}"]`);
  }

  #bubble(from: User, text: string, ts: number): HTMLElement {
    const item = el("li", "msg");
    if (from.id === this.me()?.id) item.classList.add("mine");
    item.dataset.from = from.id;
    const bubble = el("div", "bubble");
    const meta = el("div", "meta");
    meta.append(el("span", "author", from.name), el("time", undefined, clock(ts)));
    bubble.append(meta, el("p", "body", text));
    item.append(avatar(from), bubble);
    return item;
  }

  /** Before the first pending bubble, so unacknowledged sends stay at the bottom. */
  #insert(item: HTMLElement): void {
    const firstPending = this.root.querySelector("li.pending");
    if (firstPending && firstPending !== item) this.root.insertBefore(item, firstPending);
    else this.root.append(item);
    this.#scroll();
  }

  #scroll(): void {
    this.root.scrollTop = this.root.scrollHeight;
  }
}

/** A user's status from its presence state (`{"status":…}`), when it set a known one. */
function statusOf(user: PresenceUser): string | undefined {
  const status = user.state?.status;
  return status === "available" || status === "busy" || status === "away" ? status : undefined;
}

export function renderPeople(root: HTMLUListElement, users: PresenceUser[], me: User | undefined): void {
  const sorted = [...users].sort((a, b) => a.name.localeCompare(b.name));
  root.replaceChildren(
    ...sorted.map((user) => {
      const item = el("li");
      item.dataset.user = user.id;
      item.append(avatar(user), el("span", "name", user.name));
      if (user.id === me?.id) item.append(el("span", "you", "you"));
      const status = statusOf(user);
      if (status !== undefined) {
        item.dataset.status = status;
        item.append(el("span", "presence-status", status));
      }
      return item;
    }),
  );
}
