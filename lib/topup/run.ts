import { randomUUID } from "node:crypto";
import { UpstreamError } from "../errors.js";
import { logger } from "../logger.js";
import type { BillingDeps } from "../billing/deps.js";
import type { BillingAccount } from "../billing/model.js";
import { type InvoiceView, PaymentActionRequiredError, PaymentFailedError, type StripePort } from "../billing/stripe-port.js";
import type { AutoTopUpState, TopUpInFlight, TopUpJob } from "./model.js";
import { afterCharge, begin, type ChargeResult, decideStart, noPaymentMethod, type StartDecision, limitReached } from "./rules.js";
import { updateTopUp } from "./update.js";

/** What a job did. */
export type TopUpRun =
  | { kind: "refused"; reason: string }
  | { kind: "charged"; seq: number; result: ChargeResult }
  | { kind: "no_payment_method" };

/**
 * One threshold crossing, from the change stream (functions/auto-topup.ts): decide whether it
 * starts a top-up (`decideStart`), mark it in flight with everything its Stripe calls will send,
 * charge, and record the outcome. Stripe failures that may have acted (5xx, timeouts) throw: the
 * queue delivers the job again, which resumes the same top-up under the same idempotency keys,
 * so a retry never charges twice.
 */
export async function runAutoTopUp(deps: BillingDeps, job: TopUpJob): Promise<TopUpRun> {
  const account = (await deps.ledger.store.getAccount(job.userId)) as BillingAccount | undefined;
  if (!account) return { kind: "refused", reason: "noAccount" };
  const now = deps.ledger.now();
  let card: { customer: string; paymentMethod: string } | undefined | "none";

  const started = await updateTopUp<{ decision: StartDecision; inFlight?: TopUpInFlight } | { decision: "noCard" }>(deps, job.userId, async (current) => {
    const state = current?.state;
    const decision = decideStart(state, job, account.available, now);
    if (decision.kind === "resume") return { result: { decision, inFlight: decision.inFlight } };
    if (!state || decision.kind === "refuse") {
      // a month's limit uses the crossing and waits for a later month; nothing else is written
      if (state && decision.kind === "refuse" && decision.reason === "monthlyLimit") return { state: limitReached(state, job.crossing, now), result: { decision } };
      return { result: { decision } };
    }
    card ??= await savedCard(deps, account);
    if (card === "none") return { state: noPaymentMethod(state, job, now), result: { decision: "noCard" } };
    const price = deps.prices.packPrice(state.settings.pack);
    if (!price) return { result: { decision: { kind: "refuse", reason: "disabled" } } }; // the price left the configuration
    const credits = deps.ledger.catalog.packs[state.settings.pack]?.credits ?? 0;
    const next = begin(state, job, { pack: state.settings.pack, credits, price, ...card }, now);
    return { state: next, result: { decision, inFlight: next.inFlight as TopUpInFlight } };
  });

  if (started.decision === "noCard") {
    logger.warn("auto top-up: no saved card", { userId: job.userId });
    return { kind: "no_payment_method" };
  }
  if (started.decision.kind === "refuse") return { kind: "refused", reason: started.decision.reason };
  const inFlight = started.inFlight as TopUpInFlight;
  const result = await charge(deps, job.userId, inFlight);
  if (result === "ended") return { kind: "refused", reason: "endedMeanwhile" };
  await updateTopUp(deps, job.userId, (current) => (current ? { state: afterCharge(current.state, inFlight.seq, result, deps.ledger.now()), result: true } : { result: false }));
  logger.info("auto top-up charged", { userId: job.userId, seq: inFlight.seq, outcome: result.outcome, invoice: result.invoiceId });
  return { kind: "charged", seq: inFlight.seq, result };
}

async function savedCard(deps: BillingDeps, account: BillingAccount): Promise<{ customer: string; paymentMethod: string } | "none"> {
  const stripe = deps.stripe;
  if (!stripe || !account.stripeCustomerId) return "none";
  const paymentMethod = await stripe.savedPaymentMethod(account.stripeCustomerId);
  return paymentMethod ? { customer: account.stripeCustomerId, paymentMethod } : "none";
}

/**
 * The Stripe side of one top-up: its invoice (every call's key is made from the top-up's sequence
 * number; the first invoice recorded is the only one ever paid), then an off-session payment.
 * "ended": the top-up ended elsewhere while its invoice was being made.
 */
async function charge(deps: BillingDeps, userId: string, inFlight: TopUpInFlight): Promise<ChargeResult | "ended"> {
  const stripe = deps.stripe as StripePort;
  const intent = `creditgate:topup:${userId}:${inFlight.seq}`;
  let invoice = inFlight.invoiceId ? await stripe.retrieveInvoice(inFlight.invoiceId) : undefined;
  let unused = inFlight.unusedInvoiceIds ?? [];
  if (!invoice) {
    const made = await makeInvoice(deps, userId, inFlight, intent);
    if (made.kind === "ended") return "ended";
    if (made.kind === "made") {
      invoice = made.invoice;
      if (made.unused) unused = [...unused, made.unused];
    }
  }
  // An earlier try's invoice paid on its page paid the top-up: the recorded one is not paid as well.
  const paidInstead = await disposeOfUnused(stripe, unused, invoice?.id, intent);
  // refused while making it (and no other delivery recorded one): declined, unless an earlier try's invoice was paid
  if (!invoice) return paidInstead !== undefined ? { outcome: "succeeded", invoiceId: paidInstead } : { outcome: "declined" };
  if (paidInstead !== undefined) {
    if (invoice.status === "paid") {
      logger.error("auto top-up: two invoices of one top-up were paid", { userId, seq: inFlight.seq, invoices: [invoice.id, paidInstead] });
      return { outcome: "succeeded", invoiceId: invoice.id };
    }
    await voidOrWarn(stripe, invoice.id, `${intent}:void`, userId, "an invoice paid by another of its invoices");
    return { outcome: "succeeded", invoiceId: paidInstead };
  }
  if (invoice.status === "paid") return { outcome: "succeeded", invoiceId: invoice.id };
  if (invoice.status === "void" || invoice.status === "uncollectible") return { outcome: "declined", invoiceId: invoice.id };
  try {
    const paid = await stripe.payInvoice(invoice.id, inFlight.paymentMethod, payIntent(intent, inFlight.payFailures ?? 0));
    // open after paying: the payment is processing (not declined: that throws); invoice.paid ends it
    return { outcome: paid.status === "paid" ? "succeeded" : "pending", invoiceId: invoice.id };
  } catch (error) {
    if (error instanceof PaymentActionRequiredError) {
      // only the customer can confirm it: on the invoice's page, which stays open for them
      const current = await stripe.retrieveInvoice(invoice.id);
      const actionUrl = current?.hostedUrl ?? invoice.hostedUrl;
      return { outcome: "action_required", invoiceId: invoice.id, ...(actionUrl ? { actionUrl } : {}) };
    }
    if (error instanceof PaymentFailedError || (error instanceof UpstreamError && !error.ambiguous)) {
      // An earlier pay of this invoice that we never heard the end of may have gone through since
      // (the refusal is then "already paid"): paid is paid.
      const paidMeanwhile = async () => (await stripe.retrieveInvoice(invoice.id))?.status === "paid";
      if (await paidMeanwhile()) return { outcome: "succeeded", invoiceId: invoice.id };
      // declined, or refused outright (the card it began with was removed, the customer deleted):
      // Stripe did nothing and a retry would be refused the same, so the top-up ends here
      // declined: the invoice is voided so nothing can collect it later by surprise
      const voided = await stripe.voidInvoice(invoice.id, `${intent}:void`).then(
        () => true,
        (voidError: unknown) => {
          if (!(voidError instanceof UpstreamError)) throw voidError;
          return false;
        },
      );
      // Stripe voids only an open invoice: one paid between the read above and the void is paid
      if (!voided) {
        if (await paidMeanwhile()) return { outcome: "succeeded", invoiceId: invoice.id };
        logger.warn("auto top-up: a declined invoice could not be voided", { userId, invoice: invoice?.id });
      }
      return { outcome: "declined", invoiceId: invoice.id };
    }
    // Stripe may have acted: the queue delivers the job again, which reads the invoice first. A 5xx
    // answer is kept for its key (see payFailures); a timeout is not an answer, and its key is kept
    // for the retry, which then gets Stripe's answer to the first call.
    if (error instanceof UpstreamError && error.answeredServerError) {
      await updateInFlight(deps, userId, inFlight.seq, (current) => ({ ...current, payFailures: (current.payFailures ?? 0) + 1 }));
    }
    throw error;
  }
}

/**
 * The intent a pay call's idempotency key is made from: the same across the SDK's own retries and
 * after a timeout, another after each 5xx answer (see `payFailures`). Only an invoice read as still
 * open is paid, so a new key never pays one twice.
 */
export function payIntent(intent: string, payFailures: number): string {
  return payFailures === 0 ? `${intent}:pay` : `${intent}:pay:${payFailures}`;
}

/** `unused`: an invoice this delivery made and lost to another delivery's recorded one (voided before paying). */
type MadeInvoice = { kind: "made"; invoice: InvoiceView; unused?: string } | { kind: "ended" } | { kind: "refused" };

/**
 * Makes the top-up's invoice and records it (the first recorded is the top-up's). A 5xx answer
 * moves the next try to new keys and notes what this try made; a refusal (the card or the customer
 * gone, the price removed) ends the top-up declined, as a refused pay does, since a retry would be
 * refused the same — unless another delivery recorded an invoice meanwhile, which is carried on.
 */
async function makeInvoice(deps: BillingDeps, userId: string, inFlight: TopUpInFlight, intent: string): Promise<MadeInvoice> {
  const stripe = deps.stripe as StripePort;
  const making = invoiceIntent(intent, inFlight.invoiceFailures ?? 0);
  let draftId: string | undefined;
  let made: InvoiceView;
  try {
    made = await stripe.createOneOffInvoice(
      {
        customer: inFlight.customer,
        paymentMethod: inFlight.paymentMethod,
        price: inFlight.price,
        metadata: { userId, autoTopUp: String(inFlight.seq), pack: inFlight.pack },
      },
      making,
      (id) => {
        draftId = id;
      },
    );
  } catch (error) {
    if (error instanceof UpstreamError && error.answeredServerError) {
      // kept for its keys, a 5xx would answer every retry for a day: the next try makes a new invoice
      const unused = draftId;
      await updateInFlight(deps, userId, inFlight.seq, (current) => {
        // another delivery recorded an invoice (maybe this very one, replayed under the same keys): it is paid, nothing to remake
        if (current.invoiceId !== undefined) return current;
        return {
          ...current,
          invoiceFailures: (current.invoiceFailures ?? 0) + 1,
          ...(unused ? { unusedInvoiceIds: [...(current.unusedInvoiceIds ?? []), unused] } : {}),
        };
      });
      throw error;
    }
    if (!(error instanceof UpstreamError) || error.ambiguous) throw error;
    // Refused: nothing this try made was finalized, so nothing of it can be paid.
    logger.warn("auto top-up: Stripe refused to make the invoice", { userId, seq: inFlight.seq, status: error.providerStatus });
    const recorded = await recordedInvoice(deps, userId, inFlight.seq);
    if (recorded.kind === "ended") return { kind: "ended" };
    if (recorded.invoiceId === undefined) return { kind: "refused" };
    return { kind: "made", invoice: await recordedAtStripe(stripe, userId, inFlight.seq, recorded.invoiceId) };
  }
  const recorded = await recordInvoice(deps, userId, inFlight.seq, made.id);
  if (recorded.kind === "ended") {
    // Ended meanwhile (another delivery of the job, or invoice.paid): nothing is paid here. Our
    // invoice is voided unless the top-up ended with it; when the state no longer says (a later
    // top-up's outcome replaced it), it is left: it may be the one shown to the customer.
    logger.warn("auto top-up ended while its invoice was being made", { userId, seq: inFlight.seq, invoice: made.id });
    if (recorded.known && recorded.invoiceId !== made.id) await voidOrWarn(stripe, made.id, `${making}:unused`, userId, "an unused invoice");
    return { kind: "ended" };
  }
  if (recorded.invoiceId === made.id) return { kind: "made", invoice: made };
  // Another delivery, under another try's keys, recorded its invoice first: that one is the
  // top-up's. Ours, never shown to anyone, is noted and voided before that one is paid.
  await updateInFlight(deps, userId, inFlight.seq, (current) => ({ ...current, unusedInvoiceIds: [...(current.unusedInvoiceIds ?? []), made.id] }));
  return { kind: "made", invoice: await recordedAtStripe(stripe, userId, inFlight.seq, recorded.invoiceId), unused: made.id };
}

/** The invoice another delivery recorded on top-up `seq`, as Stripe holds it. */
async function recordedAtStripe(stripe: StripePort, userId: string, seq: number, invoiceId: string): Promise<InvoiceView> {
  const invoice = await stripe.retrieveInvoice(invoiceId);
  if (!invoice) throw new Error(`auto top-up ${seq} of ${userId}: its recorded invoice ${invoiceId} is missing at Stripe`);
  return invoice;
}

/** Voids an invoice no one is to pay, best effort: one left open is never collected by itself (no automatic advance). */
async function voidOrWarn(stripe: StripePort, invoiceId: string, intent: string, userId: string, why: string): Promise<void> {
  await stripe.voidInvoice(invoiceId, intent).catch((error: unknown) => {
    logger.warn(`auto top-up: ${why} could not be voided`, { userId, invoice: invoiceId, error: (error as Error).message });
  });
}

/**
 * Voids the open invoices earlier tries made and did not record (see `unusedInvoiceIds`), never
 * the recorded one, so nobody pays one besides it; drafts are left (never finalized, nobody can pay
 * them). Answers the id of one found paid: it paid the top-up. Each void has a key of its own: a
 * second void of an invoice is refused, not applied twice, and a 5xx Stripe kept for one key must
 * not answer every retry. A void that may have acted unanswered throws; the job's retry goes again.
 */
async function disposeOfUnused(stripe: StripePort, invoiceIds: readonly string[], recordedId: string | undefined, intent: string): Promise<string | undefined> {
  for (const invoiceId of new Set(invoiceIds)) {
    if (invoiceId === recordedId) continue;
    const found = await stripe.retrieveInvoice(invoiceId);
    if (found?.status === "paid") return invoiceId;
    if (found?.status !== "open") continue;
    try {
      await stripe.voidInvoice(invoiceId, `${intent}:void-unused:${invoiceId}:${randomUUID()}`);
    } catch (error) {
      if (!(error instanceof UpstreamError) || error.ambiguous) throw error;
      // refused: Stripe voids only an open invoice, so it was paid (or voided) in between
      const now = await stripe.retrieveInvoice(invoiceId);
      if (now?.status === "paid") return invoiceId;
      if (now?.status === "open") throw error;
    }
  }
  return undefined;
}

/**
 * The intent the calls that make the invoice (create, item, finalize) take their keys from: the
 * same across retries after a timeout, another after each 5xx answer (see `invoiceFailures`), so
 * the next try makes a whole new invoice and never adds to one it did not hear back from.
 */
export function invoiceIntent(intent: string, invoiceFailures: number): string {
  return invoiceFailures === 0 ? intent : `${intent}:remake:${invoiceFailures}`;
}

/** `known`: the state still says how top-up `seq` ended (`invoiceId`: the invoice it ended with, if any). */
type RecordedInvoice = { kind: "recorded"; invoiceId: string } | { kind: "ended"; known: boolean; invoiceId?: string };

function endedAs(state: AutoTopUpState | undefined, seq: number): RecordedInvoice {
  const last = state?.lastAttempt;
  return last?.seq === seq ? { kind: "ended", known: true, ...(last.invoiceId ? { invoiceId: last.invoiceId } : {}) } : { kind: "ended", known: false };
}

/**
 * Records the top-up's invoice unless it has one already, and answers the one it has: two
 * deliveries of a job under different tries' keys make two invoices, and only the first recorded
 * is paid. "ended" when top-up `seq` is no longer in flight.
 */
async function recordInvoice(deps: BillingDeps, userId: string, seq: number, invoiceId: string): Promise<RecordedInvoice> {
  return updateTopUp<RecordedInvoice>(deps, userId, (current) => {
    const inFlight = current?.state.inFlight;
    if (!current || inFlight?.seq !== seq) return { result: endedAs(current?.state, seq) };
    if (inFlight.invoiceId !== undefined) return { result: { kind: "recorded", invoiceId: inFlight.invoiceId } };
    return { state: { ...current.state, inFlight: { ...inFlight, invoiceId } }, result: { kind: "recorded", invoiceId } };
  });
}

/** The invoice recorded on top-up `seq`, if any, or how it ended. */
async function recordedInvoice(deps: BillingDeps, userId: string, seq: number): Promise<{ kind: "inFlight"; invoiceId?: string } | { kind: "ended" }> {
  const state = (await deps.topUps.get(userId))?.state;
  const inFlight = state?.inFlight;
  if (inFlight?.seq !== seq) return { kind: "ended" };
  return { kind: "inFlight", ...(inFlight.invoiceId ? { invoiceId: inFlight.invoiceId } : {}) };
}

/** Changes the top-up in flight, if it is still top-up `seq` (a later one is left alone). */
async function updateInFlight(deps: BillingDeps, userId: string, seq: number, change: (inFlight: TopUpInFlight) => TopUpInFlight): Promise<void> {
  await updateTopUp(deps, userId, (current) => {
    const inFlight = current?.state.inFlight;
    if (!current || inFlight?.seq !== seq) return { result: false };
    return { state: { ...current.state, inFlight: change(inFlight) }, result: true };
  });
}
