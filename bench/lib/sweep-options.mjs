/**
 * The room-size sweep's flags (`npm run bench -- --sweep --help`): the sizes and modes, the load
 * (deliveries/s, senders), the steps, the shards and the orderer phase, with `--quick`'s smaller
 * defaults. Exits 2 on a bad value.
 */
import { join } from "node:path";
import { REPO_ROOT } from "../../scripts/lib/processes.mjs";
import { list, readFlags } from "./flags.mjs";

const HELP = `usage: npm run bench -- --sweep [flags]

  --quick               smoke run: sizes 50,500, 3 s steps, modes single,sharded
  --sizes LIST          room sizes, sockets per room (default 50,500,2000,16000)
  --modes LIST          of single,sharded,ceiling (default all three)
  --deliveries N        deliveries/s each size is driven at: room rate = N ÷ size msg/s (default 20000)
  --senders N           sockets that send, spread evenly in time (default 4)
  --seconds S           length of a measured step (default 10)
  --drain-ms MS         longest wait for a step's last deliveries (default 3000)
  --shards N            objects a sharded room spreads over: SHARD_MAX = N, SHARD_GROW_AT = size ÷ N (default 8)
  --orderer-rate R      room msg/s of the orderer phase (default 200)
  --orderer-listeners K listeners added in the orderer phase's second arm (default 64)
  --no-orderer          skip the orderer phase
  --concurrency N       handshakes in flight while a room fills (default 50)
  --fill-seconds S      give up filling a room after this long: the row then says how many sockets it
                        held, and nothing is measured (default 300)
  --max-seconds S       abort (and stop everything) after this long (default 2400)
  --out DIR             where results go (default bench/results)
  --verbose             echo wrangler's output
  --render FILE         no run: the cost model and the tables again from a sweep's JSON (into --out)
`;

/** The flags, and the options they make (every default filled in). */
export function sweepOptions() {
  const { flags, fail, num } = readFlags({
    command: "bench --sweep",
    help: HELP,
    args: process.argv.slice(2).filter((a) => a !== "--sweep"),
    options: {
      help: { type: "boolean" },
      quick: { type: "boolean" },
      sizes: { type: "string" },
      modes: { type: "string" },
      deliveries: { type: "string" },
      senders: { type: "string" },
      seconds: { type: "string" },
      "drain-ms": { type: "string" },
      shards: { type: "string" },
      "orderer-rate": { type: "string" },
      "orderer-listeners": { type: "string" },
      "no-orderer": { type: "boolean" },
      concurrency: { type: "string" },
      "fill-seconds": { type: "string" },
      "max-seconds": { type: "string" },
      out: { type: "string" },
      render: { type: "string" },
      verbose: { type: "boolean" },
    },
  });
  const quick = flags.quick === true;
  const options = {
    quick,
    sizes: list(flags.sizes ?? (quick ? "50,500" : "50,500,2000,16000")).map((s) => num(s, 0, "sizes", 2)),
    modes: list(flags.modes ?? (quick ? "single,sharded" : "single,sharded,ceiling")),
    deliveries: num(flags.deliveries, 20_000, "deliveries", 1),
    senders: num(flags.senders, 4, "senders", 1),
    seconds: num(flags.seconds, quick ? 3 : 10, "seconds", 1),
    drainMs: num(flags["drain-ms"], 3000, "drain-ms", 100),
    shards: num(flags.shards, 8, "shards", 2),
    ordererRate: num(flags["orderer-rate"], 200, "orderer-rate", 1),
    ordererListeners: num(flags["orderer-listeners"], 64, "orderer-listeners", 1),
    orderer: flags["no-orderer"] !== true,
    concurrency: num(flags.concurrency, 50, "concurrency", 1),
    fillSeconds: num(flags["fill-seconds"], 300, "fill-seconds", 1),
    maxSeconds: num(flags["max-seconds"], 2400, "max-seconds", 10),
    out: flags.out ?? join(REPO_ROOT, "bench", "results"),
  };
  for (const m of options.modes) if (!["single", "sharded", "ceiling"].includes(m)) fail(`unknown mode ${m}`);
  for (const n of options.sizes) if (n > 32_000) fail("a size is at most 32000 (one object's sockets, and fds)");
  for (const n of options.sizes) if (n < options.senders) fail("every size must hold the senders");
  return { flags, options };
}
