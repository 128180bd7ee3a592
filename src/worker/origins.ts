/**
 * `ALLOWED_ORIGINS`: exact origins and `scheme://*.domain[:port]` wildcards, both normalized the way
 * a URL parser serializes an origin (lower-case scheme and host, no default port, no trailing `/`),
 * and the request's `Origin` normalized the same way before it is compared.
 *
 * @example
 * ALLOWED_ORIGINS = "https://app.example.com, https://*.preview.example.com"
 * // https://APP.example.com:443 → allowed; https://x.preview.example.com → allowed;
 * // https://preview.example.com (the apex), http://x.preview.example.com → refused
 */

/** A `*.` entry: any host ending in `suffix` (with at least one label before it), scheme and port exact. */
export interface OriginWildcard {
  scheme: string;
  /** `.example.com`: lower case, with its leading dot. */
  suffix: string;
  /** `""` for the scheme's default port. */
  port: string;
}

export interface AllowedOrigins {
  exact: ReadonlySet<string>;
  wildcards: readonly OriginWildcard[];
}

/** The serialized origin of `url` (scheme, host, port; lower case, no trailing slash), if it is one. */
export function originOf(url: string): string | undefined {
  try {
    const parsed = new URL(url);
    if (parsed.protocol !== "https:" && parsed.protocol !== "http:") return undefined;
    if (parsed.pathname !== "/" || parsed.search !== "" || parsed.hash !== "") return undefined;
    if (parsed.username !== "" || parsed.password !== "") return undefined;
    return parsed.origin;
  } catch {
    return undefined;
  }
}

// A label no real host uses, standing in for `*` so that the URL parser normalizes the rest.
const PLACEHOLDER = "wildcard-placeholder-0";

function wildcardOf(entry: string): OriginWildcard | undefined {
  const match = /^(https?:\/\/)\*\.(.+)$/i.exec(entry);
  if (match === null) return undefined;
  const origin = originOf(`${match[1]}${PLACEHOLDER}.${match[2]}`);
  if (origin === undefined) return undefined;
  const url = new URL(origin);
  const suffix = url.hostname.slice(PLACEHOLDER.length);
  // At least two labels after `*.`: `https://*.com` would allow a whole top-level domain.
  if (!suffix.startsWith(".") || suffix.split(".").length < 3 || suffix.includes("*")) return undefined;
  return { scheme: url.protocol, suffix, port: url.port };
}

/** Parses the setting's comma-separated entries; `undefined` when one is neither an origin nor a wildcard. */
export function parseAllowedOrigins(setting: string): AllowedOrigins | undefined {
  const exact = new Set<string>();
  const wildcards: OriginWildcard[] = [];
  for (const raw of setting.split(",")) {
    const entry = raw.trim();
    if (entry === "") continue;
    if (entry.includes("*")) {
      const wildcard = wildcardOf(entry);
      if (wildcard === undefined) return undefined;
      wildcards.push(wildcard);
    } else {
      const origin = originOf(entry);
      if (origin === undefined) return undefined;
      exact.add(origin);
    }
  }
  return { exact, wildcards };
}

/** Whether a request's `Origin` header value is allowed. Unparseable origins (`null`, junk) are not. */
export function isOriginAllowed(allowed: AllowedOrigins, header: string): boolean {
  const origin = originOf(header);
  if (origin === undefined) return false;
  if (allowed.exact.has(origin)) return true;
  const url = new URL(origin);
  return allowed.wildcards.some(
    (w) =>
      url.protocol === w.scheme &&
      url.port === w.port &&
      url.hostname.length > w.suffix.length &&
      url.hostname.endsWith(w.suffix),
  );
}
