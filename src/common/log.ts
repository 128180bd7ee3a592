/**
 * Structured logs: one JSON object per line. Never pass a token or a key.
 *
 * `debug` lines (a connection's open and close, a token refresh) are written only with
 * LOG_LEVEL=debug: one or two per connection cost CPU and log ingestion in production. Everything
 * else (refusals, slow consumers, warnings, errors) is always written.
 */
export type LogLevel = "debug" | "info" | "warn" | "error";

let isDebugOn = false;

/** Set from LOG_LEVEL when the settings are loaded. */
export function setLogLevel(level: "debug" | "info"): void {
  isDebugOn = level === "debug";
}

export function log(level: LogLevel, event: string, fields: Record<string, unknown>): void {
  if (level === "debug" && !isDebugOn) return;
  const line = JSON.stringify({ level, event, ...fields });
  if (level === "error") console.error(line);
  else if (level === "warn") console.warn(line);
  else console.log(line);
}

/** A loggable description of an unexpected error (message and stack stay in logs only). */
export function describeError(error: unknown): { error: string; stack?: string } {
  if (error instanceof Error) return { error: `${error.name}: ${error.message}`, stack: error.stack };
  return { error: String(error) };
}
