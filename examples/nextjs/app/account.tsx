"use client";

import {
  type Activation,
  createNexnumClient,
  errorCode,
  idempotencyKey,
  type PurchaseRequest,
} from "@nexnum/api-client";
import { type FormEvent, useMemo, useRef, useState } from "react";
import { dollars } from "../lib/format";

/** What a person should read for an error answer (the body's code, and Retry-After for 429). */
function explain(status: number, body: unknown, retryAfter: string | null): string {
  switch (errorCode(body)) {
    case "unauthorized":
      return status === 401 ? "Wrong email or password, or your session ended: sign in again." : "Sign in first.";
    case "insufficient_funds":
      return "Your balance is too low for this number. Top up and try again.";
    case "conflict":
      return "This number is sold out, or this purchase was already made.";
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

/** Sign-in (cookie session), balance, and one purchase button for `product`. */
export function Account({ edge, product }: { edge: string; product: PurchaseRequest }) {
  const api = useMemo(() => createNexnumClient(edge), [edge]);
  const [signedIn, setSignedIn] = useState(false);
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
    const { error, response } = await api.POST("/v1/auth/login", { body });
    if (error) {
      setMessage(explain(response.status, error, response.headers.get("Retry-After")));
      return;
    }
    setSignedIn(true);
    await refreshBalance();
  }

  async function buy() {
    // A double click sends one request: the second click finds the first still in flight.
    if (inFlight.current) return;
    inFlight.current = true;
    setBusy(true);
    setMessage(null);
    attempt.current ??= idempotencyKey();
    try {
      const { data, error, response } = await api.POST("/v1/activations", {
        params: { header: { "Idempotency-Key": attempt.current } },
        body: product,
      });
      if (data) {
        setBought((list) => [data, ...list]);
        attempt.current = null;
      } else {
        setMessage(explain(response.status, error, response.headers.get("Retry-After")));
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
          <button type="button" onClick={buy} disabled={busy} data-testid="buy">
            Buy a number for {product.service} in {product.country.toUpperCase()}
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
    </section>
  );
}
