/**
 * What `npm run dev` (scripts/dev.mjs) passes to `wrangler dev`, as a pure function so that it can be
 * tested: the listening address, the dev-only JWT secret unless a key is configured, and whether the
 * dev token endpoint (POST /dev/token) is on.
 *
 * Dev tokens take effect only through here. Inside the Worker nothing trustworthy tells who the peer
 * is or where wrangler listens: wrangler dev keeps a client-sent CF-Connecting-IP, the Host header is
 * the client's, and `request.cf` is a fixed placeholder. So the Worker mints only when it has both
 * DEV_TOKENS=true and DEV_TOKENS_RUN, a random value made here for each run; this script passes them
 * only when wrangler listens on loopback, and it always passes DEV_TOKENS and --ip itself, so that
 * neither a DEV_TOKENS in .dev.vars, .env or --var nor an `ip` in wrangler.toml can switch them on
 * beyond loopback.
 */
import { randomBytes } from "node:crypto";

const KEY_SETTINGS = /^(JWT_SECRET|JWKS_URL|JWT_PUBLIC_KEY)\s*[:=]/m;
const DEV_TOKEN_SETTINGS = /^DEV_TOKENS(_RUN)?\s*[:=]/m;

/**
 * Whether `ip` is a loopback address or name (127.0.0.0/8, ::1, localhost).
 * @param {string} ip
 */
export function isLoopbackIp(ip) {
  const bare = ip.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  return bare === "localhost" || bare === "::1" || /^127(\.\d{1,3}){3}$/.test(bare);
}

/**
 * The vars that switch the dev token endpoint on: DEV_TOKENS and a fresh random DEV_TOKENS_RUN.
 * @returns {{ DEV_TOKENS: string, DEV_TOKENS_RUN: string }}
 */
export function devTokenVars() {
  return { DEV_TOKENS: "true", DEV_TOKENS_RUN: randomBytes(16).toString("hex") };
}

/**
 * @param {string[]} args the arguments given to `npm run dev -- …`
 * @param {string} envFiles the text of .dev.vars and .env, joined
 * @param {string} devSecret the dev-only JWT secret
 * @returns {{ wranglerArgs: string[], devTokens: boolean, ip: string, port: string, notes: string[], error?: string }}
 */
export function devArgs(args, envFiles, devSecret) {
  const flagValue = (flag) => {
    const at = args.indexOf(flag);
    return at === -1 ? args.find((a) => a.startsWith(`${flag}=`))?.slice(flag.length + 1) : args[at + 1];
  };
  const rest = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i] ?? "";
    if (a === "--ip" || a === "--port") i++;
    else if (!a.startsWith("--ip=") && !a.startsWith("--port=")) rest.push(a);
  }
  const ip = flagValue("--ip") ?? "127.0.0.1";
  const port = flagValue("--port") ?? "8787";
  const notes = [];
  if (args.some((a) => DEV_TOKEN_SETTINGS.test(a))) {
    return {
      wranglerArgs: [],
      devTokens: false,
      ip,
      port,
      notes,
      error: "DEV_TOKENS is decided by npm run dev itself (on for loopback only): do not pass it with --var",
    };
  }
  const hasKey = args.some((a) => KEY_SETTINGS.test(a)) || KEY_SETTINGS.test(envFiles);
  const wranglerArgs = ["dev", "--ip", ip, "--port", port];
  if (!hasKey) {
    wranglerArgs.push("--var", `JWT_SECRET:${devSecret}`);
    notes.push("using the dev-only JWT secret; mint a token with `npm run token -- --sub alice`");
  }
  // Dev tokens sign with the dev secret only (a key the developer brought may be shared with a real
  // environment), and only while wrangler listens on loopback (else anyone could mint an admin token).
  const devTokens = !hasKey && isLoopbackIp(ip);
  if (devTokens) {
    for (const [name, value] of Object.entries(devTokenVars())) wranglerArgs.push("--var", `${name}:${value}`);
    notes.push(`the demo chat is at http://127.0.0.1:${port}/ (dev tokens from POST /dev/token)`);
  } else {
    // Overrides a DEV_TOKENS in .dev.vars or .env.
    wranglerArgs.push("--var", "DEV_TOKENS:false");
    notes.push("dev tokens (and so the demo page's sign-in) are off: your own key, or --ip beyond loopback");
  }
  wranglerArgs.push(...rest);
  return { wranglerArgs, devTokens, ip, port, notes };
}
