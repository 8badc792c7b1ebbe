// Runs against the compiled client (`npm test` compiles src/ to .test-out/ first) and a local
// stand-in of the purchase route that records what it receives and answers as scripted.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { test } from "node:test";

import { createNexnumClient, purchase } from "../.test-out/index.js";

/** A server answering each request with the next scripted status ("drop" closes the socket). */
async function standIn(script) {
  const seen = [];
  const server = createServer((req, res) => {
    seen.push({ method: req.method, url: req.url, key: req.headers["idempotency-key"] });
    const next = script.shift() ?? 201;
    if (next === "drop") return req.socket.destroy();
    res.writeHead(next, { "content-type": "application/json" });
    res.end(next < 300 ? JSON.stringify({ id: 1 }) : JSON.stringify({ error: { code: "timeout", message: "slow" } }));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const base = `http://127.0.0.1:${server.address().port}`;
  const close = () => {
    server.closeAllConnections();
    return new Promise((resolve) => server.close(resolve));
  };
  return { base, seen, close };
}

/** Runs `body` with a stand-in, closing it whatever happens (a failed assertion included). */
async function withStandIn(script, body) {
  const s = await standIn(script);
  try {
    await body(s);
  } finally {
    await s.close();
  }
}

const body = { provider: "5sim", country: "ad", service: "whatsapp" };

test("every purchase carries an Idempotency-Key by default", () =>
  withStandIn([201, 201], async (s) => {
    const api = createNexnumClient(s.base);
    await api.POST("/v1/activations", { body });
    await api.POST("/v1/activations", { body });
    assert.equal(s.seen.length, 2);
    for (const r of s.seen) assert.match(r.key ?? "", /^[0-9a-f-]{36}$/);
    assert.notEqual(s.seen[0].key, s.seen[1].key, "two purchases, two keys");
    // A key the caller gives is kept, and other requests get none.
    await api.POST("/v1/activations", { params: { header: { "Idempotency-Key": "mine-0001" } }, body });
    await api.GET("/v1/catalog/providers");
    assert.equal(s.seen[2].key, "mine-0001");
    assert.equal(s.seen[3].key, undefined);
  }),
);

test("purchase() settles a lost answer with the same key, once", () =>
  withStandIn([504, "drop", 201], async (s) => {
    const api = createNexnumClient(s.base);
    const result = await purchase(api, body, { backoffMs: 1 });
    assert.equal(result.response.status, 201);
    assert.equal(s.seen.length, 3, "asked three times");
    assert.ok(s.seen.every((r) => r.key === result.key), "with one key");
  }),
);

test("purchase() does not repeat a settled answer", async () => {
  for (const status of [201, 402, 409]) {
    await withStandIn([status], async (s) => {
      const result = await purchase(createNexnumClient(s.base), body, { backoffMs: 1 });
      assert.equal(result.response.status, status);
      assert.equal(s.seen.length, 1, `${status} is an outcome`);
    });
  }
});
