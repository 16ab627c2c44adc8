import type { AccountRecord } from "./account.js";
import type { AccountCommit } from "./store.js";

/**
 * What the scheduled months of one annual year may still grant in total (`credits`), once a refund
 * or dispute of its invoice returned money the months granted so far could not cover (written by
 * `adjustForCharge` with the clawback, spent by `grantAllowanceIfDue` with each month). It binds the
 * year anchored at `anchor` only: another anchor is another year, and no budget grants in full.
 */
export interface ScheduleBudget {
  anchor: number;
  credits: number;
}

export type BudgetedAccount = AccountRecord & { scheduleBudget?: ScheduleBudget };

/** The account's budget for the annual year it is in, if it has one. */
export function scheduleBudgetOf(account: AccountRecord): ScheduleBudget | undefined {
  const budget = (account as BudgetedAccount).scheduleBudget;
  return account.interval === "year" && budget?.anchor === account.periodAnchor ? budget : undefined;
}

/** `set` for the budget: the store writes every attribute it is given; the account type does not name this one. */
export function scheduleBudgetSet(budget: ScheduleBudget): AccountCommit["set"] {
  return { scheduleBudget: budget } as unknown as AccountCommit["set"];
}

/** `remove` for the budget (the account type does not name it either). */
export function scheduleBudgetRemoval(): NonNullable<AccountCommit["remove"]> {
  return ["scheduleBudget"] as unknown as NonNullable<AccountCommit["remove"]>;
}
