#!/usr/bin/env node
// `npm run token -- --sub alice [--name Alice] [--role member|readonly|admin] [--rooms lobby,team-*] [--ttl 3600]`
// Prints a JWT signed with JWT_SECRET from the environment, or else the dev-only secret.
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
const secret = process.env.JWT_SECRET || DEV_JWT_SECRET;
console.log(await jwt.sign(new TextEncoder().encode(secret)));
