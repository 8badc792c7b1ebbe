/**
 * The typed client of the NexNum API. `schema.d.ts` is generated from the repository's
 * `openapi.json` (`npm run generate`, run by `make openapi`); this file adds the few things every
 * caller needs on top of openapi-fetch: the wire types by name, the error body, and an
 * Idempotency-Key maker.
 */
import createClient, { type ClientOptions, type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";

export type { components, paths };

type Schemas = components["schemas"];
export type Provider = Schemas["Provider"];
export type Country = Schemas["Country"];
export type Service = Schemas["Service"];
export type Price = Schemas["Price"];
export type BulkPrices = Schemas["BulkPricesResponse_Price"];
export type Activation = Schemas["Activation"];
export type ActivationPage = Schemas["ActivationPage"];
export type Balance = Schemas["BalanceResponse"];
export type Credentials = Schemas["Credentials"];
export type PurchaseRequest = Schemas["PurchaseRequest"];
/** Every 4xx/5xx body: `{"error": {"code", "message"}}`. */
export type ErrorBody = Schemas["ErrorBody"];

/** Stable error codes the API answers with (`ErrorBody.error.code`). */
export type ErrorCode =
  | "bad_request"
  | "unauthorized"
  | "insufficient_funds"
  | "forbidden"
  | "not_found"
  | "conflict"
  | "price_changed"
  | "method_not_allowed"
  | "payload_too_large"
  | "rate_limited"
  | "unavailable"
  | "timeout"
  | "internal";

/**
 * A client for `baseUrl` (the edge, e.g. `https://api.example.com`, or `http://localhost:8787`
 * under `wrangler dev`). In a browser, `credentials: "include"` sends the `__Host-session` cookie
 * cross-origin; the edge allows it only for its configured origins.
 */
export function createNexnumClient(baseUrl: string, options: Omit<ClientOptions, "baseUrl"> = {}) {
  const client = createClient<paths>({ baseUrl, credentials: "include", ...options });
  client.use(idempotentPurchases);
  return client;
}

export type NexnumClient = ReturnType<typeof createNexnumClient>;

/** A fresh `Idempotency-Key` for one purchase attempt: reuse it for retries of that attempt. */
export function idempotencyKey(): string {
  return crypto.randomUUID();
}

/** The purchase route: a purchase without an `Idempotency-Key` cannot be settled after a timeout. */
const PURCHASE_PATH = "/v1/activations";

/**
 * Gives every purchase an `Idempotency-Key` when the caller gave none (`createNexnumClient`
 * installs it). With a key, a purchase whose answer was lost (a timeout, a dropped connection)
 * can be asked again and answers what really happened; without one, a retry may buy twice.
 */
export const idempotentPurchases: Middleware = {
  onRequest({ request }) {
    const path = new URL(request.url).pathname;
    if (request.method === "POST" && path.endsWith(PURCHASE_PATH) && !request.headers.has("Idempotency-Key")) {
      request.headers.set("Idempotency-Key", idempotencyKey());
    }
    return request;
  },
};

/** Answers after which a purchase is asked again with the same key: its outcome is not known. */
const UNSETTLED = new Set([502, 503, 504]);

/**
 * Buys `body` and settles the outcome: one `Idempotency-Key` for every attempt, asked again (with
 * that key) after a network failure or a 502/503/504, up to `attempts` times with a doubling
 * pause (`Retry-After` honoured up to 5 s). A purchase that did go through is answered on the
 * retry (`Idempotent-Replayed: true`) and is never charged twice. Returns the last answer and
 * the key (keep it to ask again later).
 */
export async function purchase(
  client: NexnumClient,
  body: PurchaseRequest,
  options: { attempts?: number; key?: string; backoffMs?: number } = {},
) {
  const key = options.key ?? idempotencyKey();
  const attempts = Math.max(1, options.attempts ?? 3);
  const backoff = options.backoffMs ?? 250;
  for (let attempt = 1; ; attempt++) {
    let wait = backoff * 2 ** (attempt - 1);
    try {
      const result = await client.POST("/v1/activations", {
        params: { header: { "Idempotency-Key": key } },
        body,
      });
      if (!UNSETTLED.has(result.response.status) || attempt >= attempts) {
        return { ...result, key };
      }
      const retryAfter = Number(result.response.headers.get("Retry-After"));
      if (Number.isFinite(retryAfter) && retryAfter > 0) wait = Math.min(retryAfter, 5) * 1000;
    } catch (e) {
      if (attempt >= attempts) throw e;
    }
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

/**
 * With a 409 `price_changed`: the price now, in cents (the purchase charged nothing; buy again
 * with `expected_price_cents` set to it to accept it).
 */
export function currentPrice(body: unknown): number | undefined {
  const cents = (body as ErrorBody | undefined)?.error?.price_cents;
  return errorCode(body) === "price_changed" && typeof cents === "number" ? cents : undefined;
}

/** The error code of an error body, or `undefined` when the body is not one. */
export function errorCode(body: unknown): ErrorCode | undefined {
  const code = (body as ErrorBody | undefined)?.error?.code;
  return typeof code === "string" ? (code as ErrorCode) : undefined;
}

/** Most product tags one answer carries (`shared::tags::MAX_PRODUCT_TAGS`). */
export const MAX_PRODUCT_TAGS = 64;

/**
 * The cache tags of a catalog answer, as the API defines them (`shared/src/tags.rs`): tag a
 * server-side fetch with them (Next.js: `next: { tags }`), and the purge the origin sends after
 * a change (to a revalidation route) reaches exactly the answers it made out of date.
 *
 * | path | tags |
 * |---|---|
 * | `/v1/catalog/providers` | `catalog`, `providers` |
 * | `/v1/catalog/{p}/countries` | `catalog`, `provider:{p}`, `countries:{p}` |
 * | `/v1/catalog/{p}/services` | `catalog`, `provider:{p}`, `services:{p}` |
 * | `/v1/catalog/{p}/prices/{c}/{s}` | `catalog`, `provider:{p}`, `prices:{p}:{c}`, `price:{p}:{c}:{s}` |
 * | `/v1/catalog/{p}/prices/{c}?services=s1,…` (at most 64) | … `prices:{p}:{c}`, `price:{p}:{c}:{s1}`, … |
 * | `/v1/catalog/{p}/prices/{c}` (every service, or more than 64) | … `prices:{p}:{c}`, `prices-all:{p}:{c}` |
 *
 * A price change purges `price:{p}:{c}:{s}` and `prices-all:{p}:{c}`: one product's answers,
 * never its whole country's.
 */
export function catalogTags(path: string): string[] {
  const [pathname, query = ""] = path.split("?");
  const parts = (pathname ?? "").split("/").filter(Boolean);
  const [, , provider, kind, country, service] = parts;
  if (parts[0] !== "v1" || parts[1] !== "catalog") return [];
  if (provider === "providers" && parts.length === 3) return ["catalog", "providers"];
  switch (kind) {
    case "countries":
      return ["catalog", `provider:${provider}`, `countries:${provider}`];
    case "services":
      return ["catalog", `provider:${provider}`, `services:${provider}`];
    case "prices": {
      const base = ["catalog", `provider:${provider}`, `prices:${provider}:${country}`];
      if (service !== undefined) return [...base, `price:${provider}:${country}:${service}`];
      const named = new URLSearchParams(query).get("services");
      const services = named
        ? [...new Set(named.split(",").map((s) => s.trim()).filter(Boolean))].sort()
        : [];
      if (named && services.length <= MAX_PRODUCT_TAGS) {
        return [...base, ...services.map((s) => `price:${provider}:${country}:${s}`)];
      }
      return [...base, `prices-all:${provider}:${country}`];
    }
    default:
      return ["catalog"];
  }
}
