#!/usr/bin/env node
// `npm run dev`: `wrangler dev` on 127.0.0.1:8787 with the dev-only JWT secret, unless a key is
// configured already (a --var JWT_SECRET/JWKS_URL/JWT_PUBLIC_KEY argument, or .dev.vars / .env), and
// with the dev-only token endpoint the demo page uses (POST /dev/token) while it listens on loopback.
// scripts/lib/dev-args.mjs decides what is passed, and why dev tokens can be switched on only here.
// Neither the dev secret nor dev tokens ever go into wrangler.toml, so `wrangler deploy` carries neither.
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { buildClient, DEMO_DIR, watchClient } from "./build-client.mjs";
import { DEV_JWT_SECRET } from "./dev-secret.mjs";
import { devArgs } from "./lib/dev-args.mjs";

const args = process.argv.slice(2);
const envFiles = [".dev.vars", ".env"]
  .filter((f) => existsSync(f))
  .map((f) => readFileSync(f, "utf8"))
  .join("\n");
const { wranglerArgs, notes, error } = devArgs(args, envFiles, DEV_JWT_SECRET);
if (error !== undefined) {
  console.error(`edge-rooms: ${error}`);
  process.exit(2);
}
for (const note of notes) console.log(`edge-rooms: ${note}`);
if (!args.some((a) => a === "--assets" || a.startsWith("--assets="))) {
  // The demo page is dev-only: built here (and again on every change) and served as static assets.
  await buildClient();
  watchClient();
  wranglerArgs.push("--assets", DEMO_DIR);
}

const child = spawn("npx", ["wrangler", ...wranglerArgs], { stdio: "inherit" });
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => child.kill(signal));
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
