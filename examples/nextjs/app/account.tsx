"use client";

import {
  type Activation,
  createNexnumClient,
  currentPrice,
  errorCode,
  idempotencyKey,
} from "@nexnum/api-client";
import dynamic from "next/dynamic";
import { type FormEvent, useMemo, useRef, useState } from "react";
import { dollars } from "../lib/format";
import type { AdminScope } from "./admin-panel";

/**
 * The admin view, in a chunk of its own (the guide's §4): `next/dynamic` fetches it the first
 * time it is rendered, which happens only for an admin, so no other visitor downloads it.
 */
const AdminPanel = dynamic(() => import("./admin-panel").then((m) => m.AdminPanel), {
  ssr: false,
  loading: () => <p>Loading the admin view…</p>,
});

type Product = { provider: string; country: string; service: string };

/** What a person should read for an error answer (the body's code, and Retry-After for 429). */
function explain(status: number, body: unknown, retryAfter: string | null): string {
  switch (errorCode(body)) {
    case "unauthorized":
      return status === 401 ? "Wrong email or password, or your session ended: sign in again." : "Sign in first.";
    case "insufficient_funds":
      return "Your balance is too low for this number. Top up and try again.";
    case "conflict":
      return "This number is sold out, or this purchase was already made.";
    case "price_changed":
      return `The price changed to ${dollars(currentPrice(body) ?? 0)} since you saw it. Nothing was charged.`;
    case "rate_limited":
      return `Too many attempts. Try again in ${retryAfter ?? "a few"} seconds.`;
    case "bad_request":
      return `That was not accepted: ${(body as { error: { message: string } }).error.message}`;
    case "unavailable":
    case "timeout":
      return "The service is busy right now. Try again in a moment.";
    default:
      return `Something went wrong (HTTP ${status}).`;
  }
}

/**
 * Sign-in (cookie session), balance, and one purchase button for `product` at the price the
 * visitor was shown (`shownCents`): if the price went up since, nothing is charged and the
 * visitor is asked whether to buy at the new one. An admin also gets the admin view.
 */
export function Account({
  edge,
  product,
  shownCents,
  adminScope,
}: {
  edge: string;
  product: Product;
  shownCents: number;
  adminScope: AdminScope;
}) {
  const api = useMemo(() => createNexnumClient(edge), [edge]);
  const [signedIn, setSignedIn] = useState(false);
  const [admin, setAdmin] = useState(false);
  // The price the visitor agreed to: the one shown, or a newer one they accepted.
  const [expected, setExpected] = useState(shownCents);
  const [newPrice, setNewPrice] = useState<number | null>(null);
  const [balance, setBalance] = useState<number | null>(null);
  const [bought, setBought] = useState<Activation[]>([]);
  const [message, setMessage] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  // One key per purchase attempt, reused if that attempt is retried; a new one after it ends.
  const attempt = useRef<string | null>(null);
  const inFlight = useRef(false);

  async function refreshBalance() {
    const { data } = await api.GET("/v1/me/balance");
    if (data) setBalance(data.balance_cents);
  }

  async function signIn(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const submitter = (event.nativeEvent as SubmitEvent).submitter as HTMLButtonElement | null;
    const register = submitter?.value === "register";
    const form = new FormData(event.currentTarget);
    const body = { email: String(form.get("email")), password: String(form.get("password")) };
    setMessage(null);
    if (register) {
      const created = await api.POST("/v1/auth/register", { body });
      if (created.error) {
        setMessage(explain(created.response.status, created.error, created.response.headers.get("Retry-After")));
        return;
      }
    }
    // The token also comes back as an HttpOnly cookie, which is what the browser uses from now on.
    const { data, error, response } = await api.POST("/v1/auth/login", { body });
    if (error) {
      setMessage(explain(response.status, error, response.headers.get("Retry-After")));
      return;
    }
    setSignedIn(true);
    setAdmin(data.role === "admin");
    await refreshBalance();
  }

  async function buy(atCents: number) {
    // A double click sends one request: the second click finds the first still in flight.
    if (inFlight.current) return;
    inFlight.current = true;
    setBusy(true);
    setMessage(null);
    setNewPrice(null);
    attempt.current ??= idempotencyKey();
    try {
      const { data, error, response } = await api.POST("/v1/activations", {
        params: { header: { "Idempotency-Key": attempt.current } },
        body: { ...product, expected_price_cents: atCents },
      });
      if (data) {
        setBought((list) => [data, ...list]);
        attempt.current = null;
      } else {
        setMessage(explain(response.status, error, response.headers.get("Retry-After")));
        setNewPrice(currentPrice(error) ?? null);
        if (response.status < 500) attempt.current = null;
      }
      await refreshBalance();
    } catch {
      setMessage("The request did not get through. Press Buy again: it will not charge twice.");
    } finally {
      inFlight.current = false;
      setBusy(false);
    }
  }

  return (
    <section>
      <h2>Your account</h2>
      {!signedIn && (
        <form onSubmit={signIn} data-testid="sign-in">
          <input name="email" type="email" placeholder="email" required />{" "}
          <input name="password" type="password" placeholder="password" required />{" "}
          <button type="submit" value="login">
            Sign in
          </button>{" "}
          <button type="submit" value="register">
            Create account
          </button>
        </form>
      )}
      {signedIn && (
        <div>
          <p>
            Balance: <strong data-testid="balance">{balance === null ? "…" : dollars(balance)}</strong>
          </p>
          <button type="button" onClick={() => buy(expected)} disabled={busy} data-testid="buy">
            Buy a number for {product.service} in {product.country.toUpperCase()} ({dollars(expected)})
          </button>
          <ul data-testid="bought">
            {bought.map((a) => (
              <li key={a.id}>
                {a.phone_number} ({dollars(a.price_cents)})
              </li>
            ))}
          </ul>
        </div>
      )}
      {message && (
        <p role="alert" data-testid="message" style={{ color: "#a00" }}>
          {message}
        </p>
      )}
      {newPrice !== null && (
        <button
          type="button"
          data-testid="buy-at-new-price"
          disabled={busy}
          onClick={() => {
            setExpected(newPrice);
            void buy(newPrice);
          }}
        >
          Buy at {dollars(newPrice)}
        </button>
      )}
      {signedIn && admin && <AdminPanel edge={edge} scope={adminScope} />}
    </section>
  );
}
