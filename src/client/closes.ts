/**
 * What a closed connection means for the client: stop for good, or retry (and how soon). A close
 * after the `welcome` is read from its code; a close before `open` from the refused upgrade's status,
 * or, where the implementation hides it (browsers), from whether the server answers HTTP at all.
 */
import { CLOSE_CODES } from "../protocol/index.js";
import type { Attempt } from "./attempt.js";
import type { Stop } from "./errors.js";
import { type FetchLike, isReachable, isTransientStatus, probeUrl } from "./socket.js";
import type { Retry } from "./types.js";

/** 1008: not in the server's table (it never sends it), but a proxy in front of it may. */
const POLICY_VIOLATION = 1008;
const PROBE_TIMEOUT_MS = 5_000;

export type Verdict = { stop: Stop } | { retry: Omit<Retry, "attempt" | "delayMs">; isImmediate?: boolean };

const UNREACHABLE: Verdict = { retry: { reason: "unreachable", message: "the connection failed before it opened" } };

/** A welcomed connection closed with `code`. `hasTokenFunction`: a fresh token can be had. */
export function closedAfterWelcome(code: number, reason: string, hasTokenFunction: boolean): Verdict {
  if (code === CLOSE_CODES.forbidden)
    return { stop: { code: "forbidden", closeCode: code, message: reason || "forbidden" } };
  if (code === POLICY_VIOLATION) {
    return { stop: { code: "policy_violation", closeCode: code, message: reason || "policy violation" } };
  }
  if (code === CLOSE_CODES.tokenExpired) {
    if (!hasTokenFunction) {
      return { stop: { code: "token_expired", closeCode: code, message: "the token expired; give a token function" } };
    }
    return { retry: { reason: "token_expired", closeCode: code, message: reason }, isImmediate: true };
  }
  // 4307: the room moved this connection to another of its objects; resume there at once.
  if (code === CLOSE_CODES.moved)
    return { retry: { reason: "moved", closeCode: code, message: reason }, isImmediate: true };
  return { retry: { reason: "dropped", closeCode: code, message: reason } };
}

/**
 * The socket closed before it opened. `ws` says the HTTP status; browsers do not, and then the
 * answer is to ask the server (`probe`) with `fetchImpl`, when there is one.
 */
export function closedBeforeOpen(attempt: Attempt, fetchImpl: FetchLike | undefined): Verdict | { probe: FetchLike } {
  const { status } = attempt;
  if (status !== undefined) {
    return isTransientStatus(status) ? { retry: { reason: "unavailable", status } } : refused(attempt, status);
  }
  // Not refused (that would have said so): the connection broke, for example mid-handshake.
  if (attempt.canSeeRefusals || fetchImpl === undefined) return UNREACHABLE;
  return { probe: fetchImpl };
}

/** Asks whether the server answers HTTP: if it does, the upgrade was refused; if not, it is unreachable. */
export async function probe(attempt: Attempt, fetchImpl: FetchLike, controller: AbortController): Promise<Verdict> {
  const timer = setTimeout(() => controller.abort(), PROBE_TIMEOUT_MS);
  const isUp = await isReachable(probeUrl(attempt.url), fetchImpl, controller.signal);
  clearTimeout(timer);
  return isUp
    ? refused(attempt, undefined)
    : { retry: { reason: "unreachable", message: "the server did not answer" } };
}

/** The `fetch` to probe with: the option, else the global one (if any). */
export function resolveFetch(option: FetchLike | undefined): FetchLike | undefined {
  const global = globalThis as { fetch?: FetchLike };
  // Called as a method: a detached `window.fetch` throws "Illegal invocation" in browsers.
  return (
    option ?? (global.fetch ? (input, init) => (global.fetch as FetchLike).call(globalThis, input, init) : undefined)
  );
}

function refused(attempt: Attempt, status: number | undefined): Verdict {
  const { refusal } = attempt;
  const http = status === undefined ? "" : `HTTP ${status}`;
  const why = [http, refusal && `${refusal.code}: ${refusal.message}`].filter(Boolean).join(", ");
  const token = attempt.isTokenFresh ? "a fresh token" : "the token";
  return {
    stop: {
      code: "handshake_refused",
      message: `the server refused the connection${why ? ` (${why})` : ""} with ${token}`,
      ...(status === undefined ? {} : { status }),
      ...(refusal === undefined ? {} : { error: refusal }),
    },
  };
}
