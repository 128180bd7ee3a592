/**
 * Vitest global setup for the e2e suite: one real `wrangler dev` (see test/support/wrangler-server.ts)
 * for the whole run, its base URL and secret handed to the tests as `inject("e2eBaseUrl")` and
 * `inject("e2eJwtSecret")`. Tests that need their own server (to crash it) start one themselves.
 */
import type { TestProject } from "vitest/node";
import { WranglerServer } from "../support/wrangler-server";

declare module "vitest" {
  export interface ProvidedContext {
    /** `http://127.0.0.1:<port>` of the running `wrangler dev`. */
    e2eBaseUrl: string;
    /** The HS256 secret the server verifies tokens with. */
    e2eJwtSecret: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = await WranglerServer.start();
  project.provide("e2eBaseUrl", server.baseUrl);
  project.provide("e2eJwtSecret", server.secret);
  return () => server.dispose();
}
