// Runs the built edge worker (edge/build) in workerd through Miniflare, for the end-to-end tests.
// Configuration comes from the environment:
//   EDGE_PORT  port on 127.0.0.1 to listen on
//   EDGE_VARS  JSON object of worker vars (ORIGIN_URL, EDGE_SECRET, ...)
//   EDGE_RATELIMITS  optional JSON object of rate-limit bindings (Miniflare's `ratelimits`)
//   EDGE_STATIC_BODY  optional: run a static JS worker answering this body instead
//   EDGE_JS_CACHE_ORIGIN  optional: run a 20-line JS worker instead that answers from
//                     `caches.default` and, on a miss, fetches this origin and stores the answer
//                     (the benchmark's baseline for the edge worker's cache hit)
//   EDGE_DIRECT_PORT  optional: also serve the worker itself on this port, without Miniflare's
//                     entry worker (the proxy `wrangler dev` puts in front), so a benchmark
//                     measures the worker and not the proxy
//   EDGE_LOG_FILE     optional: workerd writes its output (the worker's log lines) to this file
//                     instead of through this process (the benchmark's setting)
//   EDGE_BUILD_DIR    optional: another build of the worker than edge/build (a benchmark of an
//                     earlier revision's, with the bench's ORIGIN_BIN)
// Prints "READY <url>" once serving; exits on SIGTERM/SIGINT or when stdin closes.
import { Miniflare } from "miniflare";
import { fileURLToPath } from "node:url";
import path from "node:path";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const build = path.resolve(process.env.EDGE_BUILD_DIR ?? path.join(root, "edge/build"));
// EDGE_STATIC_BODY: serve a static-response JS worker instead (the benchmark's edge ceiling).
const staticBody = process.env.EDGE_STATIC_BODY;
const jsCacheOrigin = process.env.EDGE_JS_CACHE_ORIGIN;
const worker = jsCacheOrigin
  ? {
      modules: true,
      script: `const origin = ${JSON.stringify(jsCacheOrigin)};
export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    const key = "https://edge" + url.pathname + url.search;
    const hit = await caches.default.match(key);
    if (hit) return hit;
    const fresh = await fetch(origin + url.pathname + url.search);
    if (fresh.status !== 200) return fresh;
    const body = await fresh.arrayBuffer();
    const headers = new Headers(fresh.headers);
    headers.set("cache-control", "public, max-age=600");
    ctx.waitUntil(caches.default.put(key, new Response(body, { headers })));
    return new Response(body, { headers });
  },
};`,
    }
  : staticBody
  ? {
      modules: true,
      script: `const body = ${JSON.stringify(staticBody)};
export default { fetch() { return new Response(body, { headers: { "content-type": "application/json" } }); } };`,
    }
  : {
      scriptPath: path.join(build, "worker/shim.mjs"),
      modules: true,
      modulesRoot: build,
      // The shim re-exports build/index.js, which imports the wasm module.
      modulesRules: [
        { type: "ESModule", include: ["**/*.js", "**/*.mjs"] },
        { type: "CompiledWasm", include: ["**/*.wasm"], fallthrough: true },
      ],
    };
const direct = process.env.EDGE_DIRECT_PORT;
if (process.env.EDGE_LOG_FILE) {
  // The binary's path, as Miniflare finds it (the package is CommonJS: `default` is its exports).
  const workerd = (await import("workerd")).default;
  process.env.EDGE_REAL_WORKERD = typeof workerd === "string" ? workerd : workerd.default;
  process.env.MINIFLARE_WORKERD_PATH = path.join(root, "tests/edge/workerd-log-to-file.sh");
}
const rateLimits = JSON.parse(process.env.EDGE_RATELIMITS || "null");
const mf = new Miniflare({
  ...worker,
  ...(direct ? { unsafeDirectSockets: [{ host: "127.0.0.1", port: Number(direct) }] } : {}),
  compatibilityDate: "2026-04-01",
  bindings: JSON.parse(process.env.EDGE_VARS ?? "{}"),
  ...(rateLimits ? { ratelimits: rateLimits } : {}),
  host: "127.0.0.1",
  port: Number(process.env.EDGE_PORT ?? 0),
  // workerd's output streamed through as it comes, not re-read line by line and printed again
  // (Miniflare's default): the worker logs one line per request.
  handleRuntimeStdio(stdout, stderr) {
    stdout.pipe(process.stdout);
    stderr.pipe(process.stderr);
  },
});
const url = await mf.ready;
console.log(`READY ${url}`);

let closing = false;
async function close() {
  if (closing) return;
  closing = true;
  await mf.dispose().catch(() => {});
  process.exit(0);
}
process.on("SIGTERM", close);
process.on("SIGINT", close);
process.stdin.on("end", close);
process.stdin.resume();
