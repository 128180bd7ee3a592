#!/usr/bin/env node
// `npm run build:client [-- --watch]`: builds the demo page (public/) into build/public/, which
// `npm run dev` serves with `wrangler dev --assets` (dev only: it is not deployed). TypeScript is
// bundled by esbuild, every other file is copied. The output is made in a scratch dir and renamed into
// place file by file, so that a running `wrangler dev` never serves a half-built page. With --watch it
// builds again whenever public/ or src/client/ changes.
import { watch } from "node:fs";
import { cp, mkdir, mkdtemp, readdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = fileURLToPath(new URL("..", import.meta.url));
const source = join(root, "public");
/** Where the built page lands (what `wrangler dev --assets` serves). */
export const DEMO_DIR = join(root, "build", "public");
const out = DEMO_DIR;

/** Builds the demo page once. */
export async function buildClient() {
  await mkdir(join(root, "build"), { recursive: true });
  const scratch = await mkdtemp(join(root, "build", ".public-"));
  try {
    await cp(source, scratch, { recursive: true, filter: (path) => !path.endsWith(".ts") });
    const result = await build({
      entryPoints: [join(source, "app.ts")],
      outfile: join(scratch, "app.js"),
      bundle: true,
      format: "esm",
      target: "es2022",
      minify: true,
      sourcemap: true,
      legalComments: "none",
      logLevel: "warning",
      metafile: true,
      // The page imports the package by name; here that is the source, not the built dist/.
      alias: { "edge-rooms/client": join(root, "src", "client", "index.ts") },
    });
    await mkdir(out, { recursive: true });
    const fresh = new Set(await readdir(scratch));
    for (const name of fresh) {
      // A file is replaced atomically by the rename; a directory cannot be renamed over, so it goes first.
      if ((await stat(join(scratch, name))).isDirectory()) await rm(join(out, name), { recursive: true, force: true });
      await rename(join(scratch, name), join(out, name));
    }
    for (const name of await readdir(out)) {
      if (!fresh.has(name)) await rm(join(out, name), { recursive: true, force: true });
    }
    const bytes = Object.values(result.metafile.outputs).find((o) => o.entryPoint)?.bytes ?? 0;
    console.log(`build-client: build/public/app.js ${(bytes / 1024).toFixed(1)} KiB`);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/**
 * Builds again whenever the page's sources change: debounced, one build at a time, and once more if
 * anything changed during a build (so an older build never lands over a newer one). Returns a stop.
 */
export function watchClient() {
  let timer;
  let running = false;
  let again = false;
  const run = async () => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    do {
      again = false;
      await buildClient().catch((error) => console.error(`build-client: ${error.message}`));
    } while (again);
    running = false;
  };
  const rebuild = () => {
    clearTimeout(timer);
    timer = setTimeout(run, 100);
  };
  const watchers = [source, join(root, "src", "client")].map((dir) => watch(dir, { recursive: true }, rebuild));
  return () => {
    clearTimeout(timer);
    for (const w of watchers) w.close();
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await buildClient();
  if (process.argv.includes("--watch")) watchClient();
}
