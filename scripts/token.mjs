#!/usr/bin/env node
// `npm run token -- --sub alice [--name Alice] [--role member|readonly|admin] [--rooms lobby,team-*] [--ttl 3600]`
// Prints a JWT signed with the secret the local Worker verifies with: JWT_SECRET from the environment,
// else from .dev.vars (or .env when there is no .dev.vars, as wrangler reads them), else the dev-only
// secret that `npm run dev` passes when neither file sets a key. Says on stderr which one it used.
import { existsSync, readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { SignJWT } from "jose";
import { DEV_JWT_SECRET } from "./dev-secret.mjs";

const { values } = parseArgs({
  options: {
    sub: { type: "string" },
    name: { type: "string" },
    role: { type: "string" },
    rooms: { type: "string" },
    ttl: { type: "string", default: "3600" },
    iss: { type: "string" },
    aud: { type: "string" },
  },
});
if (!values.sub) {
  console.error(
    "usage: npm run token -- --sub <user id> [--name N] [--role member|readonly|admin] [--rooms a,b-*] [--ttl seconds]",
  );
  process.exit(2);
}
const ttl = Number(values.ttl);
if (!Number.isInteger(ttl) || ttl <= 0) {
  console.error("--ttl must be a positive whole number of seconds");
  process.exit(2);
}
const claims = { ...(values.name && { name: values.name }), ...(values.role && { role: values.role }) };
if (values.rooms)
  claims.rooms = values.rooms
    .split(",")
    .map((r) => r.trim())
    .filter(Boolean);
let jwt = new SignJWT(claims)
  .setProtectedHeader({ alg: "HS256", typ: "JWT" })
  .setSubject(values.sub)
  .setIssuedAt()
  .setExpirationTime(Math.floor(Date.now() / 1000) + ttl);
if (values.iss) jwt = jwt.setIssuer(values.iss);
if (values.aud) jwt = jwt.setAudience(values.aud);

/** A setting from a dotenv file: `NAME=value`, `NAME="value"` or `NAME='value'`. */
function fromEnvFile(file, name) {
  const match = new RegExp(`^\\s*${name}\\s*=\\s*(.*?)\\s*$`, "m").exec(readFileSync(file, "utf8"));
  return match?.[1]?.replace(/^(["'])(.*)\1$/, "$2");
}

// wrangler reads .dev.vars, or .env only when there is no .dev.vars.
const envFile = [".dev.vars", ".env"].find((f) => existsSync(f));
let secret = DEV_JWT_SECRET;
let source = "the dev-only secret of `npm run dev`";
if (process.env.JWT_SECRET) {
  secret = process.env.JWT_SECRET;
  source = "JWT_SECRET from the environment";
} else if (envFile && fromEnvFile(envFile, "JWT_SECRET")) {
  secret = fromEnvFile(envFile, "JWT_SECRET");
  source = `JWT_SECRET from ${envFile}`;
} else if (envFile && /^\s*(JWKS_URL|JWT_PUBLIC_KEY)\s*=/m.test(readFileSync(envFile, "utf8"))) {
  console.error(`${envFile} configures a public key: mint tokens with its private key, not with npm run token`);
  process.exit(2);
}
console.error(`token: signed with ${source}`);
console.log(await jwt.sign(new TextEncoder().encode(secret)));
