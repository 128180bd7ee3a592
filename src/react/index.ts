/**
 * `edge-rooms/react`: `useRoom`, one room as React state. The hook creates a `RoomClient` in an
 * effect and closes it when the component unmounts or `url`/`room` change; React strict mode's
 * mount, unmount, mount leaves exactly one connection (the first client is closed before it opens).
 *
 * @example
 * function Chat() {
 *   const { state, messages, users, send } = useRoom({ url, room: "lobby", token: getToken });
 *   return createElement("ul", null, messages.map((m) => createElement("li", { key: m.seq }, m.text)));
 * }
 */
import { useCallback, useEffect, useRef, useState } from "react";
import {
  type ConnectionState,
  type PresenceState,
  type PresenceUser,
  RoomClient,
  RoomClientError,
  type RoomClientOptions,
  type RoomMessage,
  type SendOptions,
  type SendResult,
  type SignalOptions,
  type Stop,
  type User,
} from "../client/index.js";

export interface UseRoomOptions<TData = unknown> extends RoomClientOptions<TData> {
  /** The newest messages kept in `messages`; older ones are dropped from the state. Default 500. */
  maxMessages?: number;
}

export interface RoomView<TData = unknown> {
  state: ConnectionState;
  /** Room messages since this component joined (or `since`), in `seq` order, and direct messages. */
  messages: RoomMessage<TData>[];
  /** Who is in the room now, each with its presence `state` once set. */
  users: PresenceUser[];
  /** Who this connection is, once welcomed. */
  user: User | undefined;
  /** Why the client stopped, when `state` is `closed`. */
  stop: Stop | undefined;
  /** The latest `error` event (an error frame no send claimed, or `invalid_data`). */
  error: RoomClientError | undefined;
  /** `RoomClient.send`; rejects with `closed` before the client exists or after it stopped. */
  send: (content: string | TData, options?: SendOptions) => Promise<SendResult>;
  /** `RoomClient.signal` (listen with `client.on("signal", …)`); false before the client is open. */
  signal: (data: unknown, options?: SignalOptions) => boolean;
  /** `RoomClient.setPresence`: kept across reconnects; ignored before the client exists. */
  setPresence: (state: PresenceState) => void;
  /** The client itself, for what the view does not cover. */
  client: RoomClient<TData> | undefined;
}

const DEFAULT_MAX_MESSAGES = 500;

/**
 * Joins `options.room` and keeps the view up to date. A new client is made only when `url` or `room`
 * change; the other options are read when it is made, except `token`, which is always the latest
 * one given (so an inline token function does not reconnect on every render).
 */
export function useRoom<TData = unknown>(options: UseRoomOptions<TData>): RoomView<TData> {
  const latest = useRef(options);
  latest.current = options;
  const [client, setClient] = useState<RoomClient<TData>>();
  const [state, setState] = useState<ConnectionState>("connecting");
  const [messages, setMessages] = useState<RoomMessage<TData>[]>([]);
  const [users, setUsers] = useState<PresenceUser[]>([]);
  const [user, setUser] = useState<User>();
  const [stop, setStop] = useState<Stop>();
  const [error, setError] = useState<RoomClientError>();
  const { url, room } = options;

  useEffect(() => {
    const { maxMessages = DEFAULT_MAX_MESSAGES, ...rest } = latest.current;
    const token = () => {
      const source = latest.current.token;
      return typeof source === "string" ? source : source();
    };
    const next = new RoomClient<TData>({ ...rest, url, room, token });
    setMessages([]);
    setStop(undefined);
    setError(undefined);
    setState(next.state);
    const offs = [
      next.on("state", (change) => {
        setState(change.state);
        setStop(change.stop);
        if (change.state === "closed") setUsers([]);
      }),
      next.on("welcome", () => {
        setUser(next.user);
        setUsers(next.users);
      }),
      next.on("presence", () => setUsers(next.users)),
      next.on("roster", () => setUsers(next.users)),
      next.on("message", (message) => setMessages((all) => [...all, message].slice(-maxMessages))),
      next.on("error", setError),
    ];
    setClient(next);
    return () => {
      for (const off of offs) off();
      next.close();
      setClient((current) => (current === next ? undefined : current));
    };
  }, [url, room]);

  const send = useCallback(
    (content: string | TData, sendOptions?: SendOptions): Promise<SendResult> =>
      client
        ? client.send(content, sendOptions)
        : Promise.reject(new RoomClientError("closed", "not connected yet", { wasWritten: false })),
    [client],
  );

  const signal = useCallback(
    (data: unknown, signalOptions?: SignalOptions): boolean => client?.signal(data, signalOptions) ?? false,
    [client],
  );
  const setPresence = useCallback((state: PresenceState): void => client?.setPresence(state), [client]);

  return { state, messages, users, user, stop, error, send, signal, setPresence, client };
}
