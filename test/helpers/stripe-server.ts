import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A loopback Stripe-compatible API for tests: the real `stripe` SDK talks to it through its
 * host/port/protocol options (STRIPE_API_BASE). It implements the endpoints billing calls, parses
 * the SDK's form-encoded bodies (`line_items[0][price]=…`) into objects, and records every request
 * (method, path, parsed body, query, Idempotency-Key) so tests assert the exact calls made.
 *
 * Like Stripe, a POST repeated with the same Idempotency-Key replays the first answer, and one
 * reusing a key with other parameters (or on another endpoint) is refused with 400
 * `idempotency_error`, so a key that does not encode everything that varies fails here as it
 * would in production. Tests can make the next requests fail (any status, e.g. 500 or a 402 card
 * decline) or answer slowly.
 *
 * A price change with `proration_behavior: always_invoice` makes a proration invoice like Stripe's:
 * for each changed item a credit line for the old price and a debit line for the new one, each the
 * price's unit amount times the fraction of the item's period left after `proration_date` (now
 * when not given), both lines' periods starting at that instant.
 */
export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, unknown>;
  // biome-ignore lint/suspicious/noExplicitAny: parsed form bodies are arbitrary
  body: any;
  idempotencyKey: string | undefined;
  stripeVersion: string | undefined;
  authorization: string | undefined;
}

type Json = Record<string, unknown>;

interface Fault {
  match?: string;
  method?: string;
  status: number;
  body?: Json;
  headers?: Record<string, string>;
}

/** Parses `a[b][0][c]=v` pairs into nested objects and arrays (all leaves are strings). */
export function parseForm(text: string): Json {
  const root: Json = {};
  for (const [rawKey, value] of new URLSearchParams(text)) {
    const parts = rawKey.split(/\[|\]\[|\]/).filter((part) => part !== "");
    let node: Record<string, unknown> | unknown[] = root;
    parts.forEach((part, index) => {
      const last = index === parts.length - 1;
      const nextIsIndex = /^\d+$/.test(parts[index + 1] ?? "");
      const key = Array.isArray(node) ? Number(part) : part;
      const container = node as Record<string | number, unknown>;
      if (last) {
        container[key] = value;
        return;
      }
      container[key] ??= nextIsIndex ? [] : {};
      node = container[key] as Record<string, unknown> | unknown[];
    });
  }
  return root;
}

/** JSON with object keys sorted at every level: equal for equal parameters whatever their order. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    const entries = Object.entries(value as Json).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, entry]) => `${JSON.stringify(key)}:${canonical(entry)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

const stripeError = (status: number, type: string, message: string, code?: string): { status: number; body: Json } => ({
  status,
  body: { error: { type, message, ...(code ? { code } : {}) } },
});

export interface StripeTestServer {
  url: string;
  requests: RecordedRequest[];
  /**
   * injected failures and delays actually served (not just queued); of the delayed requests, those
   * whose client gave up (hung up) before the answer — Stripe acted, the caller never heard; keys
   * reused with other parameters
   */
  served: { failures: number; delays: number; abandoned: number; idempotencyErrors: number };
  /** requests whose path starts with `prefix` (and method, when given) */
  requestsTo(prefix: string, method?: string): RecordedRequest[];
  /** the next `times` requests (matching `match` as a path prefix and `method`, if given) fail with this answer */
  failNext(fault: Fault, times?: number): void;
  /** the next `times` requests wait `ms` before answering */
  delayNext(ms: number, times?: number): void;
  subscriptions: Map<string, Json>;
  /** the proration invoices made, by id, as Stripe would send them in `invoice.*` events */
  invoices: Map<string, Json>;
  /** payment intent → invoice, as GET /v1/invoice_payments answers */
  invoicePayments: Map<string, string>;
  /** checkout session → the prices it sold, as GET /v1/checkout/sessions/:id/line_items answers (sessions made here are added) */
  sessionPrices: Map<string, string[]>;
  /**
   * the amount the next proration invoices (upgrades) are paid; undefined (the default, and after
   * `reset`): prorated from the prices' unit amounts (1,500 for prices without one)
   */
  prorationAmount: number | undefined;
  /** the status of the next proration invoice: "paid", or "open" while a bank debit is processing */
  prorationStatus: string;
  reset(): void;
  close(): Promise<void>;
}

export async function startStripeServer(options: { unitAmounts?: Record<string, number> } = {}): Promise<StripeTestServer> {
  const unitAmounts = options.unitAmounts ?? {};
  const requests: RecordedRequest[] = [];
  const served = { failures: 0, delays: 0, abandoned: 0, idempotencyErrors: 0 };
  const faults: Fault[] = [];
  const delays: number[] = [];
  /** Idempotency-Key → the first request's endpoint and parameters, and its answer */
  const replays = new Map<string, { request: string; status: number; body: Json }>();
  const subscriptions = new Map<string, Json>();
  const invoices = new Map<string, Json>();
  const invoicePayments = new Map<string, string>();
  const sessionPrices = new Map<string, string[]>();
  let counter = 0;
  const nextId = (prefix: string) => `${prefix}_test${String(++counter).padStart(6, "0")}`;
  const now = () => Math.floor(Date.now() / 1000);

  const state: { prorationAmount: number | undefined; prorationStatus: string } = { prorationAmount: undefined, prorationStatus: "paid" };

  function route(method: string, path: string, query: Json, body: Json): { status: number; body: Json } {
    if (method === "POST" && path === "/v1/customers") {
      return {
        status: 200,
        body: { id: nextId("cus"), object: "customer", email: body.email ?? null, metadata: body.metadata ?? {}, created: now() },
      };
    }
    if (method === "POST" && path === "/v1/checkout/sessions") {
      const id = nextId(body.mode === "subscription" ? "cs_test_sub" : "cs_test_pay");
      const items = (body.line_items as Json[] | undefined) ?? [];
      sessionPrices.set(id, items.flatMap((item) => (typeof item.price === "string" ? [item.price] : [])));
      return {
        status: 200,
        body: {
          id,
          object: "checkout.session",
          mode: body.mode,
          customer: body.customer ?? null,
          client_reference_id: body.client_reference_id ?? null,
          metadata: body.metadata ?? {},
          success_url: body.success_url,
          cancel_url: body.cancel_url,
          expires_at: Number(body.expires_at ?? now() + 86_400),
          payment_status: "unpaid",
          status: "open",
          url: `https://checkout.stripe.test/c/pay/${id}`,
        },
      };
    }
    if (method === "POST" && path === "/v1/billing_portal/sessions") {
      const id = nextId("bps");
      return {
        status: 200,
        body: {
          id,
          object: "billing_portal.session",
          customer: body.customer,
          return_url: body.return_url,
          url: `https://billing.stripe.test/p/session/${id}`,
        },
      };
    }
    const subscriptionMatch = /^\/v1\/subscriptions\/([^/]+)$/.exec(path);
    if (subscriptionMatch) {
      const subscription = subscriptions.get(subscriptionMatch[1] as string);
      if (!subscription) return stripeError(404, "invalid_request_error", "No such subscription", "resource_missing");
      if (method === "GET") return { status: 200, body: subscription };
      if (method === "POST") return { status: 200, body: updateSubscription(subscription, body) };
    }
    const lineItemsMatch = /^\/v1\/checkout\/sessions\/([^/]+)\/line_items$/.exec(path);
    if (method === "GET" && lineItemsMatch) {
      const prices = sessionPrices.get(lineItemsMatch[1] as string);
      if (!prices) return stripeError(404, "invalid_request_error", "No such checkout.session", "resource_missing");
      return {
        status: 200,
        body: {
          object: "list",
          url: path,
          has_more: false,
          data: prices.map((price) => ({
            id: nextId("li"),
            object: "item",
            quantity: 1,
            price: { id: price, object: "price", type: "one_time", unit_amount: unitAmounts[price] ?? null },
          })),
        },
      };
    }
    if (method === "GET" && path === "/v1/invoice_payments") {
      const payment = (query.payment ?? {}) as Json;
      const invoice = typeof payment.payment_intent === "string" ? invoicePayments.get(payment.payment_intent) : undefined;
      return {
        status: 200,
        body: {
          object: "list",
          url: "/v1/invoice_payments",
          has_more: false,
          data: invoice
            ? [
                {
                  id: nextId("inpay"),
                  object: "invoice_payment",
                  invoice,
                  is_default: true,
                  status: "paid",
                  payment: { type: "payment_intent", payment_intent: payment.payment_intent },
                },
              ]
            : [],
        },
      };
    }
    return stripeError(404, "invalid_request_error", `Unrecognized request URL (${method}: ${path})`);
  }

  function updateSubscription(subscription: Json, body: Json): Json {
    const items = subscription.items as { data: Json[] };
    const changes: { item: Json; from: string; to: string }[] = [];
    for (const change of (body.items as Json[] | undefined) ?? []) {
      const item = items.data.find((candidate) => candidate.id === change.id);
      if (item && typeof change.price === "string") {
        const from = (item.price as Json).id as string;
        // like Stripe, an unchanged price prorates nothing
        if (from !== change.price) changes.push({ item, from, to: change.price });
        item.price = { ...(item.price as Json), id: change.price };
      }
    }
    if (body.cancel_at_period_end !== undefined) subscription.cancel_at_period_end = body.cancel_at_period_end === "true";
    if (body.metadata) {
      const metadata = { ...(subscription.metadata as Record<string, string>) };
      for (const [key, value] of Object.entries(body.metadata as Record<string, string>)) {
        if (value === "") delete metadata[key];
        else metadata[key] = value;
      }
      subscription.metadata = metadata;
    }
    if (body.proration_behavior === "always_invoice") {
      const at = body.proration_date === undefined ? now() : Number(body.proration_date);
      const invoice = prorationInvoice(subscription, changes, at);
      invoices.set(invoice.id as string, invoice);
      subscription.latest_invoice = invoice.id;
      const expand = (body.expand as string[] | undefined) ?? [];
      if (expand.includes("latest_invoice")) return { ...subscription, latest_invoice: invoice };
    }
    return subscription;
  }

  /** Stripe's proration of price changes at `at` (epoch seconds), invoiced at once. */
  function prorationInvoice(subscription: Json, changes: { item: Json; from: string; to: string }[], at: number): Json {
    const id = nextId("in");
    let priced = true;
    const lines = changes.flatMap(({ item, from, to }) => {
      const start = item.current_period_start as number;
      const end = item.current_period_end as number;
      const left = (end - Math.min(Math.max(at, start), end)) / (end - start);
      const line = (price: string, sign: 1 | -1) => {
        const unit = unitAmounts[price];
        if (unit === undefined) priced = false;
        return {
          id: nextId("il"),
          object: "line_item",
          invoice: id,
          amount: sign * Math.round((unit ?? 0) * left),
          period: { start: at, end },
          pricing: { type: "price_details", price_details: { price, product: `prod_${price}` } },
          parent: {
            type: "subscription_item_details",
            subscription_item_details: { subscription: subscription.id, subscription_item: item.id, proration: true },
          },
        };
      };
      return [line(from, -1), line(to, 1)];
    });
    const prorated = Math.max(0, lines.reduce((sum, line) => sum + line.amount, 0));
    const total = state.prorationAmount ?? (priced ? prorated : 1_500);
    return {
      id,
      object: "invoice",
      status: state.prorationStatus,
      customer: subscription.customer,
      billing_reason: "subscription_update",
      amount_due: total,
      amount_paid: state.prorationStatus === "paid" ? total : 0,
      parent: {
        type: "subscription_details",
        subscription_details: { subscription: subscription.id, metadata: { ...(subscription.metadata as Json) } },
      },
      lines: { object: "list", data: lines, has_more: false },
    };
  }

  async function handle(request: IncomingMessage, response: ServerResponse) {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const url = new URL(request.url ?? "/", "http://127.0.0.1");
    const method = request.method ?? "GET";
    const text = Buffer.concat(chunks).toString("utf8");
    const header = (name: string) => {
      const value = request.headers[name];
      return Array.isArray(value) ? value[0] : value;
    };
    const recorded: RecordedRequest = {
      method,
      path: url.pathname,
      query: parseForm(url.search.slice(1)),
      body: parseForm(text),
      idempotencyKey: header("idempotency-key"),
      stripeVersion: header("stripe-version"),
      authorization: header("authorization"),
    };
    requests.push(recorded);
    const delay = delays.shift();
    if (delay) {
      served.delays++;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }

    const send = (status: number, body: Json, headers: Record<string, string> = {}) => {
      if (response.destroyed) {
        served.abandoned++;
        return;
      }
      response.writeHead(status, { "content-type": "application/json", "request-id": `req_${counter}`, ...headers });
      response.end(JSON.stringify(body));
    };
    const faultIndex = faults.findIndex(
      (fault) => (!fault.match || url.pathname.startsWith(fault.match)) && (!fault.method || fault.method === method),
    );
    if (faultIndex >= 0) {
      const [fault] = faults.splice(faultIndex, 1) as [Fault];
      served.failures++;
      send(fault.status, fault.body ?? stripeError(fault.status, "api_error", "Injected failure").body, fault.headers);
      return;
    }
    const replayKey = method === "POST" ? recorded.idempotencyKey : undefined;
    // Parameters compared as parsed, like Stripe does (not byte for byte): the same params in another order match.
    const fingerprint = `${method} ${url.pathname} ${canonical(recorded.body)}`;
    const replay = replayKey ? replays.get(replayKey) : undefined;
    if (replay) {
      if (replay.request !== fingerprint) {
        served.idempotencyErrors++;
        const refused = stripeError(
          400,
          "idempotency_error",
          `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${replayKey}' if you meant to execute a different request.`,
        );
        send(refused.status, refused.body);
        return;
      }
      send(replay.status, replay.body, { "idempotent-replayed": "true" });
      return;
    }
    const answer = route(method, url.pathname, recorded.query, recorded.body);
    if (replayKey && answer.status < 500) replays.set(replayKey, { request: fingerprint, ...answer });
    send(answer.status, answer.body);
  }

  const server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      response.writeHead(500).end(JSON.stringify({ error: { type: "api_error", message: String(error) } }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    served,
    requestsTo: (prefix, method) =>
      requests.filter((request) => request.path.startsWith(prefix) && (!method || request.method === method)),
    failNext(fault, times = 1) {
      for (let i = 0; i < times; i++) faults.push(fault);
    },
    delayNext(ms, times = 1) {
      for (let i = 0; i < times; i++) delays.push(ms);
    },
    subscriptions,
    invoices,
    invoicePayments,
    sessionPrices,
    get prorationAmount() {
      return state.prorationAmount;
    },
    set prorationAmount(value: number | undefined) {
      state.prorationAmount = value;
    },
    get prorationStatus() {
      return state.prorationStatus;
    },
    set prorationStatus(value: string) {
      state.prorationStatus = value;
    },
    reset() {
      state.prorationStatus = "paid";
      state.prorationAmount = undefined;
      requests.length = 0;
      faults.length = 0;
      delays.length = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
