import { createHmac } from "node:crypto";
import fc from "fast-check";
import { exportSPKI, generateKeyPair, importJWK, type JWK, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAuthenticator } from "../../lib/auth.js";
import { httpHandler } from "../../lib/http/stack.js";
import { OPERATIONS } from "../../lib/openapi/operations.js";
import { FUNCTIONS, routeTable } from "../../lib/routes.js";
import type { AppDeps } from "../../lib/runtime.js";
import { type BillingFixture, billingFixture } from "../helpers/billing.js";
import { type Answer, httpEvent, invoke } from "../helpers/events.js";
import { OPUS, SONNET } from "../helpers/http.js";
import { captureLogs } from "../helpers/logs.js";
import { signatureFor, stripeEvent, uniqueStripeId, WEBHOOK_SECRET } from "../helpers/stripe-events.js";
import {
  type JwksServer,
  serviceToken,
  signToken,
  startJwksServer,
  TEST_AUDIENCE,
  TEST_ISSUER,
  TEST_SECRET,
  unsignedToken,
  userToken,
} from "../helpers/tokens.js";
import { HEAVY, recordOutcomeOf, recordSection, SEED, tableDigest } from "./harness.js";

/**
 * Hostile input against every route of lib/routes.ts through the real functions (cold-started
 * from their environment, real middy stacks): fast-check bodies and queries (random JSON, huge
 * numbers, unicode, prototype-pollution keys, duplicated keys, 1 MB bodies, broken base64), broken
 * and duplicated headers, JWT attacks, and forged Stripe signatures. Every answer must be the
 * documented 4xx with the contract's error body, never a 5xx; the table must be byte-for-byte
 * what it was (a digest of every item), and Stripe must not have been called.
 */
captureLogs();

const RUNS = HEAVY ? 600 : 60;
const started = performance.now();
const counts = { bodies: 0, queries: 0, headers: 0, jwt: 0, signatures: 0, serverErrors: 0, writes: 0, stripeCalls: 0 };
// the routes that ask for a bearer token (a JWT function's public route, the OpenAPI document, does not)
const JWT_ROUTES = [...routeTable().entries()]
  .filter(([route, fn]) => FUNCTIONS[fn].auth === "jwt" && OPERATIONS[route as keyof typeof OPERATIONS]?.caller !== "public")
  .map(([route]) => route);
const CODES: Record<number, string[]> = {
  400: ["VALIDATION_FAILED", "UNKNOWN_MODEL"],
  401: ["UNAUTHORIZED"],
  403: ["FORBIDDEN"],
  404: ["NOT_FOUND"],
};

let fx: BillingFixture;
// biome-ignore lint/suspicious/noExplicitAny: the imported function modules
let handlers: Record<string, (event: any, context: any) => Promise<any>>;
let service: string;
let user: string;
const userA = `hostile-a-${process.pid}`;
let holdA: string;

beforeAll(async () => {
  fx = await billingFixture();
  const [gate, credits] = await Promise.all([import("../../functions/chat-gate.js"), import("../../functions/credits.js")]);
  const byFunction = { chatGate: gate.handler, credits: credits.handler, ...mapBilling(fx) };
  handlers = Object.fromEntries([...routeTable()].map(([route, fn]) => [route, byFunction[fn as keyof typeof byFunction]]));
  service = await serviceToken({ expiresIn: 3_600 });
  user = await userToken(userA, { expiresIn: 3_600 });
  const opened = await invoke(gate.handler, {
    routeKey: "POST /v1/gate/authorize",
    token: service,
    body: { userId: userA, requestId: "real-hold", model: SONNET, inputTokens: 1_000, maxOutputTokens: 1_000 },
  });
  expect(opened.status).toBe(200);
  holdA = opened.json.holdId;
});

function mapBilling(fixture: BillingFixture) {
  return { subscribe: fixture.fns.subscribe.handler, portal: fixture.fns.portal.handler, webhook: fixture.fns.webhook.handler };
}

/** A valid request per route: if any refused request were let through, it would write or call Stripe. */
function validBody(route: string): unknown {
  switch (route) {
    case "POST /v1/gate/authorize":
      return { userId: userA, requestId: `would-write-${Math.random()}`, model: SONNET, inputTokens: 10, maxOutputTokens: 10 };
    case "POST /v1/gate/settle":
      return { holdId: holdA, inputTokens: 1_000, outputTokens: 1_000 };
    case "POST /v1/gate/release":
      return { holdId: holdA };
    case "POST /v1/billing/subscribe":
      return { plan: "pro", interval: "month" };
    case "POST /v1/billing/checkout":
      return { pack: "starter" };
    case "POST /v1/billing/change-plan":
      return { plan: "plus" };
    default:
      return undefined;
  }
}

function send(route: string, options: { token?: string; body?: string; base64?: boolean; query?: Record<string, string>; headers?: Record<string, string> }) {
  const event = httpEvent({
    routeKey: route,
    ...(options.body === undefined ? {} : { body: options.body }),
    ...(options.base64 ? { base64: true } : {}),
    ...(options.token ? { token: options.token } : {}),
    ...(options.query ? { query: options.query } : {}),
  });
  if (options.base64 && options.body !== undefined) event.body = options.body; // already encoded (or broken) by the caller
  if (options.headers) event.headers = { ...event.headers, ...options.headers };
  return invoke(handlers[route] as never, event);
}

/** The contract: a documented 4xx, the error body and nothing else. */
function expectRefusal(answer: Answer, allowed: number[], what: string) {
  if (answer.status >= 500) counts.serverErrors++;
  expect(allowed, `${what}: ${answer.status} ${JSON.stringify(answer.json)}`).toContain(answer.status);
  expect(Object.keys(answer.json ?? {}), what).toEqual(["error"]);
  expect(typeof answer.json.error.message, what).toBe("string");
  expect(CODES[answer.status], `${what}: code ${answer.json.error.code}`).toContain(answer.json.error.code);
  expect(answer.headers["content-type"], what).toBe("application/json");
}

/** Runs `probe` and proves it wrote nothing (table digest) and called nobody (Stripe requests). */
async function writesNothing(probe: () => Promise<void>) {
  const before = await tableDigest(fx.client, fx.tableName);
  const stripeBefore = fx.stripe.requests.length;
  await probe();
  const after = await tableDigest(fx.client, fx.tableName);
  const stripeCalls = fx.stripe.requests.length - stripeBefore;
  if (after.digest !== before.digest) counts.writes++;
  counts.stripeCalls += stripeCalls;
  expect(after).toEqual(before);
  expect(stripeCalls).toBe(0);
}

// ---- arbitraries -------------------------------------------------------------------------------

const ID_CHARS = /^[A-Za-z0-9._@|:+=-]+$/;
const MODELS = new Set([SONNET, OPUS, "openai/gpt-5.2", "google/gemini-3-pro-preview", "mistralai/mistral-large-2512"]);
const junk = fc.jsonValue({ maxDepth: 3 });
const unicode = fc.string({ unit: "binary", minLength: 1, maxLength: 40 });
const wrongType = fc.oneof(fc.constant(null), fc.boolean(), fc.array(junk, { maxLength: 3 }), fc.dictionary(fc.string(), junk, { maxKeys: 3 }));
const POLLUTION_KEYS = ["__proto__", "constructor", "prototype", "__defineGetter__", "hasOwnProperty", "toString", "valueOf"];
const badNumber = (max: number) =>
  fc.oneof(
    fc.constantFrom(-1, -0.5, 0.5, 1.5, max + 1, 1e21, 1e308, -1e308, 2 ** 53, 2 ** 53 + 2, Number.MAX_VALUE),
    fc.double({ noNaN: true, noDefaultInfinity: true }).filter((n) => !Number.isInteger(n) || n < 0 || n > max),
    fc.integer({ min: max + 1 }),
    fc.string().map((text) => text),
    wrongType,
  );
const badId = fc.oneof(
  fc.constant(""),
  fc.stringMatching(/^[A-Za-z0-9]{129,200}$/),
  unicode.filter((text) => !ID_CHARS.test(text)),
  fc.tuple(fc.stringMatching(/^[a-z0-9]{0,10}$/), fc.constantFrom(" ", "/", "#", "?", "%", "*", "\n", "\u0000", "é", "😀", "'", '"', "<"), fc.stringMatching(/^[a-z0-9]{0,10}$/)).map((parts) => parts.join("")),
  fc.integer(),
  wrongType,
);
const badModel = fc.oneof(unicode.filter((text) => !MODELS.has(text)), fc.constant(""), fc.integer(), wrongType, fc.constant(`${SONNET} `), fc.constant(SONNET.toUpperCase()));
const badHoldId = fc.oneof(fc.constant(""), fc.stringMatching(/^[A-Za-z]{1025,1100}$/), fc.integer(), wrongType);
const badEnum = (valid: string[]) => fc.oneof(unicode.filter((text) => !valid.includes(text)), fc.constant(""), fc.integer(), wrongType, fc.constant("free"));

interface RawBody {
  text: string;
  base64?: boolean;
}

const omit = (body: Record<string, unknown>, field: string) => Object.fromEntries(Object.entries(body).filter(([key]) => key !== field));

/**
 * Bodies that are wrong in at least one way, built around a valid one: a field poisoned, a field
 * missing, an unknown or prototype-polluting key, a duplicated key whose last copy is bad, a number
 * too large for JSON, a 1 MB body, something that is not JSON or not base64, or random JSON.
 */
function hostileBodies(options: {
  base: Record<string, unknown>;
  bad: Record<string, fc.Arbitrary<unknown>>;
  required: string[];
  /** random JSON that happens to be valid for the route (e.g. `{}` for portal) */
  isValid: (body: unknown) => boolean;
}): fc.Arbitrary<RawBody> {
  const { base, bad, required } = options;
  const fields = Object.keys(bad);
  const json = (body: unknown): RawBody => ({ text: JSON.stringify(body) });
  const poisoned = fc
    .constantFrom(...fields)
    .chain((field) => (bad[field] as fc.Arbitrary<unknown>).map((value) => ({ ...base, [field]: value })));
  const arbitraries: fc.Arbitrary<RawBody>[] = [
    poisoned.map(json),
    fc.tuple(poisoned, fc.constantFrom(...fields)).chain(([body, other]) => (bad[other] as fc.Arbitrary<unknown>).map((value) => json({ ...body, [other]: value }))),
    fc
      .tuple(fc.oneof(fc.constantFrom(...POLLUTION_KEYS), fc.string({ minLength: 1 }).filter((key) => !(key in base) && !fields.includes(key))), junk)
      .map(([key, value]) => json({ ...base, [key]: value })),
    // A polluting key written literally in the JSON text (JSON.parse makes it an own property).
    fc.tuple(fc.constantFrom("__proto__", "constructor"), junk).map(([key, value]) => ({
      text: `{${JSON.stringify(key)}:${JSON.stringify(key === "constructor" ? { prototype: { polluted: value } } : { polluted: value })}${Object.keys(base).length ? "," : ""}${JSON.stringify(base).slice(1)}`,
    })),
    // Duplicated key: JSON.parse keeps the last copy, which is the bad one.
    fc
      .constantFrom(...fields)
      .chain((field) => (bad[field] as fc.Arbitrary<unknown>).map((value) => ({ text: `${JSON.stringify(base).slice(0, -1)}${Object.keys(base).length ? "," : ""}${JSON.stringify(field)}:${JSON.stringify(value) ?? "null"}}` }))),
    // Numbers JSON can carry but JavaScript cannot hold exactly (Infinity, 1e400, 400 digits).
    fc.tuple(fc.constantFrom(...fields), fc.constantFrom("1e400", "-1e400", `1${"0".repeat(400)}`, "123456789012345678901234567890", "-0.0000000001")).map(
      ([field, literal]) => ({ text: `${JSON.stringify({ ...base, [field]: 0 }).replace(`${JSON.stringify(field)}:0`, `${JSON.stringify(field)}:${literal}`)}` }),
    ),
    // 1 MB: a huge field, or a valid body drowned in whitespace.
    fc.constantFrom(
      { text: JSON.stringify({ ...base, [fields[0] as string]: "x".repeat(1_048_576) }) },
      { text: `${JSON.stringify(base)}${" ".repeat(1_048_576)}` },
      { text: Buffer.from(JSON.stringify({ ...base, pad: "y".repeat(800_000) })).toString("base64"), base64: true },
    ),
    fc.string({ minLength: 1, maxLength: 60 }).filter((text) => !parses(text)).map((text) => ({ text })),
    fc.string({ minLength: 1, maxLength: 60 }).map((text) => ({ text: `${text}!@#`, base64: true })),
    junk.filter((value) => !options.isValid(value)).map(json),
  ];
  for (const field of required) arbitraries.push(fc.constant(json(omit(base, field))));
  return fc.oneof(...arbitraries);
}

function parses(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value);

// ---- the routes ------------------------------------------------------------------------------

recordOutcomeOf("hostile-input");

describe("every route refuses hostile bodies and queries with its documented 4xx, writing nothing", () => {
  const bodyRoutes: { route: string; token: () => string; allowed: number[]; arbitrary: () => fc.Arbitrary<RawBody> }[] = [
    {
      route: "POST /v1/gate/authorize",
      token: () => service,
      allowed: [400],
      arbitrary: () =>
        hostileBodies({
          base: { userId: userA, requestId: "fuzz", model: SONNET, inputTokens: 10, maxOutputTokens: 10 },
          bad: { userId: badId, requestId: badId, model: badModel, inputTokens: badNumber(2_000_000), maxOutputTokens: badNumber(1_000_000) },
          required: ["userId", "requestId", "model", "inputTokens", "maxOutputTokens"],
          isValid: () => false,
        }),
    },
    {
      route: "POST /v1/gate/settle",
      token: () => service,
      // 404: a well-formed body naming a hold that does not exist (forged or random ids)
      allowed: [400, 404],
      arbitrary: () =>
        fc.oneof(
          hostileBodies({
            base: { holdId: holdA, inputTokens: 10, outputTokens: 10 },
            bad: { holdId: badHoldId, inputTokens: badNumber(2_000_000), outputTokens: badNumber(1_000_000) },
            required: ["holdId", "inputTokens", "outputTokens"],
            isValid: () => false,
          }),
          forgedHoldIds().map((holdId) => ({ text: JSON.stringify({ holdId, inputTokens: 5, outputTokens: 5 }) })),
        ),
    },
    {
      route: "POST /v1/gate/release",
      token: () => service,
      allowed: [400, 404],
      arbitrary: () =>
        fc.oneof(
          hostileBodies({ base: { holdId: holdA }, bad: { holdId: badHoldId }, required: ["holdId"], isValid: () => false }),
          forgedHoldIds().map((holdId) => ({ text: JSON.stringify({ holdId }) })),
        ),
    },
    {
      route: "POST /v1/billing/subscribe",
      token: () => user,
      allowed: [400],
      arbitrary: () =>
        hostileBodies({
          base: {},
          bad: { plan: badEnum(["plus", "pro"]), interval: badEnum(["month", "year"]) },
          required: [],
          isValid: (body) => isObject(body) && Object.keys(body).length === 0,
        }),
    },
    {
      route: "POST /v1/billing/checkout",
      token: () => user,
      allowed: [400],
      arbitrary: () =>
        hostileBodies({ base: { pack: "starter" }, bad: { pack: badEnum(["starter", "pro", "enterprise"]) }, required: ["pack"], isValid: () => false }),
    },
    {
      route: "POST /v1/billing/change-plan",
      token: () => user,
      allowed: [400],
      arbitrary: () =>
        // "free" is refused too: going back to free is a cancel
        hostileBodies({ base: { plan: "pro" }, bad: { plan: badEnum(["plus", "pro"]) }, required: ["plan"], isValid: () => false }),
    },
    ...["POST /v1/billing/portal", "POST /v1/billing/cancel"].map((route) => ({
      route,
      token: () => user,
      allowed: [400],
      arbitrary: () =>
        hostileBodies({
          base: {},
          bad: { confirm: junk, userId: fc.constant("someone-else") },
          required: [],
          isValid: (body: unknown) => isObject(body) && Object.keys(body).length === 0,
        }),
    })),
  ];

  for (const { route, token, allowed, arbitrary } of bodyRoutes) {
    it(`${route}: ${RUNS} hostile bodies`, async () => {
      await writesNothing(() =>
        fc.assert(
          fc.asyncProperty(arbitrary(), async (body) => {
            counts.bodies++;
            expectRefusal(await send(route, { token: token(), body: body.text, ...(body.base64 ? { base64: true } : {}) }), allowed, route);
          }),
          { numRuns: RUNS, seed: SEED },
        ),
      );
    });
  }

  const badLimit = fc.oneof(
    fc.string().filter((text) => !/^\d{1,3}$/.test(text) || Number(text) < 1 || Number(text) > 100),
    fc.integer({ min: 101, max: 999 }).map(String),
    fc.constantFrom("0", "000", "-1", "1e2", "10,20", " 5", "5 ", "0x10", "١٢"),
  );
  const badCursor = fc.oneof(
    fc.constant(""),
    fc.string({ minLength: 65, maxLength: 200 }),
    fc.string({ minLength: 1, maxLength: 64 }).filter((cursor) => !/^s\d{1,15}$/.test(Buffer.from(cursor, "base64url").toString("utf8"))),
  );
  const strangerKey = fc.oneof(fc.constantFrom(...POLLUTION_KEYS, "userId", "user", "sub"), fc.string({ minLength: 1 })).filter((key) => key !== "limit" && key !== "cursor");
  const queries: Record<string, fc.Arbitrary<Record<string, string>>> = {
    "GET /v1/credits": fc.dictionary(fc.string({ minLength: 1 }), fc.string(), { minKeys: 1, maxKeys: 4 }),
    // public (the token sent is ignored), and it takes no query either
    "GET /v1/plans": fc.dictionary(fc.string({ minLength: 1 }), fc.string(), { minKeys: 1, maxKeys: 4 }),
    "GET /v1/credits/history": fc.oneof(
      badLimit.map((limit) => ({ limit })),
      badCursor.map((cursor) => ({ cursor })),
      fc.tuple(strangerKey, fc.string()).map(([key, value]) => ({ [key]: value })),
      fc.tuple(badLimit, badCursor).map(([limit, cursor]) => ({ limit, cursor })),
    ),
  };
  for (const [route, arbitrary] of Object.entries(queries)) {
    it(`${route}: ${RUNS} hostile queries`, async () => {
      await writesNothing(() =>
        fc.assert(
          fc.asyncProperty(arbitrary, junk, async (query, body) => {
            counts.queries++;
            expectRefusal(await send(route, { token: user, query, body: JSON.stringify(body) }), [400], route);
          }),
          { numRuns: RUNS, seed: SEED },
        ),
      );
    });
  }

  it("no prototype was polluted by anything above", () => {
    const probe: Record<string, unknown> = {};
    expect(Object.keys(Object.prototype)).toEqual([]);
    expect(probe.polluted).toBeUndefined();
  });
});

/** Well-formed hold ids (the `hold_` + base64url JSON shape) for holds that do not exist. */
function forgedHoldIds(): fc.Arbitrary<string> {
  return fc
    .tuple(
      fc.oneof(fc.constant(userA), fc.stringMatching(/^[a-z0-9]{1,20}$/)),
      fc.stringMatching(/^[a-z0-9]{1,20}$/).filter((id) => id !== "real-hold"),
      fc.stringMatching(/^[A-Za-z0-9_-]{1,32}$/),
      fc.nat(1_000),
      fc.integer({ min: -1_000_000, max: 1_000_000_000 }),
      fc.constantFrom(SONNET, OPUS),
      fc.nat(100_000),
    )
    .map((ref) => `hold_${Buffer.from(JSON.stringify(ref)).toString("base64url")}`);
}

// ---- headers and tokens ------------------------------------------------------------------------

describe("missing, broken and duplicated credentials: 401 on every JWT route, writing nothing", () => {
  it(`${JWT_ROUTES.length} routes × ${RUNS} broken Authorization headers`, async () => {
    const valid = await userToken(userA);
    const tamper = (token: string) => {
      const signature = token.split(".")[2] as string;
      const index = 10;
      const swapped = signature[index] === "A" ? "B" : "A";
      return `${token.split(".").slice(0, 2).join(".")}.${signature.slice(0, index)}${swapped}${signature.slice(index + 1)}`;
    };
    const header = fc.oneof(
      fc.constant(undefined),
      fc.constantFrom("", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer a.b.c", "Bearer ...", `Bearer ${"a".repeat(9_000)}.b.c`, "null", "undefined"),
      fc.string().map((text) => `Bearer ${text}`),
      fc.string(),
      fc.constant(`Bearer ${valid}, Bearer ${valid}`), // the header sent twice (API Gateway joins them)
      fc.constant(`Bearer ${valid},Bearer ${await serviceToken()}`),
      fc.constant(`Bearer ${tamper(valid)}`),
      fc.constant(`Token ${valid}`),
      fc.constant(`Bearer  ${valid}`),
      fc.constant(`Bearer ${valid}.extra`),
    );
    await writesNothing(() =>
      fc.assert(
        fc.asyncProperty(fc.constantFrom(...JWT_ROUTES), header, fc.boolean(), async (route, authorization, upper) => {
          counts.headers++;
          const body = validBody(route);
          const headers: Record<string, string> = {};
          if (authorization !== undefined) headers[upper ? "Authorization" : "authorization"] = authorization;
          const answer = await send(route, { ...(body === undefined ? {} : { body: JSON.stringify(body) }), headers });
          expectRefusal(answer, [401], `${route} with Authorization ${JSON.stringify(authorization)?.slice(0, 80)}`);
        }),
        { numRuns: RUNS * 3, seed: SEED },
      ),
    );
  });
});

describe("JWT attacks: 401 on every JWT route, writing nothing", () => {
  let jwks: JwksServer;
  let jwksHandlers: Map<string, ReturnType<typeof httpHandler<AppDeps>>>;
  beforeAll(async () => {
    jwks = await startJwksServer();
    // The same functions configured for an identity provider's RS256/ES256 keys (AUTH_JWKS_URL).
    const auth = createAuthenticator({ jwksUrl: jwks.url, issuer: TEST_ISSUER, audience: TEST_AUDIENCE });
    const deps = { ...fx.deps, auth };
    const [gate, credits] = await Promise.all([import("../../functions/chat-gate.js"), import("../../functions/credits.js")]);
    const routes = { chatGate: gate.route, credits: credits.route, subscribe: fx.fns.subscribe.route, portal: fx.fns.portal.route };
    jwksHandlers = new Map(
      JWT_ROUTES.map((route) => [route, httpHandler(routes[routeTable().get(route) as keyof typeof routes] as never, deps as never)]),
    );
  });
  afterAll(() => jwks?.close());


  /** Every token an attacker can make, for a user (`sub`) or a service (`scope: gate`). */
  async function attacks(claims: Record<string, unknown>) {
    const { publicKey: attackerPublic, privateKey: attackerPrivate } = await generateKeyPair("RS256");
    const valid = await signToken(claims);
    const [header, payload, signature] = valid.split(".") as [string, string, string];
    const decoded = JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
    const standard = { iss: TEST_ISSUER, aud: TEST_AUDIENCE, iat: now(), exp: now() + 300, ...claims };
    return {
      "alg none": unsignedToken(claims),
      "alg None": `${b64({ alg: "None", typ: "JWT" })}.${b64(standard)}.`,
      "alg none with the valid signature kept": `${b64({ alg: "none" })}.${payload}.${signature}`,
      "HS256 signed with someone else's secret": await signToken(claims, { secret: "attacker-secret-0123456789abcdef0123456" }),
      "HS384 with the right secret": await signToken(claims, { alg: "HS384" }),
      "HS512 with the right secret": await signToken(claims, { alg: "HS512" }),
      "RS256 signed by the attacker's key": await new SignJWT(standard).setProtectedHeader({ alg: "RS256" }).sign(attackerPrivate),
      "HS256 keyed with the attacker's RSA public key (HS/RS confusion)": await hmac({ alg: "HS256" }, standard, new TextEncoder().encode(await exportSPKI(attackerPublic))),
      expired: await signToken(claims, { expiresIn: -120 }),
      "not valid yet (nbf in 2 minutes)": await signToken(claims, { notBefore: 120 }),
      "no exp": await signToken(claims, { expiresIn: null }),
      "wrong audience": await signToken(claims, { audience: "another-api" }),
      "no audience": await signToken(claims, { audience: null }),
      "wrong issuer": await signToken(claims, { issuer: "https://evil.example.com/" }),
      "no issuer": await signToken(claims, { issuer: null }),
      "payload tampered (another subject, same signature)": `${header}.${b64({ ...decoded, sub: "victim-user" })}.${signature}`,
      "payload tampered (scope changed, same signature)": `${header}.${b64({ ...decoded, scope: decoded.scope === "gate" ? "gate admin" : "gate" })}.${signature}`,
      "payload tampered (exp extended, same signature)": `${header}.${b64({ ...decoded, exp: now() + 86_400 })}.${signature}`,
      "signature stripped": `${header}.${payload}.`,
      "signature of another token": `${header}.${payload}.${(await signToken({ sub: "other" })).split(".")[2]}`,
      "unknown critical header": await hmac({ alg: "HS256", crit: ["x-evil"], "x-evil": true }, standard, new TextEncoder().encode(TEST_SECRET)),
      "jku/x5u pointing at the attacker, wrong key": await hmac(
        { alg: "HS256", jku: "http://127.0.0.1:1/keys", x5u: "http://127.0.0.1:1/cert", kid: "../../dev/null" },
        standard,
        new TextEncoder().encode("attacker-secret-0123456789abcdef0123456"),
      ),
      // a user is named by sub (a service's sub is only a label, so this one is a user attack)
      ...(claims.scope === undefined ? { "sub that is not a user id (right secret)": await signToken({ ...claims, sub: "../../etc/passwd" }) } : {}),
      "scope as an array (right secret)": await signToken({ ...claims, scope: ["gate"] }),
      "header is not JSON": `${Buffer.from("{alg:HS256").toString("base64url")}.${payload}.${signature}`,
    };
  }

  it("each attack, as a user and as a service, on every JWT route (shared-secret and JWKS deployments)", async () => {
    const tokens = { ...(await attacks({ sub: userA, email: "a@example.com" })), ...prefix("service ", await attacks({ sub: "chat-backend", scope: "gate" })) };
    const published = (await (await fetch(jwks.url)).json()) as { keys: JWK[] };
    const realPem = await exportSPKI((await importJWK(published.keys.find((key) => key.kty === "RSA") as JWK, "RS256")) as never);
    const confused = (secret: string) =>
      new SignJWT({ sub: userA, iss: TEST_ISSUER, aud: TEST_AUDIENCE, exp: now() + 300 }).setProtectedHeader({ alg: "HS256" }).sign(new TextEncoder().encode(secret));
    const jwksTokens = {
      "HS256 keyed with the real RSA public key PEM (HS/RS confusion)": await confused(realPem),
      "HS256 keyed with the published JWKS document (HS/RS confusion)": await confused(JSON.stringify(published)),
      "a valid HS256 token where only JWKS keys are trusted": await userToken(userA),
      "alg none": unsignedToken({ sub: userA }),
      "RS256 signed by the attacker, kid of a real key": await (async () => {
        const { privateKey } = await generateKeyPair("RS256");
        return new SignJWT({ sub: userA, iss: TEST_ISSUER, aud: TEST_AUDIENCE, exp: now() + 300 }).setProtectedHeader({ alg: "RS256", kid: "rsa-1" }).sign(privateKey);
      })(),
      "expired RS256 from the real key": await jwks.sign({ sub: userA }, { expiresIn: -120 }),
    };
    await writesNothing(async () => {
      for (const route of JWT_ROUTES) {
        const body = validBody(route);
        const payload = body === undefined ? {} : { body: JSON.stringify(body) };
        for (const [name, token] of Object.entries(tokens)) {
          counts.jwt++;
          expectRefusal(await send(route, { ...payload, token }), [401], `${route}: ${name}`);
        }
        const handler = jwksHandlers.get(route) as ReturnType<typeof httpHandler<AppDeps>>;
        for (const [name, token] of Object.entries(jwksTokens)) {
          counts.jwt++;
          expectRefusal(await invoke(handler, { routeKey: route, token, ...payload }), [401], `${route} (JWKS): ${name}`);
        }
      }
    });
  });

  it("control: the same valid requests are accepted with a genuine token (the attacks were refused for the token alone)", async () => {
    const jwksUser = await jwks.sign({ sub: userA });
    const handler = jwksHandlers.get("GET /v1/credits") as ReturnType<typeof httpHandler<AppDeps>>;
    expect((await invoke(handler, { routeKey: "GET /v1/credits", token: jwksUser })).status).toBe(200);
    expect((await send("GET /v1/credits", { token: user })).status).toBe(200);
    // the hand-made HS256 used for the header attacks is a genuine signature: only the header made them fail
    const handMade = await hmac({ alg: "HS256", typ: "JWT" }, { sub: userA, iss: TEST_ISSUER, aud: TEST_AUDIENCE, exp: now() + 300 }, new TextEncoder().encode(TEST_SECRET));
    expect((await send("GET /v1/credits", { token: handMade })).status).toBe(200);
    const authorized = await send("POST /v1/gate/authorize", { token: service, body: JSON.stringify(validBody("POST /v1/gate/authorize")) });
    expect(authorized.status).toBe(200);
  });
});

const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
const now = () => Math.floor(Date.now() / 1000);

/** HS256 by hand, so any header can be signed (jose refuses to sign an unknown `crit`). */
async function hmac(protectedHeader: Record<string, unknown>, body: Record<string, unknown>, secret: Uint8Array): Promise<string> {
  const input = `${b64(protectedHeader)}.${b64(body)}`;
  return `${input}.${createHmac("sha256", secret).update(input).digest("base64url")}`;
}

function prefix<T>(label: string, record: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(record).map(([key, value]) => [`${label}${key}`, value]));
}

// ---- Stripe signatures ------------------------------------------------------------------------

describe("Stripe signatures: 400 for anything Stripe did not sign just now, writing nothing", () => {
  /** A paid pack for user A: if any forged delivery were applied, it would grant 1,000,000 credits. */
  const event = () =>
    stripeEvent("checkout.session.completed.payment", {
      object: {
        id: uniqueStripeId("cs_test_pay"),
        customer: null,
        client_reference_id: userA,
        payment_intent: uniqueStripeId("pi"),
        metadata: { userId: userA, pack: "enterprise" },
      },
    });
  const deliver = (payload: string, signature: string | undefined, options: { base64?: boolean; headers?: Record<string, string> } = {}) =>
    send("POST /v1/stripe/webhook", {
      body: options.base64 ? Buffer.from(payload).toString("base64") : payload,
      ...(options.base64 ? { base64: true } : {}),
      headers: { ...(signature === undefined ? {} : { "stripe-signature": signature }), ...options.headers },
    });

  it("missing, wrong secret, outside the tolerance, another payload, malformed headers", async () => {
    const payload = JSON.stringify(event());
    const old = Math.floor(Date.now() / 1000) - 301;
    const cases: Record<string, [string | undefined, string?]> = {
      "no signature": [undefined],
      "empty signature": [""],
      "wrong secret": [signatureFor(payload, { secret: "whsec_attacker_0000000000000000000000" })],
      "replayed 301 s later (tolerance 300 s)": [signatureFor(payload, { timestamp: old })],
      "replayed a day later": [signatureFor(payload, { timestamp: old - 86_400 })],
      "signature of another payload": [signatureFor(JSON.stringify(event()))],
      "timestamp only": [`t=${Math.floor(Date.now() / 1000)}`],
      "v0 scheme only": [signatureFor(payload).replace("v1=", "v0=")],
      "two v1, neither valid": [`t=${Math.floor(Date.now() / 1000)},v1=${"0".repeat(64)},v1=${"f".repeat(64)}`],
      "secret itself as the signature": [`t=${Math.floor(Date.now() / 1000)},v1=${WEBHOOK_SECRET}`],
      "a JWT instead": [await serviceToken()],
    };
    await writesNothing(async () => {
      for (const [name, [signature]] of Object.entries(cases)) {
        counts.signatures++;
        expectRefusal(await deliver(payload, signature), [400], name);
      }
      // a duplicated header reaches the function joined with a comma (API Gateway v2)
      const forgedA = signatureFor(payload, { secret: "whsec_attacker_0000000000000000000000" });
      const forgedB = signatureFor(payload, { secret: "whsec_attacker_1111111111111111111111" });
      counts.signatures++;
      expectRefusal(await deliver(payload, `${forgedA},${forgedB}`), [400], "duplicated header, both forged");
      // 1 MB: a big body does not get past the signature (nor cost us more than a 400)
      for (const big of [`${payload}${" ".repeat(1_048_576)}`, JSON.stringify({ ...JSON.parse(payload), pad: "x".repeat(1_048_576) })]) {
        counts.signatures++;
        expectRefusal(await deliver(big, forgedA), [400, 413], "1 MB body, forged signature");
        counts.signatures++;
        expectRefusal(await deliver(big, signatureFor(payload)), [400, 413], "1 MB body, signature of the small one");
      }
      // a service token does not replace the signature
      counts.signatures++;
      expectRefusal(await deliver(payload, undefined, { headers: { authorization: `Bearer ${await serviceToken()}` } }), [400], "JWT, no signature");
    });
  });

  it(`${RUNS * 2} deliveries whose body differs from the signed one by one byte (plain and base64)`, async () => {
    await writesNothing(() =>
      fc.assert(
        fc.asyncProperty(fc.nat(), fc.integer({ min: 1, max: 255 }), fc.boolean(), async (position, delta, base64) => {
          counts.signatures++;
          const payload = JSON.stringify(event(), null, 2);
          const bytes = Buffer.from(payload);
          const index = position % bytes.length;
          bytes[index] = ((bytes[index] as number) + delta) % 256;
          const signature = signatureFor(payload);
          const altered = bytes.toString("latin1");
          const answer = await send("POST /v1/stripe/webhook", {
            body: base64 ? bytes.toString("base64") : altered,
            ...(base64 ? { base64: true } : {}),
            headers: { "stripe-signature": signature },
          });
          expectRefusal(answer, [400], `byte ${index} + ${delta}${base64 ? " (base64)" : ""}`);
        }),
        { numRuns: RUNS * 2, seed: SEED },
      ),
    );
  });

  it(`${RUNS} random Stripe-Signature headers and bodies`, async () => {
    await writesNothing(() =>
      fc.assert(
        fc.asyncProperty(fc.oneof(fc.string(), fc.stringMatching(/^t=\d{1,12},v1=[0-9a-f]{64}$/)), fc.oneof(junk.map((value) => JSON.stringify(value)), fc.string()), async (signature, payload) => {
          counts.signatures++;
          expectRefusal(await deliver(payload, signature), [400], `signature ${signature.slice(0, 40)}`);
        }),
        { numRuns: RUNS, seed: SEED },
      ),
    );
  });

  it("correctly signed bodies that are not Stripe events are refused too", async () => {
    await writesNothing(() =>
      fc.assert(
        fc.asyncProperty(fc.oneof(junk.filter((value) => !(isObject(value) && typeof value.id === "string" && value.id.startsWith("evt_"))).map((v) => JSON.stringify(v)), fc.string().filter((t) => !parses(t))), async (payload) => {
          counts.signatures++;
          expectRefusal(await deliver(payload, signatureFor(payload)), [400], `signed ${payload.slice(0, 40)}`);
        }),
        { numRuns: RUNS, seed: SEED },
      ),
    );
  });

  it("control: the same event, signed now with the right secret, is applied once", async () => {
    const payload = JSON.stringify(event());
    const answer = await deliver(payload, signatureFor(payload));
    expect(answer.status).toBe(200);
    expect(answer.json.outcome).toBe("pack_granted");
  });
});

afterAll(() => {
  const tried = counts.bodies + counts.queries + counts.headers + counts.jwt + counts.signatures;
  recordSection({
    section: "hostile-input",
    order: 4,
    wallMs: Math.round(performance.now() - started),
    counts: { ...counts, tried, routes: routeTable().size },
    rows: [
      {
        check: "Hostile input (real functions, fast-check)",
        volume:
          `${tried.toLocaleString("en-US")} bad inputs on all ${routeTable().size} routes: ${counts.bodies} bodies (random JSON, huge numbers, ` +
          `unicode, prototype keys, duplicated keys, 1 MB), ${counts.queries} queries, ${counts.headers} broken or duplicated ` +
          `Authorization headers, ${counts.jwt} JWT attacks (alg none, HS/RS confusion, expired, nbf, aud/iss, tampered), ` +
          `${counts.signatures} forged Stripe signatures (missing, wrong secret, replayed, one byte altered)`,
        drift: 0,
        creditsLost: 0,
        doubleGrants: 0,
        other: counts.serverErrors + counts.writes + counts.stripeCalls,
        otherLabel: "5xx answers, writes, Stripe calls",
      },
    ],
  });
});
