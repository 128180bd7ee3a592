/**
 * The demo chat in real headless Chromium (Debian's `chromium`, driven by playwright-core) against
 * `wrangler dev`: two people join a room, chat, and see each other online; then `wrangler dev` is
 * restarted with the same persisted state while a backend posts through the HTTP API, and both pages
 * reconnect on their own and show every message once, in seq order, with no gap. A screenshot of the
 * chat is saved to test-results/.
 */
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { build } from "esbuild";
import { SignJWT } from "jose";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type * as EdgeRooms from "../../src/client/index";
import { freePort, HOST, REPO_ROOT, WranglerServer } from "../support/wrangler-server";

declare global {
  interface Window {
    /** The client SDK, bundled for the page by `loadClient`. */
    EdgeRooms: typeof EdgeRooms;
  }
}

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
/** Headless, and nothing that reaches out of this machine (see .ci/run, which installs chromium). */
const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const RESULTS_DIR = join(REPO_ROOT, "test-results");
const UI_TIMEOUT_MS = 15_000;
/** Reconnecting after a restart can take a backoff step or two on top of wrangler's start. */
const RECONNECT_TIMEOUT_MS = 45_000;

let server: WranglerServer;
let browser: Browser;
const pageErrors: string[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `no Chromium at ${CHROMIUM}: install Debian's package (apt-get install -y chromium), as .ci/run does`,
    );
  }
  await mkdir(RESULTS_DIR, { recursive: true });
  server = await WranglerServer.start({ demo: true, devTokens: true, vars: { HEARTBEAT_INTERVAL_MS: "5000" } });
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS });
});

afterAll(async () => {
  await browser?.close();
  await server?.dispose();
});

function mint(sub: string, claims: Record<string, unknown> = {}, expiresIn = "10m"): Promise<string> {
  return new SignJWT({ name: sub, ...claims })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(sub)
    .setExpirationTime(expiresIn)
    .sign(new TextEncoder().encode(server.secret));
}

/**
 * Messages meanwhile come from a backend through the HTTP API: `POST /api/rooms/:room/messages`
 * with an admin token. Resolves with the seq the room gave it.
 */
async function postFromBackend(room: string, text: string): Promise<number> {
  const token = await mint("backend", { name: "Backend", role: "admin", rooms: [room] });
  const response = await fetch(`${server.baseUrl}/api/rooms/${room}/messages`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify({ text }),
  });
  const body = await response.text();
  if (response.status !== 201) throw new Error(`POST messages answered ${response.status}: ${body}`);
  return (JSON.parse(body) as { seq: number }).seq;
}

async function openPerson(name: string): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport: { width: 1180, height: 760 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.on("pageerror", (error) => pageErrors.push(`${name}: ${error.message}`));
  await page.goto(server.baseUrl);
  await expect(page.title()).resolves.toContain("edge-rooms");
  return { context, page };
}

async function joinRoom(page: Page, name: string, room: string): Promise<void> {
  await page.fill("#name", name);
  await page.fill("#room", room);
  await page.click("#join button[type=submit]");
  await page.waitForSelector('#status[data-state="open"]', { timeout: UI_TIMEOUT_MS });
}

async function say(page: Page, text: string): Promise<void> {
  await page.fill("#text", text);
  await page.press("#text", "Enter");
}

/** The messages a page shows, in order: seq, author id and text. */
function shownMessages(page: Page) {
  return page.$$eval("#messages li.msg", (items) =>
    items.map((li) => ({
      seq: li.getAttribute("data-seq") === null ? null : Number(li.getAttribute("data-seq")),
      from: li.getAttribute("data-from"),
      text: li.querySelector(".body")?.textContent ?? "",
      isPending: li.classList.contains("pending"),
    })),
  );
}

function shownPeople(page: Page) {
  return page.$$eval("#people li", (items) => items.map((li) => li.getAttribute("data-user")).sort());
}

async function waitForSeq(page: Page, seq: number, timeout = UI_TIMEOUT_MS): Promise<void> {
  await page.waitForSelector(`#messages li.msg[data-seq="${seq}"]`, { timeout });
}

describe("the demo chat in Chromium", () => {
  it("chats between two pages and survives a wrangler dev restart without a gap", async () => {
    const room = `browser-${Date.now().toString(36)}`;
    const alice = await openPerson("alice");
    const bob = await openPerson("bob");

    // Join, and see each other online.
    await alice.page.screenshot({ path: join(RESULTS_DIR, "demo-join.png") });
    await joinRoom(alice.page, "Alice", room);
    await joinRoom(bob.page, "Bob", room);
    for (const { page } of [alice, bob]) {
      await page.waitForSelector('#people li[data-user="bob"]', { timeout: UI_TIMEOUT_MS });
      await page.waitForSelector('#people li[data-user="alice"]', { timeout: UI_TIMEOUT_MS });
      expect(await shownPeople(page)).toEqual(["alice", "bob"]);
      expect(await page.textContent("#online-count")).toBe("2");
    }

    // Chat.
    await say(alice.page, "Hi Bob! Is the edge fast today?");
    await waitForSeq(bob.page, 1);
    await say(bob.page, "Hi Alice, it is. Messages have seq numbers now.");
    await waitForSeq(alice.page, 2);
    await say(alice.page, "Then let's restart the server and see if we lose any.");
    for (const { page } of [alice, bob]) await waitForSeq(page, 3);

    // Restart wrangler dev with the same persisted state. The pages are held offline meanwhile, so
    // that what the backend posts can only reach them through the resume replay, not live.
    await server.stop();
    for (const { page, context } of [alice, bob]) {
      await page.waitForSelector('#status[data-state="reconnecting"]', { timeout: UI_TIMEOUT_MS });
      await context.setOffline(true);
    }
    await server.restart();
    const meanwhile = ["Deploy finished", "Build #4711 is green", "Release notes are up"];
    const seqs: number[] = [];
    for (const text of meanwhile) seqs.push(await postFromBackend(room, text));
    expect(seqs).toEqual([4, 5, 6]);
    for (const { page, context } of [alice, bob]) {
      expect(await page.getAttribute("#status", "data-state")).toBe("reconnecting");
      await context.setOffline(false);
    }

    // Both pages come back on their own and catch up.
    for (const { page } of [alice, bob]) {
      await page.waitForSelector('#status[data-state="open"]', { timeout: RECONNECT_TIMEOUT_MS });
      await waitForSeq(page, 6);
    }
    await say(bob.page, "Back, and nothing is missing.");
    for (const { page } of [alice, bob]) await waitForSeq(page, 7);

    const expected = [
      { seq: 1, from: "alice", text: "Hi Bob! Is the edge fast today?" },
      { seq: 2, from: "bob", text: "Hi Alice, it is. Messages have seq numbers now." },
      { seq: 3, from: "alice", text: "Then let's restart the server and see if we lose any." },
      { seq: 4, from: "backend", text: meanwhile[0] },
      { seq: 5, from: "backend", text: meanwhile[1] },
      { seq: 6, from: "backend", text: meanwhile[2] },
      { seq: 7, from: "bob", text: "Back, and nothing is missing." },
    ];
    for (const { page } of [alice, bob]) {
      const shown = await shownMessages(page);
      expect(shown.map(({ seq, from, text }) => ({ seq, from, text }))).toEqual(expected);
      expect(shown.some((m) => m.isPending)).toBe(false);
      await page.waitForSelector('#people li[data-user="bob"]', { timeout: UI_TIMEOUT_MS });
      await page.waitForSelector('#people li[data-user="alice"]', { timeout: UI_TIMEOUT_MS });
      expect(await shownPeople(page)).toEqual(["alice", "bob"]);
      expect(Number(await page.textContent("#stat-reconnects"))).toBeGreaterThanOrEqual(1);
      expect(await page.textContent("#messages")).toContain("Reconnected · resumed after #3");
    }

    const screenshot = join(RESULTS_DIR, "demo-chat.png");
    await alice.page.screenshot({ path: screenshot });
    await bob.page.screenshot({ path: join(RESULTS_DIR, "demo-chat-bob.png") });
    expect(existsSync(screenshot)).toBe(true);
    expect(pageErrors).toEqual([]);
    await alice.context.close();
    await bob.context.close();
  });
});

describe("typing and status in the demo chat", () => {
  it("shows who is typing (signals) and each user's status (presence state) on the other page", async () => {
    const room = `signals-${Date.now().toString(36)}`;
    const alice = await openPerson("alice");
    const bob = await openPerson("bob");
    await joinRoom(alice.page, "Alice", room);
    await joinRoom(bob.page, "Bob", room);
    await bob.page.waitForSelector('#people li[data-user="alice"][data-status="available"]', {
      timeout: UI_TIMEOUT_MS,
    });

    // Alice types: Bob sees it, and it expires about 3 s after her last keystroke.
    await alice.page.type("#text", "Hello Bob", { delay: 30 });
    await bob.page.waitForSelector('#typing[data-users="alice"]', { timeout: UI_TIMEOUT_MS });
    expect(await bob.page.textContent("#typing")).toBe("Alice is typing…");
    expect(await alice.page.textContent("#typing")).toBe("");

    // Bob turns busy: Alice sees it.
    await bob.page.selectOption("#my-status", "busy");
    await alice.page.waitForSelector('#people li[data-user="bob"][data-status="busy"]', { timeout: UI_TIMEOUT_MS });
    expect(await alice.page.textContent('#people li[data-user="bob"] .presence-status')).toBe("busy");
    await bob.page.screenshot({ path: join(RESULTS_DIR, "demo-typing.png") });
    await alice.page.screenshot({ path: join(RESULTS_DIR, "demo-status.png") });

    await bob.page.waitForSelector('#typing:not([data-users="alice"])', { timeout: UI_TIMEOUT_MS });
    // Sending the message clears the indicator at once.
    await alice.page.type("#text", "!", { delay: 30 });
    await bob.page.waitForSelector('#typing[data-users="alice"]', { timeout: UI_TIMEOUT_MS });
    await alice.page.press("#text", "Enter");
    await bob.page.waitForSelector('#typing[data-users=""]', { timeout: 2_000 });
    await waitForSeq(bob.page, 1);
    expect(pageErrors).toEqual([]);
    await alice.context.close();
    await bob.context.close();
  });
});

/** A page on the server's origin with the client SDK loaded as `window.EdgeRooms`. */
async function loadClient(): Promise<{ context: BrowserContext; page: Page }> {
  const bundle = await build({
    entryPoints: [join(REPO_ROOT, "src/client/index.ts")],
    bundle: true,
    format: "iife",
    globalName: "EdgeRooms",
    target: "es2022",
    write: false,
    logLevel: "warning",
  });
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (error) => pageErrors.push(`client page: ${error.message}`));
  await page.goto(`${server.baseUrl}/healthz`);
  await page.addScriptTag({ content: bundle.outputFiles[0]?.text ?? "" });
  return { context, page };
}

interface Outcome {
  stop: EdgeRooms.Stop | undefined;
  retries: EdgeRooms.Retry[];
  welcomes: number;
  closedAfterMs: number;
}

describe("RoomClient in Chromium", () => {
  it("stops on a refused upgrade, whose status the browser hides, without retrying", async () => {
    const { context, page } = await loadClient();
    const badToken = await mint("mallory", {}, "-1h");
    const outcome = await page.evaluate(
      ({ url, token }) =>
        new Promise<Outcome>((resolve) => {
          const started = Date.now();
          const retries: EdgeRooms.Retry[] = [];
          const client = new window.EdgeRooms.RoomClient({ url, room: "refused", token: async () => token });
          client.on("retry", (r) => retries.push(r));
          client.on("state", (s) => {
            if (s.state === "closed")
              resolve({ stop: s.stop, retries, welcomes: 0, closedAfterMs: Date.now() - started });
          });
        }),
      { url: server.baseUrl, token: badToken },
    );
    expect(outcome.stop).toMatchObject({ code: "handshake_refused" });
    expect(outcome.stop?.status).toBeUndefined();
    expect(outcome.retries).toEqual([]);
    await context.close();
  });

  it("keeps retrying, with backoff, while nothing answers at the server's address", async () => {
    const { context, page } = await loadClient();
    const outcome = await page.evaluate(
      ({ url }) =>
        new Promise<Outcome>((resolve) => {
          const started = Date.now();
          const retries: EdgeRooms.Retry[] = [];
          const client = new window.EdgeRooms.RoomClient({
            url,
            room: "down",
            token: "unused",
            reconnect: { initialDelayMs: 100, maxDelayMs: 200, maxAttempts: 3 },
          });
          client.on("retry", (r) => retries.push(r));
          client.on("state", (s) => {
            if (s.state === "closed")
              resolve({ stop: s.stop, retries, welcomes: 0, closedAfterMs: Date.now() - started });
          });
        }),
      { url: `http://${HOST}:${await freePort()}` },
    );
    expect(outcome.retries.map((r) => [r.attempt, r.reason])).toEqual([
      [1, "unreachable"],
      [2, "unreachable"],
      [3, "unreachable"],
    ]);
    expect(outcome.stop).toMatchObject({ code: "retries_exhausted" });
    await context.close();
  });

  it("stops when an admin kicks the user (4403)", async () => {
    const { context, page } = await loadClient();
    const room = `kick-${Date.now().toString(36)}`;
    const token = await mint("carol");
    const admin = await mint("ops", { role: "admin" });
    await page.evaluate(
      ({ url, room, token }) =>
        new Promise<void>((resolve) => {
          const client = new window.EdgeRooms.RoomClient({ url, room, token: async () => token });
          (window as unknown as { outcome: Promise<Outcome> }).outcome = new Promise((done) => {
            let welcomes = 0;
            let kickedAt = 0;
            const retries: EdgeRooms.Retry[] = [];
            client.on("retry", (r) => retries.push(r));
            client.on("welcome", () => {
              welcomes += 1;
              kickedAt = Date.now();
              resolve();
            });
            client.on("state", (s) => {
              if (s.state === "closed") done({ stop: s.stop, retries, welcomes, closedAfterMs: Date.now() - kickedAt });
            });
          });
        }),
      { url: server.baseUrl, room, token },
    );
    const response = await fetch(`${server.baseUrl}/api/rooms/${room}/users/carol`, {
      method: "DELETE",
      headers: { Authorization: `Bearer ${admin}` },
    });
    expect(response.status).toBe(204);
    const outcome = await page.evaluate(() => (window as unknown as { outcome: Promise<Outcome> }).outcome);
    expect(outcome.stop).toMatchObject({ code: "forbidden", closeCode: 4403 });
    expect(outcome.retries).toEqual([]);
    expect(outcome.welcomes).toBe(1);
    // Local workerd leaves the TCP connection open after a kick's closing handshake; Chromium gives
    // up waiting for it after about 2 s and then reports the close with its code.
    expect(outcome.closedAfterMs).toBeLessThan(8_000);
    await context.close();
  });
});
