/**
 * The shard soak, small (docs/scaling.md "Soak"): 8 objects (the orderer, which holds sockets too, and
 * 7 shards) × 25 sockets, senders sending all along, the room grown under traffic (splits, a stale
 * Worker map) and then every fault in turn:
 * lost and repeated deliveries, lost submit answers, a shard reset, an orderer reset and a killed and
 * restarted `wrangler dev`. Every client must hold exactly seqs 1..N, once each, in order; every acked
 * message is stored once. The full size (8 × 2,000) is `npm run soak:shards`, which sets SOAK_*.
 */
import { describe, expect, it } from "vitest";
import { formatReport, runShardSoak, soakOptionsFromEnv } from "../support/shard-soak";
import { SOAK_FAULTS } from "../support/shard-soak-faults";

const options = soakOptionsFromEnv(
  {
    server: "wrangler",
    shards: 8,
    perShard: 25,
    senders: 8,
    sendIntervalMs: 100,
    maxPerSender: 1000,
    plainOrderPercent: 100,
    children: 2,
    faults: [...SOAK_FAULTS],
    timeoutMs: 240_000,
    faultTimeoutMs: 30_000,
    // Rounds run (clients echo them) and every object's alarm comes due before the restart.
    heartbeatIntervalMs: 5_000,
  },
  (line) => console.log(line),
);

describe("shard soak", () => {
  it(
    `${options.shards} objects × ${options.perShard} sockets under faults: nothing lost, repeated or out of order`,
    async () => {
      const report = await runShardSoak(options);
      console.log(formatReport(report, options));
      expect(report.objects).toBe(options.shards);
      expect(report.faults.map((f) => f.fault)).toEqual(options.faults);
      expect(report.messages).toBeGreaterThan(0);
      expect(report.acked).toBe(report.messages);
      expect({
        lost: report.lost,
        duplicated: report.duplicated,
        outOfOrder: report.outOfOrder,
        beyond: report.beyond,
        storedTwice: report.storedTwice,
        ackedNotStored: report.ackedNotStored,
        storeAnomalies: report.storeAnomalies,
      }).toEqual({
        lost: 0,
        duplicated: 0,
        outOfOrder: 0,
        beyond: 0,
        storedTwice: 0,
        ackedNotStored: 0,
        storeAnomalies: 0,
      });
      expect(report.deliveries).toBe(report.clients * report.messages);
    },
    options.timeoutMs + 60_000,
  );
});
