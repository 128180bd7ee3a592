/**
 * `useRoom` (src/react) for real: a React 19 page in StrictMode, bundled with esbuild, in headless
 * Chromium against `wrangler dev`. It renders, shows presence and a message another client sent,
 * strict mode's double mount leaves one connection (the room's own count, through the HTTP API), and
 * unmounting closes it. A screenshot is saved to test-results/react-hook.png.
 */
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { build } from "esbuild";
import { SignJWT } from "jose";
import { type Browser, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { RoomClient, type WebSocketConstructor } from "../../src/client/index";
import { REPO_ROOT, WranglerServer } from "../support/wrangler-server";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--no-first-run",
  "--disable-background-networking",
];
const RESULTS_DIR = join(REPO_ROOT, "test-results");
const UI_TIMEOUT_MS = 15_000;

let server: WranglerServer;
let browser: Browser;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM} (apt-get install -y chromium)`);
  await mkdir(RESULTS_DIR, { recursive: true });
  server = await WranglerServer.start({ vars: { DEV_TOKENS: "true" } });
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS });
});

afterAll(async () => {
  await browser?.close();
  await server?.dispose();
});

function mint(sub: string, claims: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT({ name: sub, ...claims })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(sub)
    .setExpirationTime("10m")
    .sign(new TextEncoder().encode(server.secret));
}

/** The room's live connections, as the room itself counts them (admin HTTP API). */
async function connections(room: string): Promise<number> {
  const token = await mint("auditor", { role: "admin", rooms: [room] });
  const response = await fetch(`${server.baseUrl}/api/rooms/${room}`, {
    headers: { Authorization: `Bearer ${token}` },
  });
  expect(response.status).toBe(200);
  return ((await response.json()) as { connections: number }).connections;
}

async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + UI_TIMEOUT_MS;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe("useRoom in Chromium", () => {
  it("renders the room, presence and messages; one connection under StrictMode; unmount closes it", async () => {
    const bundle = await build({
      entryPoints: [join(REPO_ROOT, "test/client/react-page.ts")],
      bundle: true,
      format: "iife",
      target: "es2022",
      write: false,
      logLevel: "warning",
      // React's development build: StrictMode then really mounts, unmounts and mounts again.
      define: { "process.env.NODE_ENV": '"development"' },
    });
    const room = `react-${Date.now().toString(36)}`;
    const bob = new RoomClient({
      url: server.baseUrl,
      room,
      token: await mint("bob", { name: "Bob" }),
      WebSocket: WebSocket as unknown as WebSocketConstructor,
    });
    const context = await browser.newContext({ viewport: { width: 640, height: 480 } });
    try {
      const page = await context.newPage();
      const pageErrors: string[] = [];
      page.on("pageerror", (error) => pageErrors.push(error.message));
      // From the server's origin: Chromium refuses a loopback socket from about:blank.
      await page.goto(`${server.baseUrl}/healthz`);
      const config = { url: server.baseUrl, room, token: await mint("alice", { name: "Alice" }) };
      await page.evaluate((c) => {
        document.body.innerHTML = '<div id="root"></div>';
        window.roomConfig = c;
        // Counts the sockets the page opens.
        const Native = window.WebSocket;
        (window as unknown as { opened: number }).opened = 0;
        window.WebSocket = class extends Native {
          constructor(url: string | URL, protocols?: string | string[]) {
            super(url, protocols);
            (window as unknown as { opened: number }).opened += 1;
          }
        };
      }, config);
      await page.addScriptTag({ content: bundle.outputFiles[0]?.text ?? "" });
      await page.waitForSelector('#state[data-state="open"]', { timeout: UI_TIMEOUT_MS });

      await page.waitForSelector('#users li[data-user="bob"]', { timeout: UI_TIMEOUT_MS });
      await bob.send("hello from Bob");
      await page.waitForSelector('#messages li[data-from="bob"]', { timeout: UI_TIMEOUT_MS });
      await page.evaluate(() => window.sendFromPage("hi Bob, it's Alice"));
      await page.waitForSelector('#messages li[data-from="alice"]', { timeout: UI_TIMEOUT_MS });

      const shown = await page.$$eval("#messages li", (items) => items.map((li) => li.textContent));
      expect(shown).toEqual(["Bob: hello from Bob", "Alice: hi Bob, it's Alice"]);
      const people = await page.$$eval("#users li", (items) => items.map((li) => li.getAttribute("data-user")).sort());
      expect(people).toEqual(["alice", "bob"]);
      // StrictMode mounted twice; the first client was closed before it opened a socket.
      expect(await page.evaluate(() => (window as unknown as { opened: number }).opened)).toBe(1);
      expect(await connections(room)).toBe(2);
      await page.screenshot({ path: join(RESULTS_DIR, "react-hook.png") });

      await page.evaluate(() => window.unmountRoom());
      await until("the page's connection to close", async () => (await connections(room)) === 1);
      expect(pageErrors).toEqual([]);
    } finally {
      bob.close();
      await context.close();
    }
  });
});
