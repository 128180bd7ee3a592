/**
 * What a shard and its orderer tell each other besides room messages (docs/scaling.md): the shard
 * reports its counts and, when they changed, its users (src/room/roster-sync.ts); the orderer's
 * deliveries carry the room-wide counts (an `occupancy` frame to this shard's sockets on change)
 * and the users of the room's other objects (this object's mirror).
 */
import { describeError, log } from "../common/log";
import type { PresenceEntry } from "../protocol";
import type { Connections } from "./connections";
import type { RosterReporter } from "./roster-sync";
import type { Counts, DeliverBatch, DeliverResult, Occupancy, RosterReport } from "./shard-rpc";

const REPORT_DELAY_MS = 250;
/** A report that failed is sent again this much later (with a new version of the users). */
const REPORT_RETRY_MS = 1000;

export interface ShardReportsParts {
  orderer: () => { report(k: number, counts: Counts, roster?: RosterReport, rosterAt?: number): Promise<void> };
  connections: () => Connections;
  counts: () => Counts;
  onOccupancy?: () => void;
  /** This shard's users for the orderer, and the version of the others' it holds. */
  roster: RosterReporter;
  /** The orderer told the users of the room's other objects. */
  onRoster: (users: PresenceEntry[]) => void;
}

export class ShardReports {
  readonly #k: number;
  readonly #parts: ShardReportsParts;
  /** The room-wide counts, as the orderer last told them. */
  occupancy: Occupancy | undefined;
  #occupancyFrame = "";
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(k: number, parts: ShardReportsParts) {
    this.#k = k;
    this.#parts = parts;
  }

  /**
   * Tells the orderer this shard's counts soon (one call per REPORT_DELAY_MS at most), with its users
   * when they changed. A failed report is sent again once; after that the next delivery asks for it.
   */
  report(delayMs = REPORT_DELAY_MS, isRetry = false): void {
    if (this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const { roster } = this.#parts;
      const users = roster.take();
      this.#parts
        .orderer()
        .report(this.#k, this.#parts.counts(), users, roster.at)
        .catch((error: unknown) => {
          log("warn", "shard_report_failed", { shard: this.#k, ...describeError(error) });
          if (users === undefined || isRetry) return;
          roster.changed();
          this.report(REPORT_RETRY_MS, true);
        });
    }, delayMs);
  }

  /** This shard's users changed: the orderer hears of it with the next report. */
  rosterChanged(): void {
    this.#parts.roster.changed();
    this.report();
  }

  /** What a delivery tells besides frames; the answer's part about the users. */
  told(batch: DeliverBatch): Pick<DeliverResult, "report" | "rosterAt"> {
    if (batch.occupancy) this.#sendOccupancy(batch.occupancy);
    const { roster } = this.#parts;
    if (batch.roster) {
      roster.at = batch.roster.v;
      this.#parts.onRoster(batch.roster.users);
    }
    const report = roster.take(batch.rosterOf);
    return { rosterAt: roster.at, ...(report ? { report } : {}) };
  }

  #sendOccupancy(occupancy: Occupancy): void {
    const frame = JSON.stringify({ type: "occupancy", online: occupancy.online, connections: occupancy.connections });
    if (frame === this.#occupancyFrame) return;
    this.#occupancyFrame = frame;
    this.occupancy = occupancy;
    this.#parts.connections().broadcast(frame);
    this.#parts.onOccupancy?.();
  }
}
