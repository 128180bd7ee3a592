/**
 * One table of the errors the Worker answers over HTTP, mapped to a response in one place.
 * Socket-level errors (frames and close codes) live in `protocol.ts`.
 */

export const HTTP_ERRORS = {
  invalid_request: 400,
  missing_token: 401,
  invalid_token: 401,
  forbidden: 403,
  origin_not_allowed: 403,
  not_found: 404,
  /** A message id its sender already used for a message with different content. */
  id_conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  upgrade_required: 426,
  too_many_connections: 429,
  too_many_connects: 429,
  too_many_requests: 429,
  internal_error: 500,
  server_misconfigured: 500,
  auth_unavailable: 503,
  room_full: 503,
  /** The room's map changed under the upgrade more than once (docs/scaling.md). */
  room_busy: 503,
} as const satisfies Record<string, number>;

export type HttpErrorCode = keyof typeof HTTP_ERRORS;

export interface HttpErrorBody {
  error: { code: HttpErrorCode; message: string; issues?: string[] };
}

/** An expected refusal. `message` is shown to the client; `cause` is only logged. */
export class HttpError extends Error {
  override readonly name = "HttpError";
  readonly status: (typeof HTTP_ERRORS)[HttpErrorCode];
  constructor(
    readonly code: HttpErrorCode,
    message: string,
    readonly options: { issues?: string[]; headers?: Record<string, string>; cause?: unknown } = {},
  ) {
    super(message, { cause: options.cause });
    this.status = HTTP_ERRORS[code];
  }

  toResponse(): Response {
    const body: HttpErrorBody = { error: { code: this.code, message: this.message } };
    if (this.options.issues) body.error.issues = this.options.issues;
    return Response.json(body, { status: this.status, headers: this.options.headers });
  }
}
