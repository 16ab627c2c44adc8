import { untilSettled } from "../ledger/retry.js";
import type { BillingDeps } from "../billing/deps.js";
import type { AutoTopUpState } from "./model.js";
import { accountMirror, sameMirror } from "./rules.js";
import type { StoredTopUp } from "./store.js";

/**
 * The one compare-and-swap loop over a user's auto top-up item: read it, let `change` decide the
 * next state (a rule of lib/topup/rules.ts), write that only if nothing was written since, and
 * go again when something was. `change` returns undefined to go again without writing, and the
 * state it read (rules return it unchanged when nothing changes) or no state to write nothing. The account's copy
 * of the threshold is written in the same transaction whenever the state changes it.
 */
export async function updateTopUp<T>(
  deps: Pick<BillingDeps, "topUps">,
  userId: string,
  change: (current: StoredTopUp | undefined) => Promise<{ state: AutoTopUpState; result: T } | { result: T } | undefined> | { state: AutoTopUpState; result: T } | { result: T } | undefined,
): Promise<T> {
  return untilSettled(async () => {
    const current = await deps.topUps.get(userId);
    const decided = await change(current);
    if (decided === undefined) return undefined;
    // no state, or the very state read (a rule that changed nothing): nothing to write
    if (!("state" in decided) || decided.state === current?.state) return { value: decided.result };
    const before = accountMirror(current?.state);
    const after = accountMirror(decided.state);
    const saved = await deps.topUps.save(userId, decided.state, current?.version ?? 0, sameMirror(before, after) ? undefined : after);
    return saved ? { value: decided.result } : undefined;
  }).then((settled) => settled.value);
}
