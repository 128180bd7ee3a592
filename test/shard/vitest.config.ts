// Sharded rooms (docs/scaling.md), apart from the root config so that no other test's room is ever
// sharded (their defaults stay those of a small room). Thresholds: test/support/pool-config.ts.
import { poolConfig, SHARD_BINDINGS } from "../support/pool-config";

export default poolConfig("shard", SHARD_BINDINGS);
