/**
 * The Worker entry: a Hono app that checks every upgrade (path, origin, token) and hands the good
 * ones to the room's Durable Object.
 */
import { Hono } from "hono";
import { checkKey } from "../common/auth";
import { type Config, loadConfig } from "../common/config";
import { HttpError } from "../common/errors";
import { describeError, log } from "../common/log";
import { Room } from "../room/room";
import { api } from "./api";
import { devTokens } from "./dev-tokens";
import { admit } from "./gate";
import { connectToRoom } from "./routing";
import { testFaults } from "./test-faults";
import { countRequests, instrumentRoom, usageResponse } from "./usage";
import { deliverWebhooks } from "./webhooks";

export { Room };

// Bench only (USAGE_STATS): counts calls into the room objects; nothing is wrapped while it is off.
instrumentRoom(Room);

type AppEnv = { Bindings: Env; Variables: { config: Config } };

export const app = new Hono<AppEnv>();

app.use("*", countRequests);
app.get("/__usage", usageResponse);

function configOrThrow(env: Env) {
  const result = loadConfig(env);
  if (!result.ok) {
    throw new HttpError("server_misconfigured", `the server is misconfigured: ${result.error.setting}`, {
      cause: result.error,
    });
  }
  return result.config;
}

app.get("/healthz", async (c) => {
  // Ready only when every setting parses and the key is usable (a bad PEM is caught here too).
  await checkKey(configOrThrow(c.env));
  return c.json({ ok: true });
});

app.get("/ws/chat/:room", async (c) => {
  const config = configOrThrow(c.env);
  const room = c.req.param("room");
  // The binding may have been removed from wrangler.toml: the gate then admits without the limit.
  const limiter = (c.env as Partial<Env>).CONNECT_LIMITER;
  const handoff = await admit(c.req.raw, room, config, limiter);
  return connectToRoom(c.env.ROOMS, handoff);
});

app.use("/api/*", async (c, next) => {
  c.set("config", configOrThrow(c.env));
  await next();
});
// Test only: answers 404 unless TEST_FAULTS is "true" (src/worker/test-faults.ts).
app.route("/api/test", testFaults);
app.route("/api", api);

// Dev only: answers 404 unless npm run dev switched it on (DEV_TOKENS and its per-run DEV_TOKENS_RUN).
app.route("/", devTokens);

app.notFound(() => new HttpError("not_found", "no such route").toResponse());

app.onError((error, c) => {
  const ip = c.req.header("CF-Connecting-IP") ?? null;
  const path = new URL(c.req.url).pathname;
  if (error instanceof HttpError) {
    const level = error.status >= 500 ? "error" : "info";
    const cause = error.cause === undefined ? {} : { cause: describeError(error.cause).error };
    log(level, "gate_refused", { path, status: error.status, code: error.code, ip, ...cause });
    return error.toResponse();
  }
  log("error", "unhandled_error", { path, ip, ...describeError(error) });
  return new HttpError("internal_error", "internal error").toResponse();
});

export default {
  fetch: app.fetch,
  // Webhook deliveries (src/worker/webhooks.ts): the rooms' events, from the WEBHOOK_QUEUE queue.
  queue: (batch, env) => deliverWebhooks(batch, env),
} satisfies ExportedHandler<Env>;
