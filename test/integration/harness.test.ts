import { DescribeTableCommand } from "@aws-sdk/client-dynamodb";
import { describe, expect, it } from "vitest";
import { INDEXES } from "../../lib/ledger/table-definition.js";
import { freshTable } from "../helpers/dynamo.js";

describe("DynamoDB Local harness", () => {
  it("creates a fresh table with the shared indexes", async () => {
    const { client, tableName } = await freshTable();
    const { Table } = await client.send(new DescribeTableCommand({ TableName: tableName }));
    expect(Table?.LocalSecondaryIndexes?.map((i) => i.IndexName)).toEqual([INDEXES.history.name]);
    expect(Table?.GlobalSecondaryIndexes?.map((i) => i.IndexName).sort()).toEqual(
      [INDEXES.grantDue.name, INDEXES.holdDue.name].sort(),
    );
  });
});
