import { type AttributeValue, type DynamoDBClient, ScanCommand } from "@aws-sdk/client-dynamodb";
import { ACCOUNT_SK, userIdOfPk } from "../ledger/table-definition.js";

/**
 * Every account's user id, page by page. A full scan: this is for operators (audit all, export
 * all), never for a request path; the sweep uses its sparse indexes instead.
 */
export async function* scanUserIds(client: DynamoDBClient, tableName: string): AsyncGenerator<string> {
  let start: Record<string, AttributeValue> | undefined;
  do {
    const page = await client.send(
      new ScanCommand({
        TableName: tableName,
        FilterExpression: "#sk = :account",
        ProjectionExpression: "#pk",
        ExpressionAttributeNames: { "#pk": "pk", "#sk": "sk" },
        ExpressionAttributeValues: { ":account": { S: ACCOUNT_SK } },
        ExclusiveStartKey: start,
      }),
    );
    for (const item of page.Items ?? []) yield userIdOfPk(item.pk?.S ?? "");
    start = page.LastEvaluatedKey;
  } while (start);
}
