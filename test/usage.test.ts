/**
 * The bench's usage counters (src/worker/usage.ts, USAGE_STATS): off by default and then invisible;
 * on, requests to the Worker, calls into an instrumented class and SQLite rows are counted.
 */
import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { app } from "../src/worker/index";
import { instrumentRoom } from "../src/worker/usage";
import { roomStub, settle, uniqueRoom } from "./helpers";

const on = () => ({ ...env, USAGE_STATS: "true" });
const usage = async (reset = false) => {
  const response = await app.request(`/__usage${reset ? "?reset=1" : ""}`, {}, on());
  expect(response.status).toBe(200);
  return (await response.json()) as Record<string, number>;
};

describe("usage counters", () => {
  it("answer 404 and count nothing while USAGE_STATS is off (the default)", async () => {
    await usage(true);
    const off = await app.request("/__usage", {}, env);
    expect(off.status).toBe(404);
    await app.request("/healthz", {}, env);
    expect(await usage()).toEqual({});
  });

  it("count Worker requests, calls by method and SQLite rows while on; reset=1 zeroes them", async () => {
    class Probe {
      constructor(readonly ctx: DurableObjectState) {}
      /** Writes `rows` rows and reads them back; the rows each cursor says it read and wrote. */
      write(rows: number): { read: number; written: number; selected: number } {
        const sql = this.ctx.storage.sql;
        const cursors = [sql.exec("CREATE TABLE IF NOT EXISTS usage_probe (x INTEGER)")];
        for (let i = 0; i < rows; i++) cursors.push(sql.exec("INSERT INTO usage_probe VALUES (?)", i));
        const select = sql.exec("SELECT x FROM usage_probe");
        const selected = select.toArray().length;
        cursors.push(select);
        return {
          read: cursors.reduce((n, c) => n + c.rowsRead, 0),
          written: cursors.reduce((n, c) => n + c.rowsWritten, 0),
          selected,
        };
      }
      async fetch(): Promise<number> {
        return 1;
      }
    }
    // Off: registering wraps nothing; the first request that finds counting on wraps the class.
    expect((await app.request("/healthz", {}, env)).status).toBe(200);
    const plain = Object.getOwnPropertyDescriptor(Probe.prototype, "write")?.value;
    instrumentRoom(Probe);
    expect(Object.getOwnPropertyDescriptor(Probe.prototype, "write")?.value).toBe(plain);
    await usage(true);
    expect(Object.getOwnPropertyDescriptor(Probe.prototype, "write")?.value).not.toBe(plain);
    expect((await app.request("/healthz", {}, on())).status).toBe(200);
    const read = await runInDurableObject(roomStub(uniqueRoom("usage")), (_instance, state) => {
      const probe = new Probe(state);
      void probe.fetch();
      return probe.write(3);
    });
    expect(read.selected).toBe(3);
    expect(read.written).toBeGreaterThanOrEqual(3);
    await settle(20);
    const counts = await usage(true);
    expect(counts["worker.requests"]).toBe(1);
    expect(counts["rpc.write"]).toBe(1);
    expect(counts["do.fetch"]).toBe(1);
    expect(counts["sql.rowsWritten"]).toBe(read.written);
    expect(counts["sql.rowsRead"]).toBe(read.read);
    expect(counts["sql.statements"]).toBe(5);
    expect(await usage()).toEqual({});
  });
});
