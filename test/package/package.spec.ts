/**
 * The package as a team gets it: `npm pack` (prepack builds dist/), the tarball installed into a
 * scratch consumer project (type module) with `ws` and `typescript`, then used there: tsc with
 * `nodenext` and with `bundler` over a consumer program and the README's client examples as written,
 * that program run by plain Node against a real `wrangler dev` (a message sent comes back), and a
 * browser entry bundled by esbuild.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build } from "esbuild";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT, WranglerServer } from "../support/wrangler-server";

const NPM = process.platform === "win32" ? "npm.cmd" : "npm";
const CONSUMER_FIXTURES = join(REPO_ROOT, "test", "package", "consumer");

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end; never rejects, so a failing step shows its output in the assertion. */
function run(file: string, args: string[], cwd: string, timeoutMs = 180_000): Promise<Run> {
  // The outer `npm run`'s npm_* settings must not steer the consumer's npm.
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name)));
  return new Promise((resolve) => {
    execFile(file, args, { cwd, env, timeout: timeoutMs, maxBuffer: 32 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
      resolve({ code, stdout, stderr: error && !stderr ? String(error.message) : stderr });
    });
  });
}

function expectOk(result: Run, what: string): void {
  if (result.code !== 0) {
    throw new Error(`${what} exited with ${result.code}\n${result.stdout.slice(-4000)}\n${result.stderr.slice(-4000)}`);
  }
}

/** The READMEs' ```ts blocks that use the client: each must compile in a consumer project as written. */
async function readmeExamples(): Promise<string[]> {
  const readmes = await Promise.all(
    ["README.md", "src/client/README.md"].map((path) => readFile(join(REPO_ROOT, path), "utf8")),
  );
  return readmes
    .flatMap((readme) => [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((match) => match[1] ?? ""))
    .filter((code) => code.includes('from "edge-rooms/client"'));
}

const tsconfig = (compilerOptions: Record<string, unknown>, include: string[]) =>
  JSON.stringify({
    // skipLibCheck as most apps set it (tsc --init does); the node-only check turns it off.
    compilerOptions: {
      target: "es2022",
      strict: true,
      noUncheckedIndexedAccess: true,
      skipLibCheck: true,
      ...compilerOptions,
    },
    include,
  });

let scratch: string;
let consumer: string;
let tarball: string;
let server: WranglerServer | undefined;
let examples: string[];
/** The consumer's type checks, started together once it is installed (tsc is the slow step). */
let checks: Record<"nodenext" | "nodeOnly" | "bundler", Promise<Run>>;

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "edge-rooms-package-"));
  consumer = join(scratch, "consumer");
  const starting = WranglerServer.start();
  starting.catch(() => {}); // awaited below; a failure is reported there
  try {
    expectOk(await run(NPM, ["pack", "--pack-destination", scratch], REPO_ROOT), "npm pack");
    const packed = (await readdir(scratch)).find((name) => /^edge-rooms-.+\.tgz$/.test(name));
    if (!packed) throw new Error(`npm pack left no edge-rooms-*.tgz in ${scratch}`);
    tarball = join(scratch, packed);

    await mkdir(consumer);
    await cp(CONSUMER_FIXTURES, consumer, { recursive: true });
    examples = await readmeExamples();
    await Promise.all(examples.map((code, i) => writeFile(join(consumer, `readme-${i + 1}.ts`), code)));
    await writeFile(
      join(consumer, "package.json"),
      JSON.stringify({ name: "consumer", private: true, type: "module" }, null, 2),
    );
    const all = ["*.ts"];
    await writeFile(
      join(consumer, "tsconfig.nodenext.json"),
      tsconfig(
        { module: "nodenext", moduleResolution: "nodenext", lib: ["es2023", "dom"], types: ["node"], outDir: "out" },
        all,
      ),
    );
    // A Node program with no DOM types at all, every .d.ts checked: the package's types must hold
    // together without the DOM (the slowest check: it checks @types/node too).
    await writeFile(
      join(consumer, "tsconfig.node-only.json"),
      tsconfig(
        {
          module: "nodenext",
          moduleResolution: "nodenext",
          lib: ["es2023"],
          types: ["node"],
          noEmit: true,
          skipLibCheck: false,
        },
        ["node.ts"],
      ),
    );
    await writeFile(
      join(consumer, "tsconfig.bundler.json"),
      tsconfig(
        { module: "esnext", moduleResolution: "bundler", lib: ["es2023", "dom"], types: ["node"], noEmit: true },
        all,
      ),
    );
    const dev = JSON.parse(await readFile(join(REPO_ROOT, "package.json"), "utf8")).devDependencies as Record<
      string,
      string
    >;
    const pins = ["ws", "@types/ws", "@types/node", "typescript"].map((name) => `${name}@${dev[name]}`);
    expectOk(
      await run(
        NPM,
        ["install", tarball, ...pins, "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"],
        consumer,
      ),
      "npm install in the consumer",
    );
    const tsc = (config: string) => run(join(consumer, "node_modules/.bin/tsc"), ["-p", config], consumer);
    checks = {
      nodenext: tsc("tsconfig.nodenext.json"),
      nodeOnly: tsc("tsconfig.node-only.json"),
      bundler: tsc("tsconfig.bundler.json"),
    };
  } finally {
    server = await starting;
  }
});

afterAll(async () => {
  await server?.dispose();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

describe("the packed edge-rooms", () => {
  it("ships the built client and brings only valibot with it", async () => {
    const listing = await run("tar", ["-tzf", tarball], scratch);
    expectOk(listing, "tar -t");
    const files = listing.stdout.split("\n").filter(Boolean);
    expect(files).toEqual(
      expect.arrayContaining([
        "package/dist/client/index.js",
        "package/dist/client/index.d.ts",
        "package/dist/protocol/index.js",
        "package/LICENSE",
        "package/README.md",
      ]),
    );
    expect(files.filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))).toEqual([]);
    if (existsSync(join(REPO_ROOT, "src", "react", "index.ts"))) {
      expect(files).toEqual(expect.arrayContaining(["package/dist/react/index.js", "package/dist/react/index.d.ts"]));
    }
    const installed = await readdir(join(consumer, "node_modules"));
    expect(installed).toContain("valibot");
    expect(installed).not.toContain("hono");
    expect(installed).not.toContain("jose");
  });

  it("type-checks a consumer and the README's client examples with nodenext", async () => {
    expect(examples.length).toBeGreaterThanOrEqual(3);
    expectOk(await checks.nodenext, "tsc nodenext");
    expectOk(await checks.nodeOnly, "tsc nodenext without DOM types");
  });

  it("type-checks the same with bundler resolution", async () => {
    expectOk(await checks.bundler, "tsc bundler");
  });

  it("runs in plain Node with ws against wrangler dev: a message sent comes back", async () => {
    if (!server) throw new Error("no server");
    expectOk(
      await run(join(consumer, "node_modules/.bin/tsc"), ["-p", "tsconfig.nodenext.json"], consumer),
      "tsc emit",
    );
    const token = await new SignJWT({ name: "Packed" })
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .setSubject("packed")
      .setIssuedAt()
      .setExpirationTime(Math.floor(Date.now() / 1000) + 600)
      .sign(new TextEncoder().encode(server.secret));
    const room = `package-${Date.now().toString(36)}`;
    const result = await run(process.execPath, ["out/node.js", server.baseUrl, token, room], consumer, 60_000);
    expectOk(result, `node out/node.js\n${server.output()}`);
    const { ack, message } = JSON.parse(result.stdout.trim().split("\n").at(-1) ?? "{}");
    expect(ack.seq).toBe(1);
    expect(message).toMatchObject({
      type: "message",
      room,
      seq: 1,
      id: ack.id,
      from: { id: "packed", name: "Packed" },
    });
  });

  it("bundles for the browser with esbuild", async () => {
    const result = await build({
      absWorkingDir: consumer,
      entryPoints: ["browser.ts"],
      bundle: true,
      platform: "browser",
      format: "esm",
      target: "es2022",
      minify: true,
      write: false,
      metafile: true,
      logLevel: "silent",
    });
    const inputs = Object.keys(result.metafile.inputs);
    expect(inputs.some((path) => path.startsWith("node_modules/edge-rooms/dist/client/"))).toBe(true);
    expect(inputs.some((path) => path.startsWith("node_modules/valibot/"))).toBe(true);
    expect(inputs.some((path) => path.startsWith("node_modules/ws/"))).toBe(false);
    expect(result.outputFiles[0]?.text).toContain("rooms.v1");
  });
});
