import { BatchWriteItemCommand, type DynamoDBClient, type WriteRequest } from "@aws-sdk/client-dynamodb";
import { marshall } from "@aws-sdk/util-dynamodb";
import type { AccountRecord } from "../../lib/ledger/account.js";
import { shardOf } from "../../lib/ledger/schedule.js";
import { DAY_MS } from "../../lib/periods.js";

/**
 * Writes fresh free accounts exactly as ensureAccount would (account item + signup entry), in
 * batches, so large sweep tests can seed tens of thousands of accounts in seconds.
 */
export async function seedFreeAccounts(
  client: DynamoDBClient,
  tableName: string,
  accounts: { userId: string; createdAt: number }[],
): Promise<void> {
  const requests: WriteRequest[] = accounts.flatMap(({ userId, createdAt }) => {
    const account: AccountRecord = {
      userId,
      plan: "free",
      interval: "month",
      createdAt,
      balance: 10_000,
      available: 10_000,
      seq: 1,
      allowanceBase: 10_000,
      purchasedBase: 0,
      spent: 0,
      holds: {},
      holdSeq: {},
      holdBal: {},
      pend: {},
      pendSeq: {},
      pendBal: {},
      periodIndex: 0,
      periodAnchor: createdAt,
      nextGrantAt: createdAt + 30 * DAY_MS,
      grantShard: shardOf(userId),
      rl: {},
    };
    const signup = {
      pk: `U#${userId}`,
      sk: "E#signup",
      entrySeq: 1,
      userId,
      key: "signup",
      amount: 10_000,
      balanceAfter: 10_000,
      reason: "signup",
      bucket: "allowance",
      refs: {},
      createdAt,
    };
    return [
      { PutRequest: { Item: marshall({ pk: `U#${userId}`, sk: "ACCOUNT", ...account }) } },
      { PutRequest: { Item: marshall(signup) } },
    ];
  });
  const batches: WriteRequest[][] = [];
  for (let i = 0; i < requests.length; i += 25) batches.push(requests.slice(i, i + 25));
  let next = 0;
  const worker = async () => {
    while (next < batches.length) {
      let pending: WriteRequest[] | undefined = batches[next++];
      while (pending?.length) {
        const result = await client.send(new BatchWriteItemCommand({ RequestItems: { [tableName]: pending } }));
        pending = result.UnprocessedItems?.[tableName];
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
}
