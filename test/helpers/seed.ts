import { BatchWriteItemCommand, type DynamoDBClient, type WriteRequest } from "@aws-sdk/client-dynamodb";
import { catalog } from "../../lib/catalog.js";
import { accountItem, entryItem } from "../../lib/ledger/dynamo-item.js";
import { newAccount } from "../../lib/ledger/ensure-account.js";

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
    // Exactly what ensureAccount writes on first sight (the adapter's stored items), so seeded accounts are real accounts.
    const { account, signup } = newAccount({ catalog }, userId, createdAt);
    return [{ PutRequest: { Item: accountItem(account) } }, { PutRequest: { Item: entryItem(signup) } }];
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
