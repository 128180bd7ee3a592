/**
 * The page of the React test (react.e2e.ts), bundled by esbuild in development mode so that
 * StrictMode mounts, unmounts and mounts again. Plain `createElement`, no JSX. The test sets
 * `window.roomConfig` first and reads the DOM; `window.unmountRoom()` unmounts the tree.
 */
import { createElement as h, StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { useRoom } from "../../src/react/index";

declare global {
  interface Window {
    roomConfig: { url: string; room: string; token: string };
    unmountRoom: () => void;
    sendFromPage: (text: string) => Promise<unknown>;
  }
}

function Room() {
  const { url, room, token } = window.roomConfig;
  const { state, user, users, messages, send } = useRoom({ url, room, token });
  window.sendFromPage = (text) => send(text);
  return h(
    "main",
    { style: { font: "16px system-ui", padding: "16px" } },
    h("h1", null, `Room ${room}`),
    h("p", { id: "state", "data-state": state }, `state: ${state}`, user ? ` as ${user.name}` : ""),
    h("h2", null, "Online"),
    h(
      "ul",
      { id: "users" },
      users.map((u) => h("li", { key: u.id, "data-user": u.id }, u.name)),
    ),
    h("h2", null, "Messages"),
    h(
      "ol",
      { id: "messages" },
      messages.map((m) =>
        h("li", { key: m.seq ?? m.id, "data-seq": m.seq, "data-from": m.from.id }, `${m.from.name}: ${m.text ?? ""}`),
      ),
    ),
  );
}

const container = document.getElementById("root");
if (!container) throw new Error("no #root");
const root = createRoot(container);
root.render(h(StrictMode, null, h(Room)));
window.unmountRoom = () => root.unmount();
