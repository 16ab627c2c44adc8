import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  bindingScheduleBudget,
  type ChargeMoney,
  type ClawFact,
  type ClawPosition,
  clawAdjustment,
  clawFactKey,
  type MoneyFact,
  proportionalCredits,
  returnedCents,
  scheduleBudgetCredits,
  targetTake,
  takenOf,
  withMoneyFact,
} from "../../lib/billing/clawback.js";

const CHARGE = { chargeId: "ch_1", paymentIntentId: "pi_1" };
const fresh = (basisCents: number): ChargeMoney => ({ basisCents, refundedCents: 0, disputes: {} });
const apply = (money: ChargeMoney, ...facts: MoneyFact[]) => facts.reduce(withMoneyFact, money);
const refund = (refundedCents: number, at: number): MoneyFact => ({ kind: "refund", refundedCents, chargeAmount: 1_000, at });
const failed = (refundId: string, refundedCents: number, refundCreatedAt: number, reversedAt: number): MoneyFact => ({
  kind: "refund_reversed",
  refundId,
  refundedCents,
  refundCreatedAt,
  reversedAt,
});
const dispute = (disputeId: string, disputedCents: number): MoneyFact => ({ kind: "dispute", disputeId, disputedCents });
const won = (disputeId: string, disputedCents: number, reversedAt: number): MoneyFact => ({ kind: "dispute_reversed", disputeId, disputedCents, reversedAt });
const position = (bought: number, grantedGross = bought, clawedNet = 0, withheld = 0): ClawPosition => ({ bought, grantedGross, withheld, clawedNet });

describe("money returned by a charge", () => {
  it("counts the latest refund total and the disputes, at most what was paid", () => {
    const money = apply(fresh(1_000), refund(300, 10), refund(500, 20), dispute("dp_1", 400));
    expect(returnedCents(money)).toBe(900);
    // a dispute of money already refunded cannot return more than was paid
    expect(returnedCents(apply(money, dispute("dp_2", 400)))).toBe(1_000);
  });

  it("an older refund total arriving late does not replace a newer one", () => {
    expect(returnedCents(apply(fresh(1_000), refund(500, 20), refund(300, 10)))).toBe(500);
    // in the same second the larger total is the later refund
    expect(returnedCents(apply(fresh(1_000), refund(500, 20), refund(300, 20)))).toBe(500);
  });

  it("a failed refund no longer returns money, whichever arrives first", () => {
    const both = [refund(300, 10), failed("re_1", 300, 10, 50)];
    expect(returnedCents(apply(fresh(1_000), ...both))).toBe(0);
    expect(returnedCents(apply(fresh(1_000), ...both.toReversed()))).toBe(0);
  });

  it("a total reported after a refund failed already leaves it out (Stripe lowers amount_refunded)", () => {
    // re_1 (300) failed at 50; re_2 (200) created at 60: Stripe reports 200, not 500
    const money = apply(fresh(1_000), refund(300, 10), failed("re_1", 300, 10, 50), refund(200, 60));
    expect(returnedCents(money)).toBe(200);
    // the failure arriving after that total changes nothing
    expect(returnedCents(apply(fresh(1_000), refund(200, 60), refund(300, 10), failed("re_1", 300, 10, 50)))).toBe(200);
  });

  it("a failure of a refund the latest total does not count yet changes nothing", () => {
    // re_2 created at 60 and failed at 70; only the total of 10 (re_1) has arrived
    expect(returnedCents(apply(fresh(1_000), refund(300, 10), failed("re_2", 200, 60, 70)))).toBe(300);
  });

  it("a won dispute no longer returns money; a lost one does", () => {
    const money = apply(fresh(1_000), dispute("dp_1", 600), dispute("dp_2", 100), won("dp_1", 600, 90));
    expect(returnedCents(money)).toBe(100);
    // won before it was created: the creation changes nothing
    expect(returnedCents(apply(fresh(1_000), won("dp_1", 600, 90), dispute("dp_1", 600)))).toBe(0);
  });

  it("a fact recorded again leaves the state as it is (the same object)", () => {
    const money = apply(fresh(1_000), refund(300, 10), dispute("dp_1", 100), failed("re_1", 300, 10, 50), won("dp_1", 100, 60));
    for (const fact of [refund(300, 10), dispute("dp_1", 100), failed("re_1", 300, 10, 50), won("dp_1", 100, 60), refund(100, 5)]) {
      expect(withMoneyFact(money, fact)).toBe(money);
    }
  });

  it("a record without a basis takes the refunded charge's amount as one", () => {
    expect(apply(fresh(0), refund(250, 10)).basisCents).toBe(1_000);
  });
});

describe("credits a charge's clawbacks hold back", () => {
  it("in proportion to the money returned, rounded", () => {
    expect(proportionalCredits(50_000, apply(fresh(999), refund(300, 10)))).toBe(Math.round((50_000 * 300) / 999));
    expect(proportionalCredits(50_000, fresh(0))).toBe(0);
  });

  it("at most what the payment has granted so far", () => {
    // an annual invoice refunded in full after six of its twelve months
    const money = apply(fresh(120_000), refund(120_000, 10));
    expect(targetTake(money, position(1_200_000, 600_000))).toBe(600_000);
    expect(clawAdjustment(money, position(1_200_000, 600_000))).toBe(600_000);
  });

  it("a reversal gives back what was taken beyond the new target, never more", () => {
    const taken = apply(fresh(1_000), refund(1_000, 10), dispute("dp_1", 1_000));
    expect(clawAdjustment(taken, position(50_000))).toBe(50_000);
    // the dispute won: the refund still returns everything, nothing to give back
    expect(clawAdjustment(apply(taken, won("dp_1", 1_000, 20)), position(50_000, 50_000, 50_000))).toBe(0);
    // the refund failed too: all of it back, and no more than was taken
    const reversed = apply(taken, won("dp_1", 1_000, 20), failed("re_1", 1_000, 10, 30));
    expect(clawAdjustment(reversed, position(50_000, 50_000, 50_000))).toBe(-50_000);
  });

  it("months the schedule budget held back count as taken, so a reversal gives them back too", () => {
    // full refund at month 5 took 6 months; months 6 and 7 were held back; then the refund failed
    const money = apply(fresh(120_000), refund(120_000, 10), failed("re_1", 120_000, 10, 90));
    const atMonth7 = position(1_200_000, 800_000, 600_000, 200_000);
    expect(takenOf(atMonth7)).toBe(800_000);
    expect(clawAdjustment(money, atMonth7)).toBe(-800_000);
  });
});

describe("schedule budget of a refunded annual year (pro: 100,000 a month, 120,000 cents)", () => {
  const year = (refundedCents: number, monthsGranted: number, clawedNet: number, withheld = 0) => {
    const money = apply(fresh(120_000), refund(refundedCents, 10));
    return scheduleBudgetCredits(money, position(1_200_000, monthsGranted * 100_000, clawedNet, withheld));
  };

  it("refunded in full at month 5 (six months granted and taken): the rest grants nothing", () => {
    expect(year(120_000, 6, 600_000)).toBe(0);
  });

  it("refunded in half at month 5: the six months to come are the year's other half", () => {
    expect(year(60_000, 6, 600_000)).toBe(600_000);
  });

  it("refunded in half at month 2 (three months taken): six of the nine months to come", () => {
    expect(year(60_000, 3, 300_000)).toBe(600_000);
  });

  it("a quarter refunded at month 5 takes three months now and leaves the rest of the year whole", () => {
    expect(year(30_000, 6, 300_000)).toBe(600_000);
  });

  it("no refund: the months left, in full", () => {
    expect(scheduleBudgetCredits(fresh(120_000), position(1_200_000, 400_000))).toBe(800_000);
  });

  it("a budget is kept only when it binds: when the months left cannot all grant in full", () => {
    const half = apply(fresh(120_000), refund(60_000, 10));
    // half at month 5: the six months to come are exactly the half still owed
    expect(bindingScheduleBudget(half, position(1_200_000, 600_000, 600_000))).toBeUndefined();
    // half at month 2: six of the nine months to come
    expect(bindingScheduleBudget(half, position(1_200_000, 300_000, 300_000))).toBe(600_000);
    expect(bindingScheduleBudget(fresh(120_000), position(1_200_000, 400_000))).toBeUndefined();
  });
});

describe("keys", () => {
  it("a refund total by charge, amount and event time; reversals by the refund's or the dispute's id", () => {
    expect(clawFactKey({ ...CHARGE, kind: "refund", chargeAmount: 100, refundedCents: 40, at: 1_767_268_800 })).toBe("refund#ch_1#40#1767268800");
    expect(clawFactKey({ ...CHARGE, kind: "refund_reversed", refundId: "re_7", refundedCents: 40, refundCreatedAt: 1, reversedAt: 2 })).toBe("reinstate#re_7");
    expect(clawFactKey({ ...CHARGE, kind: "dispute_reversed", disputeId: "dp_9", disputedCents: 40, reversedAt: 2 })).toBe("reinstate#dp_9");
  });
});

// ---- properties --------------------------------------------------------------------------------

/**
 * A charge's story at Stripe: refunds created one after another (never more than is still
 * refundable), some failing later, and disputes, some won. Times are whole seconds, distinct
 * between a refund's creation and any failure (the rule reads time to the second).
 */
interface Story {
  basisCents: number;
  bought: number;
  refunds: { id: string; cents: number; createdAt: number; failedAt: number | undefined }[];
  disputes: { id: string; cents: number; outcome: "open" | "won" | "lost" | "warning_closed"; closedAt: number }[];
}

const storyArbitrary = fc
  .record({
    basisCents: fc.integer({ min: 1, max: 200_000 }),
    bought: fc.integer({ min: 1, max: 2_000_000 }),
    refunds: fc.array(fc.record({ share: fc.double({ min: 0.01, max: 1, noNaN: true }), failsAfter: fc.option(fc.integer({ min: 1, max: 99 })) }), {
      maxLength: 5,
    }),
    disputes: fc.array(
      fc.record({ share: fc.double({ min: 0.01, max: 1, noNaN: true }), outcome: fc.constantFrom("open", "won", "lost", "warning_closed") }),
      { maxLength: 2 },
    ),
  })
  .map(({ basisCents, bought, refunds, disputes }): Story => {
    const story: Story = { basisCents, bought, refunds: [], disputes: [] };
    refunds.forEach((attempt, index) => {
      const createdAt = 1_000 + index * 100;
      const refundable = basisCents - refundedAt(story, createdAt);
      const cents = Math.min(refundable, Math.max(1, Math.round(attempt.share * basisCents)));
      if (cents <= 0) return;
      story.refunds.push({ id: `re_${index}`, cents, createdAt, failedAt: attempt.failsAfter === null ? undefined : createdAt + attempt.failsAfter });
    });
    disputes.forEach((dispute, index) => {
      story.disputes.push({ id: `dp_${index}`, cents: Math.max(1, Math.round(dispute.share * basisCents)), outcome: dispute.outcome, closedAt: 5_050 + index });
    });
    return story;
  });

/** Stripe's amount_refunded at `at`: refunds created by then that had not failed by then. */
function refundedAt(story: Story, at: number): number {
  return story.refunds.filter((r) => r.createdAt <= at && (r.failedAt === undefined || r.failedAt > at)).reduce((sum, r) => sum + r.cents, 0);
}

/** Every event Stripe sends about the story, as the facts billing records. */
function factsOf(story: Story): ClawFact[] {
  const facts: ClawFact[] = [];
  for (const r of story.refunds) {
    facts.push({ ...CHARGE, kind: "refund", refundedCents: refundedAt(story, r.createdAt), chargeAmount: story.basisCents, at: r.createdAt });
    if (r.failedAt !== undefined) {
      facts.push({ ...CHARGE, kind: "refund_reversed", refundId: r.id, refundedCents: r.cents, refundCreatedAt: r.createdAt, reversedAt: r.failedAt });
    }
  }
  for (const d of story.disputes) {
    facts.push({ ...CHARGE, kind: "dispute", disputeId: d.id, disputedCents: d.cents });
    if (d.outcome === "lost") facts.push({ ...CHARGE, kind: "dispute", disputeId: d.id, disputedCents: d.cents });
    if (d.outcome === "won" || d.outcome === "warning_closed") {
      facts.push({ ...CHARGE, kind: "dispute_reversed", disputeId: d.id, disputedCents: d.cents, reversedAt: d.closedAt });
    }
  }
  return facts;
}

/** The money that really came back, from the story alone. */
function truthReturned(story: Story): number {
  const refunds = story.refunds.filter((r) => r.failedAt === undefined).reduce((sum, r) => sum + r.cents, 0);
  const disputes = story.disputes.filter((d) => d.outcome !== "won" && d.outcome !== "warning_closed").reduce((sum, d) => sum + d.cents, 0);
  return Math.min(story.basisCents, refunds + disputes);
}

const truthTake = (story: Story) => Math.min(story.bought, Math.round((story.bought * truthReturned(story)) / story.basisCents));

/** Delivery order: every fact at least once, some twice, shuffled by the given priorities. */
const deliveryArbitrary = (count: number) =>
  fc.record({
    priorities: fc.array(fc.nat(), { minLength: count * 2, maxLength: count * 2 }),
    duplicated: fc.array(fc.boolean(), { minLength: count, maxLength: count }),
  });

function deliveries<T>(items: T[], order: { priorities: number[]; duplicated: boolean[] }): T[] {
  const copies = items.flatMap((item, index) => (order.duplicated[index] ? [{ item, index }, { item, index: items.length + index }] : [{ item, index }]));
  return copies.sort((a, b) => (order.priorities[a.index] ?? 0) - (order.priorities[b.index] ?? 0) || a.index - b.index).map(({ item }) => item);
}

/** The ledger as refunds.ts moves it: one entry per fact key at most, each moving the take to the target. */
class ChargeLedger {
  money: ChargeMoney;
  entries = new Map<string, number>();
  clawedNet = 0;
  constructor(basisCents: number) {
    this.money = fresh(basisCents);
  }
  deliver(fact: ClawFact, position: Omit<ClawPosition, "clawedNet">): number {
    this.money = withMoneyFact(this.money, fact);
    const key = clawFactKey(fact);
    if (this.entries.has(key)) return 0; // a redelivery moves nothing more
    const move = clawAdjustment(this.money, { ...position, clawedNet: this.clawedNet });
    if (move !== 0) {
      this.entries.set(key, -move);
      this.clawedNet += move;
    }
    return move;
  }
}

describe("properties of the rule (any story, any arrival order, redeliveries)", () => {
  it("the take never exceeds what was bought or granted, is never negative, gives back no more than was taken, and ends at the story's share", () => {
    fc.assert(
      fc.property(
        storyArbitrary.chain((story) => fc.tuple(fc.constant(story), deliveryArbitrary(factsOf(story).length), fc.double({ min: 0, max: 1, noNaN: true }))),
        ([story, order, grantedShare]) => {
          const grantedGross = Math.round(story.bought * grantedShare);
          const ledger = new ChargeLedger(story.basisCents);
          for (const fact of deliveries(factsOf(story), order)) {
            const before = ledger.clawedNet;
            const move = ledger.deliver(fact, { bought: story.bought, grantedGross, withheld: 0 });
            expect(ledger.clawedNet).toBeGreaterThanOrEqual(0);
            expect(ledger.clawedNet).toBeLessThanOrEqual(Math.min(story.bought, grantedGross));
            if (move < 0) expect(-move).toBeLessThanOrEqual(before);
          }
          // the money state is the story's whatever the order, and the take is its share
          expect(returnedCents(ledger.money)).toBe(truthReturned(story));
          expect(ledger.clawedNet).toBe(Math.min(truthTake(story), grantedGross));
        },
      ),
      { numRuns: 500 },
    );
  });

  it("reversing every refund and dispute returns everything taken", () => {
    const allReversed = storyArbitrary.map((story) => ({
      ...story,
      refunds: story.refunds.map((r, index) => ({ ...r, failedAt: r.failedAt ?? r.createdAt + 1 + index })),
      disputes: story.disputes.map((d) => ({ ...d, outcome: "won" as const })),
    }));
    fc.assert(
      fc.property(allReversed.chain((story) => fc.tuple(fc.constant(story), deliveryArbitrary(factsOf(story).length))), ([story, order]) => {
        const ledger = new ChargeLedger(story.basisCents);
        let taken = 0;
        let given = 0;
        for (const fact of deliveries(factsOf(story), order)) {
          const move = ledger.deliver(fact, { bought: story.bought, grantedGross: story.bought, withheld: 0 });
          if (move > 0) taken += move;
          else given -= move;
        }
        expect(ledger.clawedNet).toBe(0);
        expect(given).toBe(taken);
      }),
      { numRuns: 300 },
    );
  });

  it("an annual year nets what was bought less the returned share, however the months and the facts interleave", () => {
    const allowance = 100_000;
    const yearStory = storyArbitrary.map((story) => ({ ...story, bought: 12 * allowance }));
    fc.assert(
      fc.property(
        yearStory.chain((story) => {
          const facts = factsOf(story);
          // 11 scheduled months interleaved with the facts
          return fc.tuple(fc.constant(story), deliveryArbitrary(facts.length), fc.array(fc.nat({ max: facts.length * 2 }), { minLength: 11, maxLength: 11 }));
        }),
        ([story, order, monthSlots]) => {
          const ledger = new ChargeLedger(story.basisCents);
          const stream: (ClawFact | "month")[] = deliveries(factsOf(story), order);
          for (const slot of monthSlots.toSorted((a, b) => b - a)) stream.splice(Math.min(slot, stream.length), 0, "month");
          let granted = allowance; // month 0, with the invoice
          let withheld = 0;
          let budget: number | undefined;
          for (const step of stream) {
            if (step === "month") {
              // grantAllowanceIfDue: min(allowance, budget), the budget spent in the same commit
              const amount = budget === undefined ? allowance : Math.min(allowance, Math.max(0, budget));
              granted += amount;
              withheld += allowance - amount;
              if (budget !== undefined) budget -= amount;
              continue;
            }
            const position = { bought: story.bought, grantedGross: granted + withheld, withheld };
            ledger.deliver(step, position);
            budget = bindingScheduleBudget(ledger.money, { ...position, clawedNet: ledger.clawedNet });
            expect(ledger.clawedNet + withheld).toBeGreaterThanOrEqual(0);
            expect(ledger.clawedNet + withheld).toBeLessThanOrEqual(granted + withheld);
          }
          // twelve months granted (or held back) and every fact known: the year's net
          expect(granted + withheld).toBe(story.bought);
          expect(granted - ledger.clawedNet).toBe(story.bought - truthTake(story));
        },
      ),
      { numRuns: 500 },
    );
  });
});
