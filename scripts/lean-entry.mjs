// Replaces the default export worker-build's shim gives the worker (edge/build/index.js) with a
// plain module export `{ fetch }`, keeping the shim's panic recovery exactly.
//
// Why: worker-build 0.8 exports a `WorkerEntrypoint` class wrapped in a Proxy whose traps build
// a second Proxy per request and an async wrapper per call; workerd constructs that class and
// reads a dozen handler names through the trap for every request. Measured on the edge HIT
// (workerd pinned to one core, interleaved rounds): about 20 us of CPU per request, a fifth of
// the whole. The plain object does the same work per request: the shim's
// `checkReinitialize()` first (a wasm instance that trapped is rebuilt before it serves again),
// and `handleMaybeCritical` on whatever the call throws or rejects with.
//
// The build output must be unminified (NO_MINIFY) for the names below; every one is checked,
// and any mismatch (a worker-build upgrade) fails the build with the reason, never a worker
// without its recovery. The result is minified here with esbuild, as worker-build would.
import { readFileSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import path from "node:path";

const [file, esbuild] = process.argv.slice(2);
if (!file || !esbuild) {
  console.error("usage: node scripts/lean-entry.mjs edge/build/index.js path/to/esbuild");
  process.exit(2);
}
let src = readFileSync(file, "utf8");
const needed = [
  "function checkReinitialize() {",
  "function handleMaybeCritical(e) {",
  "function fetch(req, env, ctx) {",
  "Entrypoint.prototype.fetch = function fetch2(arg) {",
];
const exportLine = "var shim_default = new Proxy(Entrypoint, classProxyHooks);";
for (const text of [...needed, exportLine]) {
  const count = src.split(text).length - 1;
  if (count !== 1) {
    console.error(
      `error: scripts/lean-entry.mjs expects ${JSON.stringify(text)} once in ${file}, found ${count}: ` +
        "worker-build's shim changed; check its recovery and update this script",
    );
    process.exit(1);
  }
}
src = src.replace(
  exportLine,
  `// scripts/lean-entry.mjs: a plain module export, with the shim's recovery around each call.
var shim_default = {
  fetch(request, env, ctx) {
    try {
      checkReinitialize();
      return fetch(request, env, ctx).catch((e) => {
        handleMaybeCritical(e);
        throw e;
      });
    } catch (e) {
      handleMaybeCritical(e);
      throw e;
    }
  },
};`,
);
writeFileSync(file, src);
execFileSync(esbuild, [file, "--minify", "--format=esm", `--outfile=${file}`, "--allow-overwrite", "--log-level=warning"], {
  stdio: "inherit",
  cwd: path.dirname(path.resolve(file)),
});
