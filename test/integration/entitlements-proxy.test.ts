import OpenAI from "openai";
import { afterAll, describe, expect, it } from "vitest";
import { changePlanSchedule, grantCredits } from "../../lib/ledger/index.js";
import { OPUS, uniqueUser } from "../helpers/ledger.js";
import { useProxyFixture } from "../helpers/proxy.js";
import { userToken } from "../helpers/tokens.js";

/** Issue 23 through the metered proxy, driven by the official `openai` SDK: the plan decides before the provider is reached. */
const fx = useProxyFixture();
afterAll(() => fx.close());

describe("plan entitlements through the proxy (openai SDK)", () => {
  it("a free user's call for a model the plan lacks: 403 plan_required naming plus, the provider never reached; after an upgrade it streams", async () => {
    const userId = uniqueUser("proxy-plan");
    await grantCredits(fx.ledger.deps, { userId, key: "admin#proxy-plan", amount: 100_000, bucket: "purchased", reason: "admin" });
    const openai = new OpenAI({ apiKey: await userToken(userId), baseURL: fx.baseUrl, maxRetries: 0 });
    const callsBefore = fx.upstream.calls.length;
    const ask = () => openai.chat.completions.create({ model: OPUS, messages: [{ role: "user", content: "Hello" }], stream: true, max_tokens: 50 });
    const refused = await ask().then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(OpenAI.PermissionDeniedError);
    const apiError = refused as InstanceType<typeof OpenAI.PermissionDeniedError>;
    expect(apiError.status).toBe(403);
    expect(apiError.code).toBe("plan_required");
    expect(apiError.error).toMatchObject({ type: "permission_error", model: OPUS, plan: "free", requiredPlan: "plus", reason: "MODEL_NOT_IN_PLAN" });
    expect(fx.upstream.calls.length).toBe(callsBefore);

    await changePlanSchedule(fx.ledger.deps, { userId, plan: "plus", interval: "month", periodStart: fx.ledger.deps.now() });
    fx.upstream.scenario({ reply: "Now on plus." });
    let text = "";
    for await (const chunk of await ask()) text += chunk.choices[0]?.delta?.content ?? "";
    expect(text).toBe("Now on plus.");
    expect(fx.upstream.calls.length).toBe(callsBefore + 1);
  });
});
