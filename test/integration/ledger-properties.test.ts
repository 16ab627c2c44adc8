import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AppError } from "../../lib/errors.js";
import {
  auditAccount,
  authorizeChat,
  clawBack,
  ensureAccount,
  getBalance,
  grantCredits,
  type HoldOutcome,
  releaseHold,
  settleChat,
} from "../../lib/ledger/index.js";
import { costOfCall } from "../../lib/pricing.js";
import { onPaidPlan, uniqueUser, useLedgerFixture } from "../helpers/ledger.js";

const MODELS = ["anthropic/claude-sonnet-4.5", "anthropic/claude-opus-4.5"] as const;

type Op =
  | { kind: "grant"; key: number; amount: number; bucket: "allowance" | "purchased" }
  | { kind: "authorize"; request: number; model: number; input: number; maxOutput: number }
  | { kind: "settle"; hold: number; input: number; output: number }
  | { kind: "release"; hold: number }
  | { kind: "clawBack"; key: number; amount: number; bucket: "allowance" | "purchased" }
  | { kind: "repeat"; index: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant("grant" as const),
    key: fc.nat(4),
    amount: fc.integer({ min: 1, max: 20_000 }),
    bucket: fc.constantFrom("allowance" as const, "purchased" as const),
  }),
  fc.record({
    kind: fc.constant("authorize" as const),
    request: fc.nat(6),
    model: fc.nat(1),
    input: fc.nat(20_000),
    maxOutput: fc.nat(60_000),
  }),
  fc.record({ kind: fc.constant("settle" as const), hold: fc.nat(20), input: fc.nat(20_000), output: fc.nat(90_000) }),
  fc.record({ kind: fc.constant("release" as const), hold: fc.nat(20) }),
  fc.record({
    kind: fc.constant("clawBack" as const),
    key: fc.nat(3),
    amount: fc.integer({ min: 1, max: 30_000 }),
    bucket: fc.constantFrom("allowance" as const, "purchased" as const),
  }),
  fc.record({ kind: fc.constant("repeat" as const), index: fc.nat(40) }),
);

/** An independent model of one account: what the ledger must agree with after every step. */
class Model {
  balance = 10_000;
  held = 0;
  grantKeys = new Set<number>();
  clawKeys = new Set<number>();
  open = new Map<number, { holdId: string; reserved: number; model: string }>();
  holds: { holdId: string; reserved: number; model: string }[] = [];
  outcomes = new Map<string, HoldOutcome>();
  get available() {
    return this.balance - this.held;
  }
  /** A keyed write (a grant: +amount, a claw-back: -amount) applies once per key: the first time only. */
  async appliesOnce(write: Promise<{ applied: boolean }>, keys: Set<number>, key: number, delta: number): Promise<void> {
    const result = await write;
    expect(result.applied).toBe(!keys.has(key));
    if (result.applied) {
      keys.add(key);
      this.balance += delta;
    }
  }
}

const fx = useLedgerFixture();

async function apply(op: Op, user: string, model: Model, history: Op[]): Promise<void> {
  const deps = fx.deps;
  switch (op.kind) {
    case "repeat": {
      const earlier = history[op.index % Math.max(1, history.length)];
      if (earlier && earlier.kind !== "repeat") await apply(earlier, user, model, history);
      return;
    }
    case "grant":
      return model.appliesOnce(
        grantCredits(deps, { userId: user, key: `admin#k${op.key}`, amount: op.amount, bucket: op.bucket, reason: "admin" }),
        model.grantKeys,
        op.key,
        op.amount,
      );
    case "clawBack":
      return model.appliesOnce(
        clawBack(deps, { userId: user, key: `refund#re_${op.key}`, amount: op.amount, bucket: op.bucket, reason: "refund" }),
        model.clawKeys,
        op.key,
        -op.amount,
      );
    case "authorize": {
      const modelId = MODELS[op.model] as string;
      const reserved = costOfCall(modelId, op.input, op.maxOutput);
      const existing = model.open.get(op.request);
      const call = authorizeChat(deps, {
        userId: user,
        requestId: `r${op.request}`,
        model: modelId,
        inputTokens: op.input,
        maxOutputTokens: op.maxOutput,
      });
      if (existing) {
        if (existing.model === modelId && existing.reserved === reserved) {
          expect((await call).holdId).toBe(existing.holdId);
        } else {
          await expect(call).rejects.toMatchObject({ code: "CONFLICT" });
        }
        return;
      }
      if (model.available < reserved) {
        await expect(call).rejects.toMatchObject({ code: "INSUFFICIENT_CREDITS" });
        return;
      }
      const result = await call;
      expect(result.reserved).toBe(reserved);
      model.held += reserved;
      const hold = { holdId: result.holdId, reserved, model: modelId };
      model.open.set(op.request, hold);
      model.holds.push(hold);
      // docs/invariants.md, invariant 2: an admitted authorize never leaves available below zero.
      expect(result.available).toBeGreaterThanOrEqual(0);
      return;
    }
    case "settle":
    case "release": {
      const hold = model.holds[op.hold % Math.max(1, model.holds.length)];
      if (!hold) return;
      const first = model.outcomes.get(hold.holdId);
      const outcome =
        op.kind === "settle"
          ? await settleChat(deps, { holdId: hold.holdId, inputTokens: op.input, outputTokens: op.output })
          : await releaseHold(deps, { holdId: hold.holdId });
      if (first) {
        // docs/invariants.md, invariant 5: a second settle/release (of either kind) returns the first outcome.
        expect({ status: outcome.status, charged: outcome.charged, released: outcome.released }).toEqual({
          status: first.status,
          charged: first.charged,
          released: first.released,
        });
        return;
      }
      model.outcomes.set(hold.holdId, outcome);
      for (const [request, open] of model.open) if (open.holdId === hold.holdId) model.open.delete(request);
      model.held -= hold.reserved;
      if (op.kind === "settle") {
        const cost = costOfCall(hold.model, op.input, op.output);
        expect(outcome).toMatchObject({ status: "settled", charged: cost, released: Math.max(0, hold.reserved - cost) });
        model.balance -= cost;
      } else {
        expect(outcome).toMatchObject({ status: "released", charged: 0, released: hold.reserved });
      }
    }
  }
}

describe("ledger invariants under random operation sequences (fast-check, DynamoDB Local)", () => {
  it("sequences with duplicated calls match an independent model after every step", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 5, maxLength: 22 }), async (ops) => {
        const user = uniqueUser("prop");
        await ensureAccount(fx.deps, user);
        await onPaidPlan(fx.deps, user); // a plan with both models the sequences use
        const model = new Model();
        const history: Op[] = [];
        for (const op of ops) {
          await apply(op, user, model, history);
          history.push(op);
          const view = await getBalance(fx.deps, user);
          expect({ balance: view.balance, held: view.held }).toEqual({ balance: model.balance, held: model.held });
          const audit = await auditAccount(fx.deps, user);
          expect(audit.problems).toEqual([]); // docs/invariants.md, invariant 1: balance == sum(entries), exact chain
        }
      }),
      { numRuns: 60 },
    );
    // Each step audits the whole history, so a run costs from 18 s to a minute on a busy machine.
  }, 180_000);

  it("concurrent bursts keep the ledger exact, admit nothing past available, and close holds once", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.array(opArb, { minLength: 2, maxLength: 5 }), { minLength: 2, maxLength: 6 }), async (bursts) => {
        const user = uniqueUser("burst");
        await ensureAccount(fx.deps, user);
        await onPaidPlan(fx.deps, user); // a plan with both models the sequences use
        const holdIds: string[] = [];
        for (const burst of bursts) {
          await Promise.all(
            burst.map(async (op) => {
              try {
                if (op.kind === "authorize") {
                  const result = await authorizeChat(fx.deps, {
                    userId: user,
                    requestId: `r${op.request}`,
                    model: MODELS[op.model] as string,
                    inputTokens: op.input,
                    maxOutputTokens: op.maxOutput,
                  });
                  expect(result.available).toBeGreaterThanOrEqual(0);
                  holdIds.push(result.holdId);
                } else if (op.kind === "settle" || op.kind === "release") {
                  const holdId = holdIds[op.hold % Math.max(1, holdIds.length)];
                  if (!holdId) return;
                  if (op.kind === "settle") await settleChat(fx.deps, { holdId, inputTokens: op.input, outputTokens: op.output });
                  else await releaseHold(fx.deps, { holdId });
                } else if (op.kind === "grant") {
                  await grantCredits(fx.deps, { userId: user, key: `admin#k${op.key}`, amount: op.amount, bucket: op.bucket, reason: "admin" });
                } else if (op.kind === "clawBack") {
                  await clawBack(fx.deps, { userId: user, key: `refund#re_${op.key}`, amount: op.amount, bucket: op.bucket, reason: "refund" });
                }
              } catch (error) {
                // Refusals are fine; anything else (a 5xx-class failure) is not.
                expect(error).toBeInstanceOf(AppError);
                expect((error as AppError).status).toBeLessThan(500);
              }
            }),
          );
          const audit = await auditAccount(fx.deps, user);
          expect(audit.problems).toEqual([]);
        }
        // Close everything, twice, concurrently: every hold ends exactly once.
        const closes = await Promise.all([...holdIds, ...holdIds].map((holdId) => releaseHold(fx.deps, { holdId })));
        const byHold = new Map<string, string>();
        for (const outcome of closes) {
          const seen = byHold.get(outcome.holdId);
          const summary = `${outcome.status}:${outcome.charged}:${outcome.released}`;
          if (seen) expect(summary).toBe(seen);
          byHold.set(outcome.holdId, summary);
        }
        const view = await getBalance(fx.deps, user);
        expect(view.held).toBe(0);
        expect((await auditAccount(fx.deps, user)).problems).toEqual([]);
      }),
      { numRuns: 30 },
    );
  });
});
