import * as z from "zod/mini";
import "../zod-locale.js";

/**
 * A hold id names the hold (user + requestId) and carries the hold's tag and the account state the hold was created
 * at (seq, balance, model, reserved). Settle uses that as its expected state, so the steady-state
 * settle is one transaction with no read. Nothing in it is trusted: every carried value is a
 * condition of the settle write, and a mismatch (or a forged id) only sends settle down the slow
 * path that reads the real hold.
 */
export interface HoldRef {
  userId: string;
  requestId: string;
  tag: string;
  seq: number;
  balance: number;
  model: string;
  reserved: number;
}

/**
 * Bounds no real hold id reaches (credit amounts are bounded at 10^12; a seq grows by one per
 * entry): an id past them is no hold's, and answers 404 instead of reaching arithmetic that
 * would leave the safe-integer range (seq + 1, balance − cost).
 */
const LIMIT = 1e12;
const holdRefSchema = z.tuple([
  z.string().check(z.minLength(1), z.maxLength(128)),
  z.string().check(z.minLength(1), z.maxLength(128)),
  z.string().check(z.regex(/^[A-Za-z0-9_-]{1,32}$/)),
  z.number().check(z.int(), z.minimum(0), z.maximum(LIMIT)),
  z.number().check(z.int(), z.minimum(-LIMIT), z.maximum(LIMIT)),
  z.string().check(z.minLength(1), z.maxLength(100)),
  z.number().check(z.int(), z.minimum(0), z.maximum(LIMIT)),
]);

export function encodeHoldId(ref: HoldRef): string {
  const payload = [ref.userId, ref.requestId, ref.tag, ref.seq, ref.balance, ref.model, ref.reserved];
  return `hold_${Buffer.from(JSON.stringify(payload)).toString("base64url")}`;
}

export function decodeHoldId(holdId: string): HoldRef | undefined {
  if (!holdId.startsWith("hold_") || holdId.length > 1024) return undefined;
  try {
    const parsed = holdRefSchema.safeParse(JSON.parse(Buffer.from(holdId.slice(5), "base64url").toString("utf8")));
    if (!parsed.success) return undefined;
    const [userId, requestId, tag, seq, balance, model, reserved] = parsed.data;
    return { userId, requestId, tag, seq, balance, model, reserved };
  } catch {
    return undefined;
  }
}
