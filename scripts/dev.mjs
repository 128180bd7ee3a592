#!/usr/bin/env node
// `npm run dev`: `wrangler dev` on 127.0.0.1:8787 with the dev-only JWT secret, unless a key is
// configured already (a --var JWT_SECRET/JWKS_URL/JWT_PUBLIC_KEY argument, or .dev.vars / .env).
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { DEV_JWT_SECRET } from "./dev-secret.mjs";

const args = process.argv.slice(2);
const KEY_SETTINGS = /^(JWT_SECRET|JWKS_URL|JWT_PUBLIC_KEY)\s*[:=]/m;
const hasKeyArg = args.some((a) => KEY_SETTINGS.test(a));
const hasKeyFile = [".dev.vars", ".env"].some((f) => existsSync(f) && KEY_SETTINGS.test(readFileSync(f, "utf8")));
const has = (flag) => args.some((a) => a === flag || a.startsWith(`${flag}=`));

const wranglerArgs = ["dev"];
if (!has("--ip")) wranglerArgs.push("--ip", "127.0.0.1");
if (!has("--port")) wranglerArgs.push("--port", "8787");
if (!hasKeyArg && !hasKeyFile) {
  wranglerArgs.push("--var", `JWT_SECRET:${DEV_JWT_SECRET}`);
  console.log("edge-rooms: using the dev-only JWT secret; mint a token with `npm run token -- --sub alice`");
}
wranglerArgs.push(...args);

const child = spawn("npx", ["wrangler", ...wranglerArgs], { stdio: "inherit" });
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => child.kill(signal));
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
