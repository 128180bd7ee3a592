/**
 * Usage counters for the bench's cost model (`npm run bench -- --sweep`, bench/README.md "Cost
 * model"): requests to the Worker, requests and RPC calls into the room objects (by method),
 * WebSocket messages the objects received, SQLite statements and rows read and written. They are
 * what Cloudflare bills, counted rather than assumed.
 *
 * Only with `USAGE_STATS=true` (the bench sets it). Off, nothing is wrapped (the room's methods and
 * SQLite's `exec` are wrapped on the first request that finds it on) and `GET /__usage` answers 404.
 *
 * The counters are module state of one isolate. Locally, workerd runs the Worker and every room
 * object of a `wrangler dev` in one isolate, so they add up the whole room over all its objects;
 * deployed, each isolate would count its own part (use Cloudflare's analytics there).
 */
import type { Context, Next } from "hono";
import { loadConfig } from "../common/config";
import { HttpError } from "../common/errors";

const counts = new Map<string, number>();
let enabled = false;

function add(key: string, n = 1): void {
  counts.set(key, (counts.get(key) ?? 0) + n);
}

// -- SQLite rows ---------------------------------------------------------------------------------

/** Cursors not yet added up: a cursor's rows read grow while it is consumed, so they are read later. */
let pending: SqlStorageCursor<Record<string, SqlStorageValue>>[] = [];
let foldScheduled = false;
let sqlWrapped = false;

function fold(): void {
  foldScheduled = false;
  const cursors = pending;
  pending = [];
  for (const cursor of cursors) {
    add("sql.rowsRead", cursor.rowsRead);
    add("sql.rowsWritten", cursor.rowsWritten);
  }
}

/** Wraps `SqlStorage.prototype.exec` (every object's) once: each statement is counted, its rows later. */
function wrapSql(sql: SqlStorage): void {
  sqlWrapped = true;
  const proto = Object.getPrototypeOf(sql) as { exec: SqlStorage["exec"] };
  const exec = proto.exec;
  proto.exec = function (this: SqlStorage, ...args: Parameters<SqlStorage["exec"]>) {
    const cursor = exec.apply(this, args);
    if (enabled) {
      add("sql.statements");
      pending.push(cursor);
      if (!foldScheduled) {
        foldScheduled = true;
        // After the statement's caller consumed it (callers read cursors at once, in the same turn).
        setTimeout(fold, 0);
      }
    }
    return cursor;
  } as SqlStorage["exec"];
}

// -- the room's entry points -----------------------------------------------------------------------

/** Handlers the runtime calls; every other method of the room is an RPC method (a billed request). */
const HANDLERS = new Set(["fetch", "webSocketMessage", "webSocketClose", "webSocketError", "alarm"]);

/** Classes to wrap once counting is on. */
const classes: Array<{ prototype: object }> = [];

/**
 * Registers a class whose methods are counted (wrapped when counting is first switched on) as
 * `do.<handler>` or `rpc.<method>`. Methods called only inside an object (not over a stub) are
 * counted too; the room's are all entry points except `localRoster`, which the bench does not reach.
 */
export function instrumentRoom(cls: { prototype: object }): void {
  classes.push(cls);
  if (enabled) wrapPending();
}

function wrapPending(): void {
  for (const cls of classes.splice(0)) wrapClass(cls);
}

function wrapClass(cls: { prototype: object }): void {
  const proto = cls.prototype as Record<string, unknown>;
  for (const name of Object.getOwnPropertyNames(proto)) {
    const original = proto[name];
    if (name === "constructor" || typeof original !== "function") continue;
    const key = HANDLERS.has(name) ? `do.${name}` : `rpc.${name}`;
    proto[name] = function (this: { ctx?: DurableObjectState }, ...args: unknown[]) {
      // Wrapped once counting was on; a later request may have found it off again.
      if (enabled) {
        add(key);
        if (!sqlWrapped && this.ctx !== undefined) wrapSql(this.ctx.storage.sql);
      }
      return (original as (...a: unknown[]) => unknown).apply(this, args);
    };
  }
}

// -- the Worker ------------------------------------------------------------------------------------

/** Counts each request to the Worker (not `/__usage` itself) and switches counting on by the config. */
export async function countRequests(c: Context<{ Bindings: Env }>, next: Next): Promise<void> {
  const result = loadConfig(c.env);
  enabled = result.ok && result.config.usageStats;
  if (enabled) wrapPending();
  if (enabled && new URL(c.req.url).pathname !== "/__usage") add("worker.requests");
  await next();
}

/** `GET /__usage[?reset=1]`: the counters so far (then zeroed with `reset=1`); 404 unless switched on. */
export function usageResponse(c: Context<{ Bindings: Env }>): Response {
  if (!enabled) return new HttpError("not_found", "no such route").toResponse();
  fold();
  const body = Object.fromEntries([...counts].sort(([a], [b]) => (a < b ? -1 : 1)));
  if (c.req.query("reset") === "1") counts.clear();
  return Response.json(body);
}
