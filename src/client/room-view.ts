/**
 * What the client knows of the room, as the `welcome` and the frames after it tell it: who this
 * connection is, who is in the room, the highest `seq` seen, whether a resume replay is still
 * arriving, and the sender of the binary frame that comes next. No sockets and no timers: the
 * client feeds it frames and acts on what it answers.
 */
import type { MessageFrame, PresenceFrame, ServerFrame, User, WelcomeFrame } from "../protocol/index.js";
import type { Gap, PresenceUser } from "./types.js";

export class RoomView {
  /** Who this connection is, from the latest `welcome`. */
  user: User | undefined;
  /** The highest room `seq` seen (what the next connection resumes from). */
  lastSeq: number | undefined;
  #users = new Map<string, PresenceUser>();
  /** While set, the resume replay is still arriving; sends wait until it is done. */
  #replayUntil: number | undefined;
  /** The sender named by the `binary` frame just received, for the binary frame that follows it. */
  #binaryFrom: User | undefined;

  /** Who is in the room, from `welcome` and `presence` frames, each with its presence `state` once set. */
  get users(): PresenceUser[] {
    return [...this.#users.values()];
  }

  get isReplaying(): boolean {
    return this.#replayUntil !== undefined;
  }

  /**
   * A `welcome` on a connection that resumed from `since` (or did not): the messages lost, if any,
   * and the seq a replay will run up to, when one follows (see `awaitReplay`).
   */
  welcome(welcome: WelcomeFrame, since: number | undefined): { gap: Gap | undefined; replayUntil: number | undefined } {
    this.user = welcome.user;
    this.#users = new Map(
      welcome.presence.map((p) => [
        p.id,
        { id: p.id, name: p.name, ...(p.state === undefined ? {} : { state: p.state }) },
      ]),
    );
    let gap: Gap | undefined;
    if (since === undefined) {
      this.lastSeq = welcome.seq;
    } else if (welcome.seq < since) {
      // The room's log restarted (its storage was reset): count from its seq again.
      gap = { since, seq: welcome.seq, reason: "reset" };
      this.lastSeq = welcome.seq;
    } else {
      this.lastSeq = since;
      if (welcome.recovered === false) gap = { since, seq: welcome.seq, reason: "trimmed", missed: welcome.missed };
    }
    const isReplaying = since !== undefined && welcome.seq > (this.lastSeq ?? 0);
    return { gap, replayUntil: isReplaying ? welcome.seq : undefined };
  }

  /** A replay up to `seq` is arriving: sends wait until it is done. */
  awaitReplay(seq: number): void {
    this.#replayUntil = seq;
  }

  /** Any server frame: the server names a binary frame's sender in the text frame right before it. */
  frame(frame: ServerFrame): void {
    this.#binaryFrom = frame.type === "binary" ? frame.from : undefined;
  }

  /** A binary frame arrived: its sender, if the frame before it named one. */
  takeBinarySender(): User | undefined {
    const from = this.#binaryFrom;
    this.#binaryFrom = undefined;
    return from;
  }

  presence(frame: PresenceFrame): void {
    const { id, name } = frame.user;
    if (frame.event === "leave") this.#users.delete(id);
    else if (frame.event === "join") this.#users.set(id, { id, name });
    else this.#users.set(id, { id, name, ...(frame.state === undefined ? {} : { state: frame.state }) });
  }

  /** A message: `false` for one already seen (a replay overlapping what came live). */
  message(message: MessageFrame): boolean {
    if (message.seq !== undefined) {
      if (this.lastSeq !== undefined && message.seq <= this.lastSeq) return false;
      this.lastSeq = message.seq;
    }
    return true;
  }

  /** The message is this connection's own (it came back, live or in a replay). */
  isOwn(message: MessageFrame): boolean {
    return message.id !== undefined && message.from.id === this.user?.id;
  }

  /** The replay has reached the seq the welcome announced. */
  get hasCaughtUp(): boolean {
    return this.#replayUntil !== undefined && (this.lastSeq ?? 0) >= this.#replayUntil;
  }

  /** The replay is over (caught up, or the connection is gone). */
  endReplay(): void {
    this.#replayUntil = undefined;
  }

  /** The client stopped: nobody is in the room any more, as far as it knows. */
  clearUsers(): void {
    this.#users.clear();
  }
}
