import type { Authenticator } from "../auth.js";
import { ForbiddenError, ValidationError } from "../errors.js";
import { userIdSchema } from "../ledger/validation.js";
import { parseInput } from "../validation.js";

export const PAYER_HEADER = "x-creditgate-user";

/**
 * Whose credits a proxied call spends: a user token's own user (`sub`), or, for a service token
 * (scope `gate`), the user its `X-Creditgate-User` header names. A user token naming someone else
 * is refused rather than ignored: the caller believes it is charging that user.
 */
export async function payerOf(auth: Authenticator, headers: Record<string, string | undefined>): Promise<string> {
  const principal = await auth.authenticate(headers.authorization);
  const named = headers[PAYER_HEADER];
  if (principal.kind === "user") {
    if (named !== undefined && named !== principal.userId) throw new ForbiddenError("A user token pays for its own user only");
    return principal.userId;
  }
  if (named === undefined) throw new ValidationError("X-Creditgate-User: required with a service token (the user who pays)", "X-Creditgate-User");
  return parseInput(userIdSchema, named, "X-Creditgate-User");
}
