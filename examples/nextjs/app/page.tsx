import Image from "next/image";
import { connection } from "next/server";
import { catalog, dollars, PUBLIC_EDGE_URL, REVALIDATE, type Schemas } from "../lib/edge";
import { Account } from "./account";
import { LivePrices } from "./live-prices";

// Rendered on the server from the edge at request time (the edge need not be up while building);
// each read is kept in Next.js's data cache for its revalidation period (the policy table's
// max-age), like a browser would keep it, and tagged so the origin's purge after a change
// reaches it at once (`app/api/revalidate`).

const PROVIDER = "5sim";

/** Logos shipped with the example (public/logos), for the seeded providers. */
const LOGOS = new Set(["5sim", "sms-activate", "onlinesim", "smshub", "grizzly"]);

export default async function Page() {
  await connection();
  // The three lists do not depend on each other: read them at once (the guide's §2, batching).
  const [providers, countries, services] = await Promise.all([
    catalog<Schemas["ProvidersResponse"]>("/v1/catalog/providers", REVALIDATE.lists),
    catalog<Schemas["CountriesResponse"]>(`/v1/catalog/${PROVIDER}/countries`, REVALIDATE.lists),
    catalog<Schemas["ServicesResponse"]>(`/v1/catalog/${PROVIDER}/services`, REVALIDATE.lists),
  ]);
  const country = countries.countries[0]?.code ?? "us";
  const codes = services.services.slice(0, 8).map((s) => s.code);
  const bulk = await catalog<Schemas["BulkPricesResponse_Price"]>(
    `/v1/catalog/${PROVIDER}/prices/${country}?services=${codes.join(",")}`,
    REVALIDATE.prices,
  );
  const first = bulk.prices[0];

  return (
    <main>
      <h1>NexNum catalog</h1>
      <ul data-testid="providers" style={{ listStyle: "none", padding: 0, display: "flex", gap: "1rem" }}>
        {providers.providers.map((p) => (
          <li key={p.code} style={{ display: "flex", alignItems: "center", gap: "0.4rem" }}>
            {/* Explicit width and height: the space is held before the image arrives (no layout
                shift); SVGs are served as they are (nothing to optimise). */}
            {LOGOS.has(p.code) && (
              <Image src={`/logos/${p.code}.svg`} alt="" width={32} height={32} unoptimized data-testid="logo" />
            )}
            {p.name}
          </li>
        ))}
      </ul>
      <h2>
        Prices of {PROVIDER} in {country.toUpperCase()} (rendered on the server)
      </h2>
      <table data-testid="server-prices">
        <thead>
          <tr>
            <th>service</th>
            <th>price</th>
            <th>availability</th>
          </tr>
        </thead>
        <tbody>
          {bulk.prices.map((p) => (
            <tr key={p.service} data-service={p.service} data-cents={p.price_cents}>
              <td>{p.service}</td>
              <td>{dollars(p.price_cents)}</td>
              <td data-availability={p.availability}>{p.availability.replace("_", " ")}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <LivePrices edge={PUBLIC_EDGE_URL} provider={PROVIDER} country={country} services={codes} />
      {first && (
        <Account
          edge={PUBLIC_EDGE_URL}
          product={{ provider: PROVIDER, country, service: first.service }}
          shownCents={first.price_cents}
          adminScope={{ provider: PROVIDER, country, services: codes }}
        />
      )}
    </main>
  );
}
