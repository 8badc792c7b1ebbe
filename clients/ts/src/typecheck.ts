/**
 * Compile-time checks of the generated types (`npm run check`): calls a frontend makes, and calls
 * that must not compile. If the spec loses a route, a parameter or a field, this file stops
 * compiling; the `@ts-expect-error` lines fail if the types become too loose to catch mistakes.
 */
import { createNexnumClient, idempotencyKey, type Price } from "./index";

const api = createNexnumClient("http://localhost:8787");

export async function examples(): Promise<number> {
  const { data: price } = await api.GET("/v1/catalog/{provider}/prices/{country}/{service}", {
    params: { path: { provider: "5sim", country: "ad", service: "whatsapp" } },
  });
  const cents: number | undefined = price?.price_cents;

  const { data: bulk } = await api.GET("/v1/catalog/{provider}/prices/{country}", {
    params: { path: { provider: "5sim", country: "ad" }, query: { services: "whatsapp,telegram" } },
  });
  const prices: Price[] = bulk?.prices ?? [];

  const bought = await api.POST("/v1/activations", {
    params: { header: { "Idempotency-Key": idempotencyKey() } },
    body: { provider: "5sim", country: "ad", service: "whatsapp" },
  });
  if (bought.error) {
    const code: string = bought.error.error.code;
    return code.length;
  }
  const phone: string | undefined = bought.data?.phone_number;

  // The price guard and the bulk update are typed too.
  const guarded = await api.POST("/v1/activations", {
    body: { provider: "5sim", country: "ad", service: "whatsapp", expected_price_cents: 370 },
  });
  const now: number | undefined = guarded.error?.error.price_cents ?? undefined;
  const updated = await api.PUT("/v1/admin/prices", {
    params: { header: { "Idempotency-Key": idempotencyKey() } },
    body: { prices: [{ provider: "5sim", country: "ad", service: "whatsapp", price_cents: 370, stock: 5 }] },
  });
  const changed: number = (updated.data?.changed ?? 0) + (now ?? 0);

  // @ts-expect-error: a price is integer cents, not a string
  const wrong: string = price?.price_cents;
  // @ts-expect-error: no such route
  await api.GET("/v1/catalog/nope");
  await api.POST("/v1/activations", {
    // @ts-expect-error: `service` is required
    body: { provider: "5sim", country: "ad" },
  });

  await api.PUT("/v1/admin/prices", {
    // @ts-expect-error: a row needs its stock
    body: { prices: [{ provider: "5sim", country: "ad", service: "whatsapp", price_cents: 370 }] },
  });

  return (cents ?? 0) + prices.length + (phone?.length ?? 0) + String(wrong).length + changed;
}
