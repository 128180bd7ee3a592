/**
 * A room's parts, built and wired together once per instance (the constructor re-runs on every
 * wake): the room class (src/room/room.ts) only dispatches the runtime's entry points and RPC to
 * them. With a bad config every entry point stops before using a part, so the fallbacks below
 * (`?? 1`, `?? 0`) never matter.
 */
import type { Config } from "../common/config";
import { loadConfig } from "../common/config";
import { CLOSE_CODES, clientFrameSchema } from "../protocol";
import { Alarms } from "./alarms";
import type { Connection } from "./connection";
import { Connections } from "./connections";
import { Ephemeral } from "./ephemeral";
import { History } from "./history";
import { Inbound } from "./inbound";
import { Messages } from "./messages";
import { objectName } from "./object-name";
import { PresenceFeed } from "./presence-feed";
import { RoomEvents } from "./room-events";
import { Sharding } from "./room-sharding";
import { parseShardName } from "./shard-map";
import { Users } from "./users";

export interface RoomParts {
  config: Config | undefined;
  history: History;
  /** Per-user state in this room: shared buckets and queued bytes (src/room/users.ts). */
  users: Users;
  /** Who is here, and every send to them. */
  connections: Connections;
  messages: Messages;
  presence: PresenceFeed;
  alarms: Alarms;
  /** Signals and presence states: never stored, bounded apart from messages. */
  ephemeral: Ephemeral;
  /** Its role in a room spread over several objects (docs/scaling.md); idle in a small room. */
  sharding: Sharding;
  /** What connections send (src/room/inbound.ts). */
  inbound: Inbound;
}

export function assembleRoom(ctx: DurableObjectState, env: Env): RoomParts {
  // Parts that call each other back are declared first; each callback runs only once all are built.
  let connections: Connections;
  let sharding: Sharding;
  let messages: Messages;
  let ephemeral: Ephemeral;
  const result = loadConfig(env);
  const config = result.ok ? result.config : undefined;
  const limits = {
    perSecond: config?.rateLimitPerSecond ?? 1,
    burst: config?.rateLimitBurst ?? 1,
    maxStrikes: config?.rateLimitStrikes ?? 1,
  };
  const userLimits = {
    perSecond: config?.userRateLimitPerSecond ?? 1,
    burst: config?.userRateLimitBurst ?? 1,
    maxStrikes: config?.rateLimitStrikes ?? 1,
  };
  const users = new Users({
    messages: userLimits,
    signals: {
      perSecond: config?.signalRatePerSecond ?? 1,
      burst: config?.signalRateBurst ?? 1,
      maxStrikes: Number.POSITIVE_INFINITY,
    },
    connectsPerMinute: config?.connectsPerUserPerMinute ?? 1,
    replayBytesPerMinute: config?.replayBytesPerUserPerMinute ?? 0,
  });
  const history = new History(ctx.storage, config?.historyLimit ?? 0);
  // With a bad config every entry point stops before using it, so its fallbacks never matter.
  const settings = {
    rateLimitBurst: config?.rateLimitBurst ?? 1,
    maxUnreadBytes: config?.maxUnreadBytes ?? 0,
    roomMaxQueuedBytes: config?.roomMaxQueuedBytes ?? 0,
  };
  const presence = new PresenceFeed(config?.presenceGraceMs ?? 0, () => connections, {
    rosterMax: config?.presenceRosterMax,
    store: ctx.storage.kv,
  });
  const hooks = {
    restored: (conn: Connection) => {
      presence.restored(conn.attachment.user);
      ephemeral.states.restored(conn);
    },
    countedOut: (conn: Connection, code: number) => presence.departed(conn.attachment.user, code === CLOSE_CODES.moved),
    closing: () => messages.flush(),
  };
  connections = new Connections(ctx, settings, hooks, users);
  connections.beforeOthers = () => presence.flushPending();
  // Webhooks: off without WEBHOOK_URL or the WEBHOOK_QUEUE binding (src/room/room-events.ts). The
  // room's name is the idFromName name (https://developers.cloudflare.com/changelog/post/2026-03-15-durable-object-id-name/).
  // A shard (`<room>~s<k>`) reports its room's name, and the room-wide count where it is known.
  const roomName = parseShardName(objectName(ctx)).room;
  const events = new RoomEvents(config?.webhooks, (env as Partial<Env>).WEBHOOK_QUEUE, roomName);
  presence.onAnnounced = (event, user, online) => {
    const wide = sharding.roomOnline(online);
    events.announced(event, user, wide ?? online, Date.now(), wide !== undefined);
  };
  sharding = new Sharding(ctx, env, config, {
    connections: () => connections,
    online: () => presence.localOnline,
    history: history,
    occupancyChanged: () => presence.countsChanged(),
    roster: {
      own: (max) => (presence.localOnline > max ? null : ephemeral.states.decorate(presence.list())),
      apply: (users) => presence.setMirror(users),
    },
  });
  presence.onLocalChange = () => sharding.rosterChanged();
  presence.wide = () => sharding.occupancy();
  const orderer = sharding.orderer;
  messages = new Messages(
    history,
    connections,
    users,
    (stored) => {
      events.committed(stored);
      orderer?.fanout.committed(stored);
    },
    sharding.shard?.log,
  );
  sharding.wire(messages);
  const alarms = new Alarms(ctx, connections);
  ephemeral = new Ephemeral(
    () => connections,
    presence,
    {
      signalMaxBytes: config?.signalMaxBytes ?? 0,
      signalRatePerSecond: config?.signalRatePerSecond ?? 1,
      signalRateBurst: config?.signalRateBurst ?? 1,
      presenceStateMaxBytes: config?.presenceStateMaxBytes ?? 0,
    },
    (conn, answer) => messages.reply(answer, conn),
  );
  presence.decorate = (entries) => ephemeral.states.decorate(entries);
  sharding.wireEphemeral(ephemeral);
  const inbound = new Inbound({
    connections: connections,
    messages: messages,
    ephemeral: ephemeral,
    sharding: sharding,
    alarms: alarms,
    frameSchema: clientFrameSchema(config?.maxTextLength ?? 0),
    limits: limits,
    userLimits: userLimits,
  });
  return { config, history, users, connections, messages, presence, alarms, ephemeral, sharding, inbound };
}
