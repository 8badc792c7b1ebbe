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

  // @ts-expect-error: a price is integer cents, not a string
  const wrong: string = price?.price_cents;
  // @ts-expect-error: no such route
  await api.GET("/v1/catalog/nope");
  await api.POST("/v1/activations", {
    // @ts-expect-error: `service` is required
    body: { provider: "5sim", country: "ad" },
  });

  return (cents ?? 0) + prices.length + (phone?.length ?? 0) + String(wrong).length;
}
