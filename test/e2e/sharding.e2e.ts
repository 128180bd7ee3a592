/**
 * A room spread over several objects (docs/scaling.md), end to end: real `ws` clients against
 * `wrangler dev` with SHARD_GROW_AT=10, so 40 members grow the room to 4 objects while 8 of them send.
 * Members moved with 4307 reconnect at once with `?since`, as edge-rooms/client does. Every member,
 * over all its sockets, must see every message exactly once, in seq order, and in the end hold every
 * member as online.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { shardOf } from "../../src/room/shard-map";
import { isRefusal, mintToken, RawClient, sleep, until } from "../support/attack-kit";
import { rosterView } from "../support/roster-view";
import { WranglerServer } from "../support/wrangler-server";

const MEMBERS = 40;
const SENDERS = 8;
const PER_SENDER = 20;

let server: WranglerServer | undefined;
beforeAll(async () => {
  server = await WranglerServer.start({
    vars: {
      SHARD_MAX: "4",
      SHARD_GROW_AT: "10",
      SHARD_MOVES_PER_SECOND: "200",
      MAX_CONNECTIONS_PER_ROOM: "50",
      PRESENCE_GRACE_MS: "0",
    },
  });
});
afterAll(async () => {
  await server?.dispose();
});

/** One member: its current socket, and every seq it saw over all its sockets, in arrival order. */
interface Member {
  sub: string;
  socket: RawClient;
  /** Seqs of the sockets before this one. */
  earlier: number[];
  moves: number;
  /** What it sent, by id, and the ids acked on any of its sockets (a client resends the others). */
  sent: Map<string, object>;
  acked: Set<string>;
}

const seqsOf = (m: Member) => [...m.earlier, ...m.socket.seqs];

function takeAcks(m: Member): void {
  for (const f of m.socket.frames) if (f.type === "ack" && f.id !== undefined) m.acked.add(f.id);
}

/** Sends again, with the same ids, what was not acked (as edge-rooms/client does after a reconnect). */
function resendUnacked(m: Member): void {
  takeAcks(m);
  for (const [id, frame] of m.sent) if (!m.acked.has(id)) m.socket.send(frame);
}

async function open(s: WranglerServer, room: string, sub: string, since?: number): Promise<RawClient> {
  const opened = await RawClient.open(s, room, await mintToken(s, sub), since === undefined ? {} : { since });
  if (isRefusal(opened)) throw new Error(`refused: ${opened.status} ${opened.code}`);
  return opened;
}

describe("a sharded room end to end", () => {
  it("grows to 4 objects under traffic; every member sees every message once, in order", async () => {
    const s = server as WranglerServer;
    const room = `e2e-shard-${Date.now()}`;
    const members: Member[] = [];
    let stop = false;
    // Moved members reconnect at once, resuming after the last seq they saw.
    const mover = (async () => {
      while (!stop) {
        for (const m of members) {
          if (m.socket.closeCode === 4307) {
            const since = seqsOf(m).at(-1) ?? 0;
            takeAcks(m);
            m.earlier = seqsOf(m);
            m.moves += 1;
            m.socket = await open(s, room, m.sub, since);
            resendUnacked(m);
          }
        }
        await sleep(20);
      }
    })();
    for (let i = 0; i < MEMBERS; i++) {
      const sub = `member-${i}`;
      members.push({
        sub,
        socket: await open(s, room, sub, 0),
        earlier: [],
        moves: 0,
        sent: new Map(),
        acked: new Set(),
      });
    }
    const total = SENDERS * PER_SENDER;
    for (let round = 0; round < PER_SENDER; round++) {
      for (const m of members.slice(0, SENDERS)) {
        const frame = { type: "message", text: `r${round}`, id: `${m.sub}-${round}` };
        m.sent.set(frame.id, frame);
        m.socket.send(frame);
      }
      await sleep(25);
    }
    // A send written to a socket that was being moved never arrived: resent until acked.
    const senders = members.slice(0, SENDERS);
    let resentAt = Date.now();
    await until(
      () => {
        for (const m of senders) takeAcks(m);
        if (Date.now() - resentAt > 2000) {
          resentAt = Date.now();
          for (const m of senders) if (m.socket.closeCode === undefined) resendUnacked(m);
        }
        return senders.every((m) => m.acked.size === PER_SENDER);
      },
      "every send acked",
      60_000,
    );
    await until(
      () => members.every((m) => seqsOf(m).length >= total && m.socket.closeCode === undefined),
      () =>
        `every member at ${total}: ${members
          .filter((m) => seqsOf(m).length < total || m.socket.closeCode !== undefined)
          .map(
            (m) =>
              `${m.sub} ${seqsOf(m).length} seqs, last ${seqsOf(m).at(-1)}, moves ${m.moves}, close ${m.socket.closeCode}`,
          )
          .join("; ")}`,
      60_000,
    );
    stop = true;
    await mover;
    const want = Array.from({ length: total }, (_, i) => i + 1);
    for (const m of members) expect(seqsOf(m)).toEqual(want);
    const admin = await mintToken(s, "ops", "admin");
    const info = (await (
      await fetch(`${s.baseUrl}/api/rooms/${room}`, { headers: { Authorization: `Bearer ${admin}` } })
    ).json()) as { shards?: number; connections: number; seq: number };
    expect(info).toMatchObject({ shards: 4, seq: total });
    // Jump hashing moves a member only to a new object: one that hashes to the orderer never moved.
    expect(members.filter((m) => shardOf(m.sub, 4) === 0 && m.moves > 0)).toEqual([]);
    expect(members.filter((m) => m.moves > 0).length).toBeGreaterThan(0);
    // The roster over the socket is the room's on every object (a moved member is neither a leave
    // nor a join): each member's last socket, from its welcome on, holds all 40.
    const everyone = JSON.stringify(members.map((m) => m.sub).sort());
    const wrong = () => members.filter((m) => JSON.stringify(rosterView(m.socket.frames)) !== everyone);
    await until(
      () => wrong().length === 0,
      () =>
        `every member to hold all ${MEMBERS}: ${wrong().map((m) => `${m.sub} holds ${rosterView(m.socket.frames).length}`)}`,
      20_000,
    );
    for (const m of members) m.socket.ws.close();
  });
});
