export type { AccountRecord, HoldRecord } from "./account.js";
export { type AuthorizeInput, type AuthorizeResult, authorizeChat } from "./authorize.js";
export { LEDGER_DEFAULTS, type LedgerDeps } from "./deps.js";
export { ensureAccount } from "./ensure-account.js";
export { clawBack, type GrantInput, type GrantResult, grantAllowanceIfDue, grantCredits } from "./grant.js";
export { auditAccount, balanceView, getBalance, listHistory, peekBalance } from "./queries.js";
export { type HoldOutcome, releaseExpiredHolds, releaseHold, settleChat } from "./settle.js";
export type { LedgerStore } from "./store.js";
export { changePlanSchedule, type PlanChange, scheduleFor } from "./plan-schedule.js";
