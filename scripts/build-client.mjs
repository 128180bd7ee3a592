#!/usr/bin/env node
// `npm run build:client`: builds the demo page (public/) into build/public/, which Workers static
// assets serve (wrangler.toml [assets]; wrangler runs this through [build] before `dev` and `deploy`).
// TypeScript is bundled by esbuild, every other file is copied. The output is made in a scratch dir
// and renamed into place file by file, so that a running `wrangler dev` never serves a half-built page.
import { cp, mkdir, mkdtemp, readdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = fileURLToPath(new URL("..", import.meta.url));
const source = join(root, "public");
const out = join(root, "build", "public");

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
