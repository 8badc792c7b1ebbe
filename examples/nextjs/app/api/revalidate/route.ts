/**
 * The origin's purge of this frontend's data cache (`NEXT_REVALIDATE_URL` of the origin): `POST`
 * `{"tags": [...], "soft": bool}` with `X-Revalidate-Secret` (the origin's `NEXT_REVALIDATE_SECRET`,
 * here `REVALIDATE_SECRET`). A hard purge (a product sold out, a new product, a balance) expires
 * each tag's cached fetches at once, so the next render reads the edge again (which the origin
 * purged too); a soft one (a price or availability step of a product still on sale) marks them
 * stale: the next render is served the cached copy while the fresh one is fetched behind it.
 */
import { timingSafeEqual } from "node:crypto";
import { revalidateTag } from "next/cache";

const SECRET = process.env.REVALIDATE_SECRET ?? "";
const TAG = /^[a-z0-9:_-]{1,128}$/;

function authorised(given: string | null): boolean {
  if (SECRET.length < 16 || given === null) return false;
  const [a, b] = [Buffer.from(given), Buffer.from(SECRET)];
  return a.length === b.length && timingSafeEqual(a, b);
}

export async function POST(request: Request): Promise<Response> {
  // Anyone without the secret learns nothing, as for any unknown path.
  if (!authorised(request.headers.get("x-revalidate-secret"))) {
    return Response.json({ error: { code: "not_found", message: "no such route" } }, { status: 404 });
  }
  const body = (await request.json().catch(() => null)) as { tags?: unknown; soft?: unknown } | null;
  const tags = body?.tags;
  const soft = body?.soft ?? false;
  if (
    !Array.isArray(tags) ||
    tags.length === 0 ||
    tags.length > 100 ||
    !tags.every((t) => typeof t === "string" && TAG.test(t)) ||
    typeof soft !== "boolean"
  ) {
    return Response.json(
      { error: { code: "bad_request", message: 'expected {"tags": [1-100 cache tags], "soft": optional boolean}' } },
      { status: 400 },
    );
  }
  for (const tag of tags as string[]) {
    revalidateTag(tag, soft ? "max" : { expire: 0 });
  }
  return Response.json({ revalidated: tags.length });
}
