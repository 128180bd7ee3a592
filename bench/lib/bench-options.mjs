/**
 * The default bench's flags (`npm run bench -- --help`): what runs (servers, scenarios, runs), the
 * sizes and the fan-out ladders, with `--quick`'s smaller defaults. Exits 2 on a bad value.
 */
import { join } from "node:path";
import { REPO_ROOT } from "../../scripts/lib/processes.mjs";
import { list, readFlags } from "./flags.mjs";

const HELP = `usage: npm run bench -- [flags]

  --quick                 one run, small sizes, short steps (a smoke test, under ~40 s)
  --runs N                interleaved runs per server (default 3; medians with min/max)
  --servers LIST          which servers, of edge-rooms,ceiling,peer (default all three), and edge-rooms-v1:
                          edge-rooms again (own wrangler dev, same snapshot and vars) with clients that do
                          not ask for batch frames (edge-rooms' clients connect with ?batch=1)
  --scenarios LIST        idle,storm,fanout (default all three)
  --storm-n N             connections in the connect storm (default 500)
  --storm-rooms N         rooms the storm spreads over (default 10)
  --storm-concurrency N   handshakes in flight at once (default 10)
  --idle-n N              idle connections for the memory figure, opened in 3 batches (default 1200)
  --idle-rooms N          rooms they spread over (default 12)
  --fanout LIST           RxC shapes, rooms x clients per room (default 1x50,10x10,1x500); a shape may
                          bring its own ladder and moderate rate: RxC:r1/r2/…@moderate (then it doubles
                          up to 4x its last listed rate); 1x500 defaults to 1x500:0.1/0.2/0.4/0.8@0.1
  --rates LIST            msg/s per client, stepped up in order (default 5,10,20,40,80)
  --max-rate R            while every step passes, keep doubling the rate up to R (default 320)
  --refine N              bisection steps between the last pass and the first failure (default 1)
  --step-ms MS            length of each fan-out step (default 1200)
  --drain-ms MS           longest wait for a step's last deliveries (default 1000)
  --warmup-ms MS          unmeasured warm-up at the first rate before each ramp (default 500)
  --p99-ms MS             a step passes with p99 at or under this and nothing lost (default 100)
  --moderate-rate R       step whose latency is reported as "at moderate load" (default 10)
  --pad N                 extra characters in each message's data (default 0)
  --via direct|proxy      talk to the Worker's workerd directly (default) or through wrangler's dev proxy
  --no-pin                do not pin the client and the servers to separate CPUs
  --client-cpus LIST      taskset CPU list of this process (default 0)
  --server-cpus LIST      taskset CPU list of the servers (default 1)
  --check-pinning         instead of the bench: fan-out capacity of the ceiling (or --servers) as is, with
                          the server's CPU, then with the client's CPU, partly taken by a busy loop
  --hog-duty F            share of a CPU the busy loop of --check-pinning takes (default 0.5)
  --max-seconds S         abort (and stop everything) after this long (default 1500)
  --out DIR               where results go (default bench/results)
  --verbose               echo wrangler's output
  --edge-config PATH      a wrangler.toml for edge-rooms other than the repo's (e.g. to compare a variant)
  --sweep                 instead of the bench: the room-size sweep (npm run bench -- --sweep --help)
  --baseline REF          also run edge-rooms as of git REF (e.g. HEAD~1), as server "baseline", side by side
                          with the working tree in every run: the edge-rooms / baseline column is the change
`;

/**
 * A big room's ladder: at 500 per room one message is 500 deliveries, so the rates are 100× lower
 * than 1×50's for the same deliveries/s (0.1 msg/s/client = 25 000/s, 1×50's moderate load).
 */
const BIG_ROOM_LADDER = "0.1/0.2/0.4/0.8@0.1";

/** The flags, and the options they make (every default filled in). */
export function benchOptions() {
  const { flags, fail, num } = readFlags({
    command: "bench",
    help: HELP,
    options: {
      help: { type: "boolean" },
      quick: { type: "boolean" },
      runs: { type: "string" },
      servers: { type: "string" },
      scenarios: { type: "string" },
      "storm-n": { type: "string" },
      "storm-rooms": { type: "string" },
      "storm-concurrency": { type: "string" },
      "idle-n": { type: "string" },
      "idle-rooms": { type: "string" },
      fanout: { type: "string" },
      rates: { type: "string" },
      "max-rate": { type: "string" },
      refine: { type: "string" },
      "step-ms": { type: "string" },
      "drain-ms": { type: "string" },
      "warmup-ms": { type: "string" },
      "p99-ms": { type: "string" },
      "moderate-rate": { type: "string" },
      pad: { type: "string" },
      via: { type: "string" },
      "no-pin": { type: "boolean" },
      "client-cpus": { type: "string" },
      "server-cpus": { type: "string" },
      "check-pinning": { type: "boolean" },
      "max-seconds": { type: "string" },
      "hog-duty": { type: "string" },
      out: { type: "string" },
      verbose: { type: "boolean" },
      "edge-config": { type: "string" },
      baseline: { type: "string" },
    },
  });

  /**
   * `RxC` or `RxC:r1/r2/…@moderate`. Shapes without their own ladder get `--rates`, `--max-rate` and
   * `--moderate-rate` (filled in below); with one, the ramp doubles up to 4× its last listed rate.
   * @param {string} raw
   * @returns {{ shape: string, rooms: number, clients: number, rates?: number[], maxRate?: number, moderateRate?: number }}
   */
  function parseShape(raw) {
    const m = /^(\d+)x(\d+)(?::([\d./]+)(?:@([\d.]+))?)?$/.exec(raw);
    if (!m) return fail(`--fanout shapes look like 1x50 or 1x500:0.1/0.2/0.4@0.1, not ${raw}`);
    const shape = `${m[1]}x${m[2]}`;
    const ladder = m[3] ?? (shape === "1x500" ? BIG_ROOM_LADDER.split("@")[0] : undefined);
    const moderate = m[3] ? m[4] : shape === "1x500" ? BIG_ROOM_LADDER.split("@")[1] : undefined;
    const out = { shape, rooms: Number(m[1]), clients: Number(m[2]) };
    if (ladder === undefined) return out;
    const rates = list(ladder.replaceAll("/", ",")).map((r) => num(r, 0, "fanout", 0.01));
    rates.sort((a, b) => a - b);
    return {
      ...out,
      rates,
      maxRate: 4 * (rates[rates.length - 1] ?? 1),
      moderateRate: moderate === undefined ? rates[0] : num(moderate, 0, "fanout", 0.01),
    };
  }

  const quick = flags.quick === true;
  const ALL_SERVERS = ["edge-rooms", "ceiling", "peer", ...(flags.baseline ? ["baseline"] : [])];
  /** Selectable with --servers, never run by default: edge-rooms with clients that do not ask for batch frames. */
  const OPTIONAL_SERVERS = ["edge-rooms-v1"];
  const options = {
    quick,
    runs: num(flags.runs, quick ? 1 : 3, "runs", 1),
    servers: list(flags.servers ?? ALL_SERVERS.join(",")),
    baseline: flags.baseline,
    scenarios: list(flags.scenarios ?? "idle,storm,fanout"),
    stormN: num(flags["storm-n"], quick ? 100 : 500, "storm-n", 1),
    stormRooms: num(flags["storm-rooms"], quick ? 4 : 10, "storm-rooms", 1),
    stormConcurrency: num(flags["storm-concurrency"], 10, "storm-concurrency", 1),
    idleN: num(flags["idle-n"], quick ? 150 : 1200, "idle-n", 3),
    idleRooms: num(flags["idle-rooms"], quick ? 3 : 12, "idle-rooms", 1),
    fanout: list(flags.fanout ?? (quick ? "1x20,4x5" : "1x50,10x10,1x500")).map(parseShape),
    rates: list(flags.rates ?? (quick ? "10,40" : "5,10,20,40,80")).map((r) => num(r, 0, "rates", 0.1)),
    maxRate: num(flags["max-rate"], quick ? 40 : 320, "max-rate", 0.1),
    refine: num(flags.refine, quick ? 0 : 1, "refine"),
    stepMs: num(flags["step-ms"], quick ? 800 : 1200, "step-ms", 100),
    drainMs: num(flags["drain-ms"], 1000, "drain-ms", 100),
    warmupMs: num(flags["warmup-ms"], quick ? 200 : 500, "warmup-ms"),
    p99LimitMs: num(flags["p99-ms"], 100, "p99-ms", 1),
    moderateRate: num(flags["moderate-rate"], 10, "moderate-rate", 0.1),
    padBytes: num(flags.pad, 0, "pad"),
    via: flags.via ?? "direct",
    checkPinning: flags["check-pinning"] === true,
    maxSeconds: num(flags["max-seconds"], 1500, "max-seconds", 10),
    hogDuty: num(flags["hog-duty"], 0.5, "hog-duty", 0.05),
    out: flags.out ?? join(REPO_ROOT, "bench", "results"),
  };
  for (const f of options.fanout) {
    f.rates ??= options.rates;
    f.maxRate ??= options.maxRate;
    f.moderateRate ??= options.moderateRate;
  }
  for (const s of options.servers)
    if (!ALL_SERVERS.includes(s) && !OPTIONAL_SERVERS.includes(s)) fail(`unknown server ${s}`);
  for (const s of options.scenarios) if (!["idle", "storm", "fanout"].includes(s)) fail(`unknown scenario ${s}`);
  if (options.via !== "direct" && options.via !== "proxy") fail("--via is direct or proxy");
  options.rates.sort((a, b) => a - b);
  if (options.checkPinning && !flags.servers) options.servers = ["ceiling"];
  return { flags, options, fail };
}
