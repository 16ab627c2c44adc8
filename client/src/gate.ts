import { SettleFailedError } from "./errors.js";
import { type ConnectionOptions, connect, unwrap } from "./http.js";
import type { components } from "./generated/openapi.js";
import { type RetryOptions, withRetry } from "./retry.js";

type Schemas = components["schemas"];
export type AuthorizeRequest = Schemas["AuthorizeRequest"];
export type Authorization = Schemas["AuthorizeResponse"];
export type HoldOutcome = Schemas["SettleResponse"];

/** What the model call used: settle charges for it. */
export interface Usage {
  inputTokens: number;
  outputTokens: number;
}

/** A call to meter: authorize's fields; `requestId` is generated when not given. */
export type MeterRequest = Omit<AuthorizeRequest, "requestId"> & { requestId?: string };

/** The hold meter() hands to the function: authorize's answer and the requestId it was made under. */
export type Hold = Authorization & { requestId: string };

export interface MeterResult<R> {
  /** what the function returned */
  result: R;
  hold: Hold;
  settlement: HoldOutcome;
}

/**
 * The chat backend's gate (a service JWT with scope `gate`). authorize, settle and release are
 * idempotent on the server (by requestId, by holdId), so each is retried here with the same body
 * on a network error, a timeout, a 5xx or a retryable 409 (see retry.ts), never on another 4xx.
 */
export function createGateClient(options: ConnectionOptions & { retry?: RetryOptions }) {
  const { client, attempt } = connect(options);
  const retried = <T>(call: () => Promise<T>) => withRetry(call, options.retry);

  /** Reserves the most the call can cost; the same requestId again answers with the same hold. */
  const authorize = (body: AuthorizeRequest): Promise<Authorization> =>
    retried(() => unwrap(client.POST("/v1/gate/authorize", { body, ...attempt() })));
  /** Charges the hold for what was used; answers its first outcome forever after. */
  const settle = (body: { holdId: string } & Usage): Promise<HoldOutcome> =>
    retried(() => unwrap(client.POST("/v1/gate/settle", { body, ...attempt() })));
  /** Releases the hold without charging; answers its first outcome forever after. */
  const release = (body: { holdId: string }): Promise<HoldOutcome> =>
    retried(() => unwrap(client.POST("/v1/gate/release", { body, ...attempt() })));

  /**
   * Authorizes, runs `run` (the model call), then settles with the usage it returns; if `run`
   * throws, the hold is released and the error rethrown. A 402 is thrown as InsufficientCreditsError
   * before `run` is called. If the release itself fails, `run`'s error is still the one thrown: the
   * hold is then released by the server when it expires. If the settle fails after `run` returned
   * (refused, or its retries ran out), a SettleFailedError names the hold and carries the result:
   * the call ran, so the hold is not released; settle it later (a late settle still charges).
   */
  async function meter<R extends Usage>(request: MeterRequest, run: (hold: Hold) => Promise<R>): Promise<MeterResult<R>> {
    const requestId = request.requestId ?? crypto.randomUUID();
    const hold: Hold = { ...(await authorize({ ...request, requestId })), requestId };
    let result: R;
    try {
      result = await run(hold);
    } catch (error) {
      await release({ holdId: hold.holdId }).catch(() => undefined);
      throw error;
    }
    let settlement: HoldOutcome;
    try {
      settlement = await settle({ holdId: hold.holdId, inputTokens: result.inputTokens, outputTokens: result.outputTokens });
    } catch (error) {
      // The call ran: releasing would give it away. Name the hold, so the caller can settle it later.
      throw new SettleFailedError(hold.holdId, result, error);
    }
    return { result, hold, settlement };
  }

  return { authorize, settle, release, meter };
}

export type GateClient = ReturnType<typeof createGateClient>;
