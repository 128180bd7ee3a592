/**
 * Vitest global setup of the client tests: one real `wrangler dev` (test/support/wrangler-server.ts) with a
 * one-second heartbeat, so that expiry (4401) and heartbeats happen within a test, and the dev token
 * endpoint on. Hands the tests its URL and secret (`inject("clientBaseUrl")`, `inject("clientJwtSecret")`).
 */
import type { TestProject } from "vitest/node";
import { WranglerServer } from "../support/wrangler-server";

declare module "vitest" {
  export interface ProvidedContext {
    clientBaseUrl: string;
    clientJwtSecret: string;
  }
}

/** The server's heartbeat interval in these tests, in ms. */
export const TEST_HEARTBEAT_INTERVAL_MS = 1_000;

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = await WranglerServer.start({
    vars: { HEARTBEAT_INTERVAL_MS: String(TEST_HEARTBEAT_INTERVAL_MS) },
    devTokens: true,
  });
  project.provide("clientBaseUrl", server.baseUrl);
  project.provide("clientJwtSecret", server.secret);
  return () => server.dispose();
}
