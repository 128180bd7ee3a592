// A consumer's browser entry: bundled with esbuild (platform browser) to prove the package bundles.
import { type MessageFrame, RoomClient } from "edge-rooms/client";

const client = new RoomClient({
  url: location.origin,
  room: "lobby",
  token: () => fetch("/my-token").then((r) => r.text()),
});
client.on("message", (m: MessageFrame) => {
  document.body.append(`${m.from.name}: ${m.text ?? JSON.stringify(m.data)}\n`);
});
await client.send("hello from a browser bundle");
