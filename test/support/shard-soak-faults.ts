/**
 * The faults of the shard soak (test/support/shard-soak.ts) and how each is injected: a whole
 * `wrangler dev` killed and restarted on its state (no hook), or one object's fault through the
 * test-only route `POST /api/test/rooms/:room/faults` (TEST_FAULTS=true, src/worker/test-faults.ts).
 * Growth under traffic and a stale Worker map need no injection: connecting the room makes them.
 */
import { readdirSync } from "node:fs";
import { SignJWT } from "jose";
import { groupProcesses } from "../../scripts/lib/processes.mjs";
import { shardOf } from "../../src/room/shard-map";

/** What the soak needs of a server: `wrangler dev` (WranglerServer) or bare workerd (WorkerdServer). */
export interface SoakServer {
  readonly baseUrl: string;
  readonly secret: string;
  readonly pid: number | undefined;
  count(text: string): number;
  crashAndRestart(): Promise<void>;
  kill(): void;
  dispose(): Promise<void>;
}

export function adminToken(server: SoakServer): Promise<string> {
  return new SignJWT({ role: "admin", name: "soak-admin" })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject("soak-admin")
    .setExpirationTime(Math.floor(Date.now() / 1000) + 3600)
    .sign(new TextEncoder().encode(server.secret));
}

export const SOAK_FAULTS = [
  /** The orderer's next 5 deliveries with frames are lost (it retries; shards fill gaps). */
  "lose_deliveries",
  /** The orderer's next 5 deliveries with frames are sent twice (shards skip what they have). */
  "repeat_deliveries",
  /** A sender's shard's next 3 submitBatch answers are lost after the orderer stored them. */
  "lose_submit_answers",
  /** One shard loses its memory and its sockets. */
  "shard_reset",
  /** The orderer loses its memory and its sockets. */
  "orderer_reset",
  /** wrangler and workerd are killed (SIGKILL) and started again on the same state, like a deploy. */
  "process_restart",
] as const;
export type SoakFault = (typeof SOAK_FAULTS)[number];

export function parseFaults(list: string): SoakFault[] {
  const faults = list.split(",").filter((f) => f !== "");
  for (const f of faults) {
    if (!(SOAK_FAULTS as readonly string[]).includes(f)) {
      throw new Error(`SOAK_FAULTS: unknown fault ${f} (known: ${SOAK_FAULTS.join(", ")})`);
    }
  }
  return faults as SoakFault[];
}

async function postFault(server: SoakServer, room: string, body: object): Promise<void> {
  const admin = await adminToken(server);
  const post = () =>
    fetch(`${server.baseUrl}/api/test/rooms/${room}/faults`, {
      method: "POST",
      headers: { Authorization: `Bearer ${admin}`, "Content-Type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
  // A kept-alive connection the server closed meanwhile resets the request (ECONNRESET): try again,
  // as roomInfo does. A fault that did land twice is only a larger fault.
  let response: Response | undefined;
  for (let attempt = 1; response === undefined; attempt++) {
    try {
      response = await post();
    } catch (error) {
      if (attempt >= 5) throw error;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
  if (response.status !== 200)
    throw new Error(`fault ${JSON.stringify(body)}: HTTP ${response.status} ${await response.text()}`);
}

/** Injects `fault` into `room` (of `n` objects, whose senders are `senders`). */
export async function injectFault(
  server: SoakServer,
  room: string,
  fault: SoakFault,
  { n, senders }: { n: number; senders: string[] },
): Promise<void> {
  switch (fault) {
    case "lose_deliveries":
      return postFault(server, room, { fault, count: 5 });
    case "repeat_deliveries":
      return postFault(server, room, { fault, count: 5 });
    case "lose_submit_answers": {
      const k = senders.map((s) => shardOf(s, n)).find((i) => i > 0);
      if (k === undefined) throw new Error("lose_submit_answers: no sender lives on a shard");
      return postFault(server, room, { fault, shard: k, count: 3 });
    }
    case "shard_reset":
      return postFault(server, room, { fault: "reset", shard: Math.min(3, n - 1) });
    case "orderer_reset":
      return postFault(server, room, { fault: "reset", shard: 0 });
    case "process_restart":
      return server.crashAndRestart();
  }
}

/** The most open file descriptors of any workerd process in process group `pgid` (Linux /proc). */
export function workerdFds(pgid: number): number {
  let most = 0;
  for (const p of groupProcesses(pgid)) {
    if (!p.comm.includes("workerd")) continue;
    try {
      most = Math.max(most, readdirSync(`/proc/${p.pid}/fd`).length);
    } catch {
      // gone meanwhile
    }
  }
  return most;
}
