// A consumer's Node program, compiled by tsc and run by plain Node: joins a room through the
// installed package, sends one message and waits to see it come back. Prints the echoed frame as JSON.
// Usage: node node.js <base url> <token> <room>
import { RoomClient, RoomClientError } from "edge-rooms/client";
import WS from "ws";

const [url = "", token = "", room = "lobby"] = process.argv.slice(2);
const client = new RoomClient({ url, room, token, WebSocket: WS });
const timer = setTimeout(() => {
  console.error(`no echo within 30 s (state ${client.state})`);
  process.exit(1);
}, 30_000);

const id = crypto.randomUUID();
const echoed = new Promise<unknown>((resolve) => {
  client.on("message", (message) => {
    if (message.id === id) resolve(message);
  });
});
try {
  const ack = await client.send("hello from a packed consumer", { id });
  const message = await echoed;
  console.log(JSON.stringify({ ack, message }));
} catch (error) {
  console.error(error instanceof RoomClientError ? `${error.code}: ${error.message}` : error);
  process.exitCode = 1;
} finally {
  clearTimeout(timer);
  client.close();
}
