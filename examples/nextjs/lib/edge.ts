/**
 * Where the edge is, and how long the catalog may be reused: the revalidation periods are the
 * `max-age` of the policy table (`shared/src/policy.rs`, README "Catalog API"), so the server
 * renders no staler than a browser would cache.
 */
import { catalogTags, type components } from "@nexnum/api-client";

/** The edge, as the Next.js server reaches it. */
export const EDGE_URL = process.env.EDGE_URL ?? "http://localhost:8787";
/** The edge, as the browser reaches it (read at request time and handed to the client
 * components as a prop, so one build runs against any edge). */
export const PUBLIC_EDGE_URL = process.env.PUBLIC_EDGE_URL ?? EDGE_URL;

export const REVALIDATE = {
  /** providers, countries, services: `max-age=300` */
  lists: 300,
  /** prices: `max-age=15` */
  prices: 15,
} as const;

export type Schemas = components["schemas"];

/**
 * The key that makes the edge count this server as a trusted client, on a budget of its own
 * rather than as one busy address (`TRUSTED_CLIENTS` of the edge, docs/edge.md). A server-only
 * secret: never a `NEXT_PUBLIC_` variable, never sent from the browser.
 */
const EDGE_CLIENT_KEY = process.env.EDGE_CLIENT_KEY;
const SERVER_HEADERS: Record<string, string> = EDGE_CLIENT_KEY
  ? { "x-edge-client-key": EDGE_CLIENT_KEY }
  : {};

/**
 * A server-side catalog read through the edge, cached by Next.js for `revalidate` seconds at
 * most, and tagged with the answer's cache tags: a change the origin purges
 * (`app/api/revalidate`) reaches the cached copy at once instead of after `revalidate`.
 */
export async function catalog<T>(path: string, revalidate: number): Promise<T> {
  const response = await fetch(`${EDGE_URL}${path}`, {
    headers: SERVER_HEADERS,
    next: { revalidate, tags: catalogTags(path) },
  });
  if (!response.ok) {
    throw new Error(`GET ${path}: ${response.status}`);
  }
  return (await response.json()) as T;
}

export { dollars } from "./format";
