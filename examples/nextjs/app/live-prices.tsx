"use client";

import { createNexnumClient, type Price } from "@nexnum/api-client";
import { useEffect, useState } from "react";
import { dollars } from "../lib/format";

/** The same prices, fetched by the browser from the edge (a cross-origin request: CORS). */
export function LivePrices(props: {
  edge: string;
  provider: string;
  country: string;
  services: string[];
}) {
  const [prices, setPrices] = useState<Price[] | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const { edge, provider, country } = props;
  const services = props.services.join(",");

  useEffect(() => {
    const api = createNexnumClient(edge);
    api
      .GET("/v1/catalog/{provider}/prices/{country}", {
        params: { path: { provider, country }, query: { services } },
      })
      .then(({ data, error, response }) => {
        if (data) setPrices(data.prices);
        else setProblem(error?.error.message ?? `HTTP ${response.status}`);
      })
      .catch(() => setProblem("the catalog is out of reach; retry in a moment"));
  }, [edge, provider, country, services]);

  return (
    <section>
      <h2>Live prices (fetched by your browser)</h2>
      {problem && <p role="alert">{problem}</p>}
      {/* While loading, one placeholder line per service: the same height as the answer, so
          nothing below moves when it arrives (no layout shift). */}
      {!prices && !problem && (
        <ul data-testid="live-prices-loading" aria-busy="true">
          {props.services.map((s) => (
            <li key={s}>{s}: …</li>
          ))}
        </ul>
      )}
      {prices && (
        <ul data-testid="live-prices">
          {prices.map((p) => (
            <li key={p.service} data-service={p.service} data-cents={p.price_cents}>
              {p.service}: {dollars(p.price_cents)}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
