/**
 * The sweep's two measurements on a running server: one room size (fill the room, a warm-up, a
 * measured step, the cost model), and the orderer phase (the runtime's CPU per message with the
 * senders only, then with listeners added: the fixed part and the part per delivery). Each appends
 * its row to `rows` or `orderer`.
 */
import { randomBytes } from "node:crypto";
import { sleep } from "../../scripts/lib/processes.mjs";
import { rowCost } from "./sweep-report.mjs";

/**
 * @param {object} o
 * @param {ReturnType<typeof import("./sweep-options.mjs").sweepOptions>["options"]} o.options
 * @param {ReturnType<typeof import("./sweep-servers.mjs").sweepServers>} o.servers
 * @param {any[]} o.rows
 * @param {any[]} o.orderer
 * @param {(line: string) => void} o.log
 */
export function sweepPhases({ options, servers, rows, orderer, log }) {
  const { roomOf, usageOf, objectsOf } = servers;
  /**
   * One size on one running server.
   * @param {import("./wrangler.mjs").RunningServer} server @param {string} mode @param {number} n
   */
  async function runSize(server, mode, n) {
    const edge = mode !== "ceiling";
    const room = `sweep-${mode}-${n}-${randomBytes(3).toString("hex")}`;
    const r = roomOf(server, room, n, edge);
    log(`  ${mode} ${n}: opening…`);
    const usage = usageOf(server, edge);
    await usage();
    const opened = await r.open(options.concurrency, options.fillSeconds * 1000);
    const connects = await usage();
    if (!opened.filled) {
      // The room could not be filled in time: record how far it got, measure nothing.
      const rss = server.rss();
      await r.close();
      rows.push({ mode, size: n, objects: Number.NaN, open: opened, notFilled: true, runtimeRssKiB: rss });
      log(
        `    did not fill: ${opened.opened} of ${n} sockets after ${opened.seconds} s; runtime RSS ${Math.round(rss / 1024)} MiB`,
      );
      return;
    }
    const objects = edge ? await objectsOf(server, room) : 1;
    const rate = options.deliveries / n / options.senders;
    // Unmeasured warm-up at the same rate (a cold object's first messages are slow everywhere).
    await r.measure({
      rate,
      seconds: 1,
      drainMs: options.drainMs,
      serverCpu: server.cpu,
      usage: async () => undefined,
    });
    const step = await r.measure({
      rate,
      seconds: options.seconds,
      drainMs: options.drainMs,
      serverCpu: server.cpu,
      usage: usageOf(server, edge),
    });
    await r.close();
    const cost = edge ? rowCost({ ...step, objects }) : undefined;
    // What filling the room cost, per socket: the Worker's requests (one per connect, moves included) and
    // the objects' (a redirect is one more), RPC calls (attach, report) and rows.
    const perSocket = connects
      ? Object.fromEntries(Object.entries(connects).map(([k, v]) => [k, Math.round((v / n) * 1000) / 1000]))
      : undefined;
    const row = { mode, size: n, objects, open: { ...opened, perSocket }, ...step, cost };
    rows.push(row);
    log(
      `    ${objects} object(s), opened in ${opened.seconds} s (${opened.moved} moved, ${opened.failed} failed); ` +
        `${step.roomRate} msg/s → ${step.deliveredPerSec} deliveries/s, p50 ${step.p50} p99 ${step.p99} ms, ` +
        `lost ${step.lost}, out of order ${step.outOfOrder}; runtime ${step.serverCpuPct}% = ${step.cpuUsPerDelivery} µs/delivery` +
        (cost ? `; $${cost.dollarsPerMillion.total}/M messages` : ""),
    );
    await sleep(500);
  }

  /**
   * The orderer phase: the runtime's CPU per message with `senders` receivers, then with K listeners
   * more, in the same room (in sharded mode, already spread over its objects); the fan-out part is
   * what the K add, and the rest is the per-message cost (see bench/README.md).
   * @param {import("./wrangler.mjs").RunningServer} server @param {string} mode
   */
  async function runOrderer(server, mode) {
    const k = options.ordererListeners;
    const room = `sweep-orderer-${mode}-${randomBytes(3).toString("hex")}`;
    const r = roomOf(server, room, options.senders + k);
    log(`  ${mode} orderer phase: ${options.senders} senders + ${k} listeners…`);
    await r.open(options.concurrency, options.fillSeconds * 1000);
    const objects = await objectsOf(server, room);
    const m = { rate: options.ordererRate / options.senders, seconds: options.seconds, drainMs: options.drainMs };
    const usage = usageOf(server);
    const wide = await r.measure({ ...m, serverCpu: server.cpu, usage });
    await r.close(options.senders, options.senders + k);
    await sleep(1_000);
    const narrow = await r.measure({ ...m, serverCpu: server.cpu, usage });
    await r.close();
    // CPU per message = a + b × receivers; two points give b (per delivery) and a (per message).
    const cpuNarrow = narrow.cpuUsPerMessage;
    const cpuWide = wide.cpuUsPerMessage;
    const perDelivery = (cpuWide - cpuNarrow) / (wide.receivers - narrow.receivers);
    const perMessage = cpuNarrow - perDelivery * narrow.receivers;
    const result = {
      mode,
      objects,
      roomRate: options.ordererRate,
      narrow: {
        receivers: narrow.receivers,
        cpuUsPerMessage: cpuNarrow,
        lost: narrow.lost,
        p99: narrow.p99,
        usage: narrow.usage,
      },
      wide: { receivers: wide.receivers, cpuUsPerMessage: cpuWide, lost: wide.lost, p99: wide.p99, usage: wide.usage },
      perDeliveryUs: Math.round(perDelivery * 100) / 100,
      perMessageUs: Math.round(perMessage * 10) / 10,
      ceilingMsgPerSec: perMessage > 0 ? Math.round(1e6 / perMessage) : Number.NaN,
    };
    orderer.push(result);
    log(
      `    ${objects} object(s); ${narrow.receivers} receivers ${cpuNarrow} µs/msg, ${wide.receivers} receivers ${cpuWide} µs/msg → ` +
        `${result.perDeliveryUs} µs/delivery, ${result.perMessageUs} µs/message fixed → ≤ ${result.ceilingMsgPerSec} msg/s per core`,
    );
  }

  return { runSize, runOrderer };
}
