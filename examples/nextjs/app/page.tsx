import { connection } from "next/server";
import { catalog, dollars, PUBLIC_EDGE_URL, REVALIDATE, type Schemas } from "../lib/edge";
import { Account } from "./account";
import { LivePrices } from "./live-prices";

// Rendered on the server from the edge at request time (the edge need not be up while building);
// each read is kept in Next.js's data cache for its revalidation period (the policy table's
// max-age), like a browser would keep it.

const PROVIDER = "5sim";

export default async function Page() {
  await connection();
  const providers = await catalog<Schemas["ProvidersResponse"]>(
    "/v1/catalog/providers",
    REVALIDATE.lists,
  );
  const countries = await catalog<Schemas["CountriesResponse"]>(
    `/v1/catalog/${PROVIDER}/countries`,
    REVALIDATE.lists,
  );
  const services = await catalog<Schemas["ServicesResponse"]>(
    `/v1/catalog/${PROVIDER}/services`,
    REVALIDATE.lists,
  );
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
      <p>
        Providers:{" "}
        <span data-testid="providers">{providers.providers.map((p) => p.name).join(", ")}</span>
      </p>
      <h2>
        Prices of {PROVIDER} in {country.toUpperCase()} (rendered on the server)
      </h2>
      <table data-testid="server-prices">
        <thead>
          <tr>
            <th>service</th>
            <th>price</th>
            <th>in stock</th>
          </tr>
        </thead>
        <tbody>
          {bulk.prices.map((p) => (
            <tr key={p.service} data-service={p.service} data-cents={p.price_cents}>
              <td>{p.service}</td>
              <td>{dollars(p.price_cents)}</td>
              <td>{p.stock}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <LivePrices edge={PUBLIC_EDGE_URL} provider={PROVIDER} country={country} services={codes} />
      {first && (
        <Account
          edge={PUBLIC_EDGE_URL}
          product={{ provider: PROVIDER, country, service: first.service }}
        />
      )}
    </main>
  );
}
