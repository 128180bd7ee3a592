/**
 * The shard soak (docs/scaling.md "Soak"): one `wrangler dev`, one room grown to `shards` objects of
 * `perShard` sockets each, real `ws` clients spread over child processes (test/e2e/soak/clients.mjs,
 * each under its own file-descriptor limit), senders sending all along, and faults injected one after
 * another while they send. At the end every client must hold exactly the seqs the room stored,
 * 1..N, each once, in order, and every acked message must be stored exactly once.
 */
import { type ChildProcess, fork } from "node:child_process";
import { loadavg } from "node:os";
import { join } from "node:path";
import { shardOf } from "../../src/room/shard-map";
import { sleep } from "./attack-kit";
import { adminToken, injectFault, parseFaults, type SoakFault, type SoakServer, workerdFds } from "./shard-soak-faults";
import { WorkerdServer } from "./workerd-server";
import { REPO_ROOT, WranglerServer } from "./wrangler-server";

export type { SoakFault } from "./shard-soak-faults";

export interface SoakOptions {
  /** `wrangler`: `wrangler dev` (its dev proxy holds ~6 descriptors per socket); `workerd`: bare workerd. */
  server: "wrangler" | "workerd";
  shards: number;
  perShard: number;
  senders: number;
  /** Each sender sends one message per interval (while fewer than 16 of its own are unacked). */
  sendIntervalMs: number;
  /** At most this many messages per sender (the room keeps HISTORY_LIMIT ≤ 10,000). */
  maxPerSender: number;
  /**
   * Percent of the users that connect in plain order (u0, u1, …), most of whom are moved (4307) as
   * the room grows; the others connect in the order of the object they end in, after it exists, and
   * never move. 100: everyone in plain order. (Local workerd keeps a descriptor per socket it closed
   * in CLOSE-WAIT, so the full size cannot afford ~12,000 moves within 20,000 descriptors.)
   */
  plainOrderPercent: number;
  children: number;
  faults: SoakFault[];
  /** The whole run, connects and checks included. */
  timeoutMs: number;
  /** How long one fault may take until every client is back and caught up. */
  faultTimeoutMs: number;
  /** The server's HEARTBEAT_INTERVAL_MS (the clients echo every heartbeat unless SOAK_ECHO_HEARTBEATS=0). */
  heartbeatIntervalMs: number;
  log: (line: string) => void;
}

export interface FaultTiming {
  fault: SoakFault;
  /** Latest seq when it was injected, and the seq every client had to reach afterwards. */
  atSeq: number;
  caughtUpTo: number;
  /** From injection until every client had an open socket and every seq up to `caughtUpTo`. */
  recoveredMs: number;
}

export interface SoakReport {
  clients: number;
  objects: number;
  messages: number;
  acked: number;
  deliveries: number;
  lost: number;
  duplicated: number;
  outOfOrder: number;
  /** Frames with a seq above the room's last (must be 0). */
  beyond: number;
  /** Acked ids stored twice, acked ids not stored, stored messages without an id or with gaps in seq. */
  storedTwice: number;
  ackedNotStored: number;
  storeAnomalies: number;
  reconnects: number;
  /** Failed connect attempts, by outcome (a refusal's status, or the connection error). */
  refusedAttempts: Record<string, number>;
  notRecovered: number;
  storeFailedFrames: number;
  closes: Record<string, number>;
  connectMs: number;
  totalMs: number;
  faults: FaultTiming[];
  workerdMaxFds: number;
  maxLoad1: number;
  logs: Record<string, number>;
  bad: string[];
}

/** Log lines counted over the run (each one JSON line of src/common/log.ts). */
const WATCHED = [
  '"shard_grown"',
  '"shard_moving"',
  '"shard_deliver_failed"',
  '"shard_forward_failed"',
  '"shard_gap_lost"',
  '"shard_behind"',
];

interface ChildLink {
  child: ChildProcess;
  last: Record<string, unknown>;
  waiters: Array<{ type: string; resolve: (m: Record<string, unknown>) => void }>;
}

function forkChild(): ChildLink {
  const child = fork(join(REPO_ROOT, "test", "e2e", "soak", "clients.mjs"), [], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
    // Plain node: not the test runner's loader flags.
    execArgv: [],
  });
  const link: ChildLink = { child, last: {}, waiters: [] };
  child.on("message", (m: Record<string, unknown>) => {
    link.last[m.type as string] = m;
    const i = link.waiters.findIndex((w) => w.type === m.type);
    if (i >= 0) link.waiters.splice(i, 1)[0]?.resolve(m);
  });
  return link;
}

function ask(
  link: ChildLink,
  message: { type: string; [key: string]: unknown },
  answer = message.type,
  timeoutMs = 30_000,
) {
  return new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`child: no ${answer} in ${timeoutMs} ms`)), timeoutMs);
    link.waiters.push({
      type: answer,
      resolve: (m) => {
        clearTimeout(timer);
        resolve(m);
      },
    });
    link.child.send(message);
  });
}

/** The room's info over the HTTP API, retried while the server restarts. */
async function roomInfo(server: SoakServer, room: string): Promise<{ seq: number; shards?: number }> {
  const admin = await adminToken(server);
  for (let attempt = 0; ; attempt++) {
    try {
      const response = await fetch(`${server.baseUrl}/api/rooms/${room}`, {
        headers: { Authorization: `Bearer ${admin}` },
        signal: AbortSignal.timeout(10_000),
      });
      if (response.ok) return (await response.json()) as { seq: number; shards?: number };
    } catch {
      // restarting
    }
    if (attempt > 60) throw new Error("the room's info did not come");
    await sleep(500);
  }
}

/** Every stored message of the room, oldest first, through the HTTP API. */
async function storedMessages(server: SoakServer, room: string): Promise<Array<{ seq: number; id?: string }>> {
  const admin = await adminToken(server);
  const out: Array<{ seq: number; id?: string }> = [];
  for (let since = 0; ; ) {
    const response = await fetch(`${server.baseUrl}/api/rooms/${room}/messages?since=${since}&limit=500`, {
      headers: { Authorization: `Bearer ${admin}` },
    });
    const page = (await response.json()) as { messages: Array<{ seq: number; id?: string }>; hasMore: boolean };
    out.push(...page.messages);
    const last = page.messages.at(-1);
    if (!page.hasMore || last === undefined) return out;
    since = last.seq;
  }
}

async function progressOf(links: ChildLink[], seq: number) {
  const answers = await Promise.all(links.map((l) => ask(l, { type: "progress", seq })));
  const sum = (key: string) => answers.reduce((n, a) => n + Number(a[key] ?? 0), 0);
  return {
    open: sum("open"),
    atLeast: sum("atLeast"),
    clients: sum("clients"),
    sent: sum("sent"),
    acked: sum("acked"),
    unacked: sum("unacked"),
  };
}

async function waitCaughtUp(links: ChildLink[], seq: number, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const p = await progressOf(links, seq);
    if (p.atLeast === p.clients) return;
    if (Date.now() > deadline) {
      // Why: closes and failed connects so far, and some of the clients behind.
      const details = await Promise.all(links.map((l) => ask(l, { type: "progress", seq, detail: true })));
      throw new Error(
        `${what}: after ${timeoutMs} ms, ${p.atLeast}/${p.clients} clients open with seq ≥ ${seq} (${p.open} open)\n` +
          details.map((d) => JSON.stringify({ closes: d.closes, refusals: d.refusals, behind: d.behind })).join("\n"),
      );
    }
    await sleep(250);
  }
}

/** Runs one soak and returns its counts; throws only when it could not run to the end. */
export async function runShardSoak(o: SoakOptions): Promise<SoakReport> {
  const started = Date.now();
  const total = o.shards * o.perShard;
  const vars = {
    LOG_LEVEL: "info",
    TEST_FAULTS: "true",
    SHARD_MAX: String(o.shards),
    SHARD_GROW_AT: String(o.perShard),
    // Room for the hash's spread and for sockets still moving out.
    MAX_CONNECTIONS_PER_ROOM: String(Math.min(32_768, o.perShard * 2)),
    SHARD_MOVES_PER_SECOND: "1000",
    // The soak holds its size: a reconnect storm after a restart must not shrink the room.
    SHARD_SHRINK_AFTER_MS: "3600000",
    HISTORY_LIMIT: "10000",
    PRESENCE_GRACE_MS: "0",
    // Every client reconnects after each reset and move: more than a person would in a minute.
    CONNECTS_PER_USER_PER_MINUTE: "600",
    // Heartbeat rounds (and so every object's alarm) come due before the restart: a restarted
    // process then wakes objects by their alarms, without their names (src/room/object-name.ts).
    HEARTBEAT_INTERVAL_MS: String(o.heartbeatIntervalMs),
  };
  const server: SoakServer =
    o.server === "workerd"
      ? await WorkerdServer.start({ vars, watch: WATCHED })
      : await WranglerServer.start({ vars, watch: WATCHED });
  const links: ChildLink[] = [];
  let maxLoad1 = loadavg()[0] ?? 0;
  let workerdMaxFds = 0;
  let ticks = 0;
  const sampler = setInterval(() => {
    maxLoad1 = Math.max(maxLoad1, loadavg()[0] ?? 0);
    const fds = server.pid === undefined ? 0 : workerdFds(server.pid);
    workerdMaxFds = Math.max(workerdMaxFds, fds);
    if (++ticks % 15 === 0) {
      const connected = links.reduce((n, l) => n + Number((l.last.connected as { open?: number })?.open ?? 0), 0);
      o.log(
        `soak: ${Math.round((Date.now() - started) / 1000)} s: ${connected} connected once, workerd fds ${fds}, load ${loadavg()[0]?.toFixed(2)}`,
      );
    }
  }, 1000);
  const hardStop = setTimeout(() => {
    o.log(`soak: hard timeout after ${o.timeoutMs} ms: stopping`);
    for (const l of links) l.child.kill("SIGKILL");
    server.kill();
  }, o.timeoutMs);
  try {
    const room = `soak-${Date.now()}`;
    const users = connectOrder(total, o.shards, o.plainOrderPercent);
    // Senders on every object (a lost submit answer needs one on a shard); they connect first.
    const senders: string[] = [];
    for (let i = 0; senders.length < Math.min(o.senders, total); i++) {
      const want = i % o.shards;
      const found = users.find((u) => shardOf(u, o.shards) === want && !senders.includes(u));
      if (found !== undefined) senders.push(found);
      if (i > o.senders * o.shards * 2) break;
    }
    for (let c = 0; c < o.children; c++) links.push(forkChild());
    links.forEach((l, c) => {
      const mine = users.filter((_, i) => i % o.children === c);
      l.child.send({
        type: "start",
        baseUrl: server.baseUrl,
        secret: server.secret,
        room,
        users: mine,
        senders: senders.filter((s) => mine.includes(s)),
      });
      l.child.send({ type: "send", intervalMs: o.sendIntervalMs, max: o.maxPerSender });
    });
    // Growth (splits while traffic flows, a stale map in the Worker) comes from connecting.
    await Promise.all(
      links.map(
        (l) =>
          new Promise<void>((resolve) => {
            if ((l.last.connected as { done?: boolean } | undefined)?.done) resolve();
            else
              l.waiters.push({ type: "connected", resolve: (m) => (m.done ? resolve() : forkWaitAgain(l, resolve)) });
          }),
      ),
    );
    const connectMs = Date.now() - started;
    o.log(`soak: ${total} sockets connected in ${connectMs} ms`);
    let info = await roomInfo(server, room);
    await waitCaughtUp(links, info.seq, o.faultTimeoutMs, "after connecting");
    info = await roomInfo(server, room);
    o.log(`soak: room at ${info.shards ?? 1} objects, seq ${info.seq}`);
    const faults: FaultTiming[] = [];
    for (const fault of o.faults) {
      const atSeq = (await roomInfo(server, room)).seq;
      const t0 = Date.now();
      await injectFault(server, room, fault, { n: o.shards, senders });
      // What was sent around the fault must reach everyone too.
      await sleep(1000);
      const caughtUpTo = (await roomInfo(server, room)).seq;
      await waitCaughtUp(links, caughtUpTo, o.faultTimeoutMs, `after ${fault}`);
      faults.push({ fault, atSeq, caughtUpTo, recoveredMs: Date.now() - t0 });
      o.log(`soak: ${fault} at seq ${atSeq}: every client open and at ${caughtUpTo} after ${Date.now() - t0} ms`);
    }
    await Promise.all(links.map((l) => ask(l, { type: "stopSending" }, "stopped")));
    // Senders resend what was not acked until it is.
    const ackDeadline = Date.now() + o.faultTimeoutMs;
    for (;;) {
      const p = await progressOf(links, 0);
      if (p.unacked === 0) break;
      if (Date.now() > ackDeadline) throw new Error(`${p.unacked} messages never acked`);
      await sleep(250);
    }
    const final = await roomInfo(server, room);
    const results = await Promise.all(
      links.map((l) =>
        ask(l, { type: "finish", seq: final.seq, timeoutMs: o.faultTimeoutMs }, "result", o.faultTimeoutMs + 30_000),
      ),
    );
    const sum = (key: string) => results.reduce((n, r) => n + Number(r[key] ?? 0), 0);
    const merged = (key: string) => {
      const out: Record<string, number> = {};
      for (const r of results) {
        for (const [k, n] of Object.entries(r[key] as Record<string, number>)) out[k] = (out[k] ?? 0) + n;
      }
      return out;
    };
    const closes = merged("closes");
    const acked = results.flatMap((r) => r.ids as string[]);
    const stored = await storedMessages(server, room);
    const byId = new Map<string, number>();
    let storeAnomalies = 0;
    stored.forEach((m, i) => {
      if (m.seq !== i + 1) storeAnomalies += 1;
      if (m.id === undefined) storeAnomalies += 1;
      else byId.set(m.id, (byId.get(m.id) ?? 0) + 1);
    });
    if (stored.length !== final.seq) storeAnomalies += 1;
    return {
      clients: total,
      objects: final.shards ?? 1,
      messages: final.seq,
      acked: acked.length,
      deliveries: sum("frames"),
      lost: sum("missing"),
      duplicated: sum("duplicates"),
      outOfOrder: sum("outOfOrder"),
      beyond: sum("beyond"),
      storedTwice: [...byId.values()].filter((n) => n > 1).length,
      ackedNotStored: acked.filter((id) => !byId.has(id)).length,
      storeAnomalies,
      reconnects: sum("reconnects"),
      refusedAttempts: merged("refusals"),
      notRecovered: sum("notRecovered"),
      storeFailedFrames: sum("storeFailed"),
      closes,
      connectMs,
      totalMs: Date.now() - started,
      faults,
      workerdMaxFds,
      maxLoad1,
      logs: Object.fromEntries(WATCHED.map((w) => [w.replaceAll('"', ""), server.count(w)])),
      bad: results.flatMap((r) => r.bad as string[]).slice(0, 20),
    };
  } finally {
    clearInterval(sampler);
    clearTimeout(hardStop);
    for (const l of links) l.child.kill("SIGKILL");
    await server.dispose();
  }
}

/**
 * u0…u(total−1) in the order they connect: `percent` % of them (every k-th) in plain order, spread
 * evenly; the rest by the object they belong to at `n` objects (jump hashing moves a user only to a
 * new object, so one that connects after its final object exists never moves).
 */
export function connectOrder(total: number, n: number, percent: number): string[] {
  const users = Array.from({ length: total }, (_, i) => `u${i}`);
  if (percent >= 100) return users;
  const every = Math.max(1, Math.round(100 / Math.max(1, percent)));
  const plain = users.filter((_, i) => i % every === 0);
  const byObject = users.filter((_, i) => i % every !== 0).sort((a, b) => shardOf(a, n) - shardOf(b, n));
  const out: string[] = [];
  const step = byObject.length / Math.max(1, plain.length);
  let next = 0;
  for (const [j, user] of plain.entries()) {
    while (next < byObject.length && next < Math.round(j * step)) out.push(byObject[next++] as string);
    out.push(user);
  }
  while (next < byObject.length) out.push(byObject[next++] as string);
  return out;
}

function forkWaitAgain(l: ChildLink, resolve: () => void): void {
  l.waiters.push({ type: "connected", resolve: (m) => (m.done ? resolve() : forkWaitAgain(l, resolve)) });
}

/** The report as lines of text, as the soak prints it. */
export function formatReport(r: SoakReport, o: SoakOptions): string {
  const lines = [
    `shard soak (${o.server}): ${o.shards} objects × ${o.perShard} sockets, ${o.senders} senders every ${o.sendIntervalMs} ms, ${o.children} client processes, ${o.plainOrderPercent}% connecting in plain order, heartbeats every ${o.heartbeatIntervalMs} ms${process.env.SOAK_ECHO_HEARTBEATS === "0" ? " (not echoed)" : ""}`,
    `  clients ${r.clients}, objects ${r.objects}, messages stored ${r.messages} (acked ${r.acked}), deliveries ${r.deliveries}`,
    `  lost ${r.lost}, duplicated ${r.duplicated}, out of order ${r.outOfOrder}, beyond the last seq ${r.beyond}`,
    `  stored: acked ids stored twice ${r.storedTwice}, acked but not stored ${r.ackedNotStored}, other anomalies ${r.storeAnomalies}`,
    `  reconnects ${r.reconnects} (closes ${JSON.stringify(r.closes)}), failed connect attempts ${JSON.stringify(r.refusedAttempts)}, welcome recovered:false ${r.notRecovered}, store_failed frames ${r.storeFailedFrames}`,
    `  connect ${(r.connectMs / 1000).toFixed(1)} s, total ${(r.totalMs / 1000).toFixed(1)} s, workerd max fds ${r.workerdMaxFds}, max 1-min load ${r.maxLoad1.toFixed(2)}`,
    `  server log lines: ${JSON.stringify(r.logs)}`,
    ...r.faults.map(
      (f) =>
        `  fault ${f.fault}: at seq ${f.atSeq}; every client open and at seq ${f.caughtUpTo} after ${f.recoveredMs} ms`,
    ),
    ...r.bad.map((b) => `  bad: ${b}`),
  ];
  return lines.join("\n");
}

/** Reads the soak's options from SOAK_* variables over `defaults`. */
export function soakOptionsFromEnv(defaults: Omit<SoakOptions, "log">, log: (line: string) => void): SoakOptions {
  const num = (name: string, fallback: number) => {
    const raw = process.env[name];
    if (raw === undefined || raw === "") return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a whole number ≥ 1`);
    return n;
  };
  const faults = process.env.SOAK_FAULTS;
  return {
    server: serverKind(process.env.SOAK_SERVER ?? defaults.server),
    shards: num("SOAK_SHARDS", defaults.shards),
    perShard: num("SOAK_PER_SHARD", defaults.perShard),
    senders: num("SOAK_SENDERS", defaults.senders),
    sendIntervalMs: num("SOAK_SEND_INTERVAL_MS", defaults.sendIntervalMs),
    maxPerSender: num("SOAK_MAX_PER_SENDER", defaults.maxPerSender),
    plainOrderPercent: num("SOAK_PLAIN_ORDER_PERCENT", defaults.plainOrderPercent),
    children: num("SOAK_CHILDREN", defaults.children),
    faults: faults === undefined ? defaults.faults : parseFaults(faults),
    timeoutMs: num("SOAK_TIMEOUT_MS", defaults.timeoutMs),
    faultTimeoutMs: num("SOAK_FAULT_TIMEOUT_MS", defaults.faultTimeoutMs),
    heartbeatIntervalMs: num("SOAK_HEARTBEAT_INTERVAL_MS", defaults.heartbeatIntervalMs),
    log,
  };
}

function serverKind(raw: string): SoakOptions["server"] {
  if (raw !== "wrangler" && raw !== "workerd") throw new Error("SOAK_SERVER must be wrangler or workerd");
  return raw;
}
