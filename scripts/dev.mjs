#!/usr/bin/env node
// `npm run dev`: `wrangler dev` on 127.0.0.1:8787 with the dev-only JWT secret, unless a key is
// configured already (a --var JWT_SECRET/JWKS_URL/JWT_PUBLIC_KEY argument, or .dev.vars / .env),
// and with DEV_TOKENS=true, which turns on the dev-only token endpoint the demo page uses
// (POST /dev/token). Neither ever goes into wrangler.toml, so `wrangler deploy` carries neither.
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { buildClient, DEMO_DIR, watchClient } from "./build-client.mjs";
import { DEV_JWT_SECRET } from "./dev-secret.mjs";

const args = process.argv.slice(2);
const KEY_SETTINGS = /^(JWT_SECRET|JWKS_URL|JWT_PUBLIC_KEY)\s*[:=]/m;
const hasKeyArg = args.some((a) => KEY_SETTINGS.test(a));
const DEV_TOKENS_SETTING = /^DEV_TOKENS\s*[:=]/m;
const inEnvFile = (pattern) =>
  [".dev.vars", ".env"].some((f) => existsSync(f) && pattern.test(readFileSync(f, "utf8")));
const hasKeyFile = inEnvFile(KEY_SETTINGS);
const hasDevTokens = args.some((a) => DEV_TOKENS_SETTING.test(a)) || inEnvFile(DEV_TOKENS_SETTING);
const has = (flag) => args.some((a) => a === flag || a.startsWith(`${flag}=`));

const wranglerArgs = ["dev"];
if (!has("--ip")) wranglerArgs.push("--ip", "127.0.0.1");
if (!has("--port")) wranglerArgs.push("--port", "8787");
if (!hasKeyArg && !hasKeyFile) {
  wranglerArgs.push("--var", `JWT_SECRET:${DEV_JWT_SECRET}`);
  console.log("edge-rooms: using the dev-only JWT secret; mint a token with `npm run -s token -- --sub alice`");
}
// Dev tokens sign with the dev secret only: not with a key the developer brought (it may be shared
// with a real environment), and not when wrangler listens beyond loopback (anyone could mint one).
const ipAt = args.indexOf("--ip");
const ip = (ipAt === -1 ? args.find((a) => a.startsWith("--ip="))?.slice(5) : args[ipAt + 1]) ?? "127.0.0.1";
const isLoopbackIp = ["127.0.0.1", "localhost", "::1", "[::1]"].includes(ip);
if (!hasDevTokens && (hasKeyArg || hasKeyFile || !isLoopbackIp)) {
  console.log("edge-rooms: dev tokens (and so the demo page's sign-in) are off: your own key, or --ip beyond loopback");
} else if (!hasDevTokens) {
  wranglerArgs.push("--var", "DEV_TOKENS:true");
  const at = args.indexOf("--port");
  const port = (at === -1 ? args.find((a) => a.startsWith("--port="))?.slice(7) : args[at + 1]) ?? "8787";
  console.log(`edge-rooms: the demo chat is at http://127.0.0.1:${port}/ (dev tokens from POST /dev/token)`);
}
if (!has("--assets")) {
  // The demo page is dev-only: built here (and again on every change) and served as static assets.
  await buildClient();
  watchClient();
  wranglerArgs.push("--assets", DEMO_DIR);
}
wranglerArgs.push(...args);

const child = spawn("npx", ["wrangler", ...wranglerArgs], { stdio: "inherit" });
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => child.kill(signal));
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
