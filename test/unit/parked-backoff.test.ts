import { describe, expect, it } from "vitest";
import { nextParkedAttemptAt, PARKED_RETRY_BACKOFF } from "../../lib/billing/index.js";

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

describe("parked events: the sweep's backoff", () => {
  it("retries a missing customer or subscription 5 minutes after it parked, doubling, at most 6 hours apart", () => {
    for (const reason of ["unknown_customer", "subscription_unavailable"]) {
      const delays = [1, 2, 3, 4, 5, 6, 7, 8, 100].map((attempts) => (nextParkedAttemptAt(reason, attempts, 1_000) as number) - 1_000);
      expect(delays).toEqual([5, 10, 20, 40, 80, 160, 320, 360, 360].map((minutes) => minutes * MINUTE));
    }
  });

  it("retries a configuration problem (price, pack) an hour after, doubling, at most a day apart", () => {
    for (const reason of ["unknown_price", "unknown_pack"]) {
      const delays = [1, 2, 3, 5, 6, 1_000].map((attempts) => (nextParkedAttemptAt(reason, attempts, 0) as number) / HOUR);
      expect(delays).toEqual([1, 2, 4, 16, 24, 24]);
    }
  });

  it("never retries an object it could not read, nor a reason it does not know", () => {
    expect(nextParkedAttemptAt("malformed_object", 1, 0)).toBeUndefined();
    expect(nextParkedAttemptAt("some_future_reason", 1, 0)).toBeUndefined();
    expect(Object.keys(PARKED_RETRY_BACKOFF).sort()).toEqual(["subscription_unavailable", "unknown_customer", "unknown_pack", "unknown_price"]);
  });
});
