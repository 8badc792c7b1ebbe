"use client";
// The admin view: prices and stock of one provider in one country, editable. It lives in a chunk
// of its own (`next/dynamic` in account.tsx) that only an admin's browser downloads.

import { createNexnumClient, errorCode, type Price } from "@nexnum/api-client";
import { useEffect, useMemo, useState } from "react";
import { dollars } from "../lib/format";

export type AdminScope = { provider: string; country: string; services: string[] };

/** Names this view in the page, and marks its chunk: the browser test looks for it in the
 * scripts a page downloaded. */
const VIEW = "nexnum-admin-panel";

export function AdminPanel({ edge, scope }: { edge: string; scope: AdminScope }) {
  const api = useMemo(() => createNexnumClient(edge), [edge]);
  const [rows, setRows] = useState<Price[]>([]);
  const [status, setStatus] = useState<string | null>(null);
  const { provider, country } = scope;
  const services = scope.services.join(",");

  useEffect(() => {
    api
      .GET("/v1/catalog/{provider}/prices/{country}", {
        params: { path: { provider, country }, query: { services } },
        cache: "no-store",
      })
      .then(({ data }) => data && setRows(data.prices));
  }, [api, provider, country, services]);

  async function save(service: string, form: FormData) {
    const price_cents = Math.round(Number(form.get("price")) * 100);
    const stock = Number(form.get("stock"));
    const { data, error, response } = await api.PUT("/v1/admin/prices/{provider}/{country}/{service}", {
      params: { path: { provider, country, service } },
      body: { price_cents, stock },
    });
    if (data) {
      setRows((list) => list.map((r) => (r.service === service ? { ...r, ...data } : r)));
      setStatus(`Saved ${service}: ${dollars(data.price_cents)}, ${data.stock} in stock.`);
    } else {
      setStatus(`Not saved (${errorCode(error) ?? response.status}).`);
    }
  }

  return (
    <section data-testid="admin-panel" data-view={VIEW}>
      <h2>
        Admin: prices of {provider} in {country.toUpperCase()}
      </h2>
      <table>
        <tbody>
          {rows.map((r) => (
            <tr key={r.service}>
              <td>{r.service}</td>
              <td colSpan={3}>
                <form
                  data-service={r.service}
                  onSubmit={(e) => {
                    e.preventDefault();
                    void save(r.service, new FormData(e.currentTarget));
                  }}
                >
                  <input name="price" defaultValue={(r.price_cents / 100).toFixed(2)} size={8} aria-label="price" />{" "}
                  {/* The public catalog shows availability, not the count: the admin types the new stock. */}
                  <input name="stock" required placeholder={r.availability.replace("_", " ")} size={8} aria-label="stock" />{" "}
                  <button type="submit">Save</button>
                </form>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {status && <p data-testid="admin-status">{status}</p>}
    </section>
  );
}
