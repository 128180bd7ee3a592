/**
 * The demo chat: pick a name and a room, then chat through `RoomClient`. Tokens come from the
 * Worker's dev-only endpoint (see dev-token.ts). `?name=&room=` prefill the form; `?ttl=<seconds>`
 * asks for short-lived tokens, to watch the client refresh them (close 4401, then a fresh token).
 */
import { type Retry, RoomClient, RoomClientError, type StateChange } from "edge-rooms/client";
import { fetchDevToken, userIdFor } from "./dev-token";
import { TypingIndicator } from "./typing";
import { MessageList, renderPeople } from "./view";

function byId<T extends HTMLElement>(id: string): T {
  const node = document.getElementById(id);
  if (!node) throw new Error(`the page has no #${id}`);
  return node as T;
}

const ui = {
  join: byId<HTMLFormElement>("join"),
  name: byId<HTMLInputElement>("name"),
  room: byId<HTMLInputElement>("room"),
  joinError: byId<HTMLParagraphElement>("join-error"),
  chat: byId<HTMLElement>("chat"),
  roomTitle: byId<HTMLHeadingElement>("room-title"),
  me: byId<HTMLSpanElement>("me"),
  leave: byId<HTMLButtonElement>("leave"),
  messages: byId<HTMLOListElement>("messages"),
  composer: byId<HTMLFormElement>("composer"),
  text: byId<HTMLInputElement>("text"),
  people: byId<HTMLUListElement>("people"),
  typing: byId<HTMLParagraphElement>("typing"),
  myStatus: byId<HTMLSelectElement>("my-status"),
  onlineCount: byId<HTMLSpanElement>("online-count"),
  status: byId<HTMLDivElement>("status"),
  statusText: byId<HTMLSpanElement>("status-text"),
  statSeq: byId<HTMLElement>("stat-seq"),
  statReconnects: byId<HTMLElement>("stat-reconnects"),
  statQueued: byId<HTMLElement>("stat-queued"),
  reconnect: byId<HTMLButtonElement>("reconnect"),
};

const params = new URLSearchParams(location.search);
ui.name.value = params.get("name") ?? "";
ui.room.value = params.get("room") ?? ui.room.value;
const ttlParam = Number(params.get("ttl"));
const ttl = Number.isInteger(ttlParam) && ttlParam > 0 ? ttlParam : undefined;

let client: RoomClient | undefined;
const list = new MessageList(ui.messages, () => client?.user);
const typing = new TypingIndicator(ui.typing);

ui.join.addEventListener("submit", (event) => {
  event.preventDefault();
  void join(ui.name.value.trim(), ui.room.value.trim());
});

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = ui.text.value.trim();
  if (!text || !client) return;
  ui.text.value = "";
  typing.sent(client);
  const id = crypto.randomUUID();
  list.addPending(id, text);
  client.send(text, { id }).then(
    () => updateStats(),
    (error: unknown) => list.failPending(id, error instanceof RoomClientError ? error.code : String(error)),
  );
  updateStats();
});

// Signals: the others see "X is typing" while this input changes.
ui.text.addEventListener("input", () => {
  if (client && ui.text.value !== "") typing.typed(client);
});

// Presence state: everyone sees this user's status; the client sets it again after a reconnect.
ui.myStatus.addEventListener("change", () => client?.setPresence({ status: ui.myStatus.value }));

ui.leave.addEventListener("click", () => {
  client?.close();
  client = undefined;
  ui.chat.hidden = true;
  ui.join.hidden = false;
  setStatus("idle", "Not connected");
});

ui.reconnect.addEventListener("click", () => client?.connect());

async function join(name: string, room: string): Promise<void> {
  ui.joinError.hidden = true;
  const sub = userIdFor(name);
  const button = ui.join.querySelector<HTMLButtonElement>("button[type=submit]");
  // The first token is fetched here, so that a missing endpoint shows on the form.
  let first: string | undefined;
  try {
    if (button) button.disabled = true;
    first = await fetchDevToken(sub, name, room, ttl);
  } catch (error) {
    ui.joinError.textContent = error instanceof Error ? error.message : String(error);
    ui.joinError.hidden = false;
    return;
  } finally {
    if (button) button.disabled = false;
  }
  list.clear();
  typing.clear();
  ui.roomTitle.textContent = `#${room}`;
  ui.join.hidden = true;
  ui.chat.hidden = false;
  ui.text.placeholder = `Message #${room}`;
  let welcomes = 0;

  const c = new RoomClient({
    url: location.origin,
    room,
    // Show what the room has stored, then live messages.
    since: 0,
    // Called before every (re)connect: an expired token is never reused.
    token: async () => {
      const token = first ?? (await fetchDevToken(sub, name, room, ttl));
      first = undefined;
      return token;
    },
    reconnect: { initialDelayMs: 500, maxDelayMs: 8_000 },
  });
  client = c;
  c.setPresence({ status: ui.myStatus.value });
  c.on("state", (change) => onState(c, change));
  c.on("retry", (retry) => onRetry(retry));
  c.on("welcome", (welcome) => {
    welcomes += 1;
    ui.me.textContent = `as ${welcome.user.name}`;
    if (welcomes > 1) list.notice(`Reconnected · resumed after #${c.lastSeq ?? 0}`);
    updateStats(welcomes - 1);
    showPeople(c);
  });
  c.on("signal", (signal) => typing.onSignal(signal));
  c.on("message", (message) => {
    typing.stopped(message.from.id);
    list.addMessage(message);
    updateStats();
  });
  c.on("presence", (presence) => {
    if (presence.event === "leave") typing.stopped(presence.user.id);
    if (presence.user.id !== c.user?.id && presence.event !== "update") {
      list.notice(`${presence.user.name} ${presence.event === "join" ? "joined" : "left"}`);
    }
    showPeople(c);
  });
  c.on("gap", (gap) => {
    const what = gap.reason === "reset" ? "The room was reset" : `Messages after #${gap.since} were trimmed`;
    list.notice(`${what}: some messages could not be recovered`, "warn");
  });
  c.on("error", (error) => list.notice(`Server: ${error.message}`, "warn"));
  ui.text.focus();
}

function onState(c: RoomClient, change: StateChange): void {
  ui.reconnect.hidden = change.state !== "closed";
  switch (change.state) {
    case "connecting":
      setStatus("connecting", "Connecting…");
      break;
    case "open":
      setStatus("open", `Connected to #${c.room}`);
      break;
    case "reconnecting":
      setStatus("reconnecting", "Reconnecting…");
      break;
    case "closed":
      setStatus("closed", "Disconnected");
      if (change.stop && change.stop.code !== "closed_by_client") {
        list.notice(`Disconnected: ${change.stop.message}`, "warn");
      }
      break;
  }
  updateStats();
}

function onRetry(retry: Retry): void {
  const why = retry.closeCode === undefined ? retry.reason.replace("_", " ") : `closed ${retry.closeCode}`;
  setStatus(
    "reconnecting",
    `Reconnecting · attempt ${retry.attempt}, in ${(retry.delayMs / 1000).toFixed(1)} s (${why})`,
  );
}

function setStatus(state: string, text: string): void {
  ui.status.dataset.state = state;
  ui.statusText.textContent = text;
}

function showPeople(c: RoomClient): void {
  renderPeople(ui.people, c.users, c.user);
  ui.onlineCount.textContent = String(c.users.length);
}

function updateStats(reconnects?: number): void {
  ui.statSeq.textContent = client?.lastSeq === undefined ? "–" : `#${client.lastSeq}`;
  if (reconnects !== undefined) ui.statReconnects.textContent = String(reconnects);
  ui.statQueued.textContent = String(client?.queued ?? 0);
}
