/**
 * The name this object was made with (`idFromName`): which room, and which of its objects
 * (`<room>~s<k>`, src/room/shard-map.ts). The runtime does not always say: an object whose first
 * event after a process restart is its alarm is built from its id alone, and `ctx.id.name` is then
 * undefined (seen with wrangler 4.86's workerd). A sharded object that took itself for the orderer
 * of room "" redirected its members in circles (503 `room_busy`) for as long as it lived. So the
 * name is stored the first time a connection sets an alarm (src/room/alarms.ts: no alarm, no
 * nameless wake), and read back when the runtime does not give it.
 */

const KEY = "object_name";

type Named = Pick<DurableObjectState, "id" | "storage">;

/** The object's name: the runtime's, else the stored one, else "" (never stored: nothing to wake it nameless). */
export function objectName(ctx: Named): string {
  const given = ctx.id.name;
  if (given !== undefined && given !== "") return given;
  return ctx.storage.kv.get<string>(KEY) ?? "";
}

/** Stores the runtime's name for a later nameless wake; a write only the first time. */
export function rememberName(ctx: Named): void {
  const given = ctx.id.name;
  if (given === undefined || given === "") return;
  if (ctx.storage.kv.get<string>(KEY) !== given) ctx.storage.kv.put(KEY, given);
}
