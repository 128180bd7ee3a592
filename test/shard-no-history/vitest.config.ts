// Sharded rooms (docs/scaling.md) with HISTORY_LIMIT=0: the orderer keeps no history, so a shard
// cannot fill a gap from it. Otherwise as test/shard/vitest.config.ts.
import { poolConfig, SHARD_BINDINGS } from "../support/pool-config";

export default poolConfig("shard-no-history", { ...SHARD_BINDINGS, HISTORY_LIMIT: "0" });
