/** What a client holds as online, folded from the frames it got as edge-rooms/client folds them. */

/** The parts of server frames that presence is folded from. */
interface RosterFrameLike {
  type: string;
  event?: string;
  user?: { id: string };
  roster?: boolean;
  presence?: Array<{ id: string }>;
}

/** `welcome` and `roster: true` replace the list; `join` adds, `leave` removes. Sorted ids. */
export function rosterView(frames: readonly unknown[]): string[] {
  const users = new Set<string>();
  for (const f of frames as RosterFrameLike[]) {
    if (f.type === "welcome" || (f.type === "roster" && f.roster === true)) {
      users.clear();
      for (const e of f.presence ?? []) users.add(e.id);
    } else if (f.type === "presence" && f.event === "join" && f.user) users.add(f.user.id);
    else if (f.type === "presence" && f.event === "leave" && f.user) users.delete(f.user.id);
  }
  return [...users].sort();
}
