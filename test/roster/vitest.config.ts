// Rooms of one object with a roster setting small enough to cross (src/room/roster-mode.ts): counts
// only above 3 users, the roster again at 2 or fewer. Apart from the root config, whose rooms keep the
// default (their presence tests hold up to 5 users with the full roster).
import { poolConfig } from "../support/pool-config";

export default poolConfig("roster", { MAX_CONNECTIONS_PER_ROOM: "20", PRESENCE_ROSTER_MAX: "3" });
