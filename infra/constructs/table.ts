import { RemovalPolicy } from "aws-cdk-lib";
import * as dynamodb from "aws-cdk-lib/aws-dynamodb";
import type { Construct } from "constructs";
import { type AttributeKind, tableDefinition } from "../../lib/ledger/table-definition.js";

export interface LedgerTable {
  table: dynamodb.Table;
  /** ARNs of every index (local and global): Query is granted on them */
  indexArns: string[];
}

const attributeType = (kind: AttributeKind) =>
  kind === "N" ? dynamodb.AttributeType.NUMBER : dynamodb.AttributeType.STRING;
const attribute = (key: { name: string; type: AttributeKind }) => ({ name: key.name, type: attributeType(key.type) });

/** The table (id "Table"): the same definition the tests and local runs create (lib/ledger/table-definition). */
export function addLedgerTable(scope: Construct): LedgerTable {
  const table = new dynamodb.Table(scope, "Table", {
    partitionKey: attribute(tableDefinition.partitionKey),
    sortKey: attribute(tableDefinition.sortKey),
    timeToLiveAttribute: tableDefinition.ttlAttribute,
    billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
    // the change stream the webhook events are derived from (infra/constructs/events.ts)
    stream: dynamodb.StreamViewType[tableDefinition.streamViewType],
    pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
    deletionProtection: true,
    // The ledger is the money: it outlives the stack.
    removalPolicy: RemovalPolicy.RETAIN,
  });
  for (const index of tableDefinition.localIndexes) {
    table.addLocalSecondaryIndex({
      indexName: index.name,
      sortKey: attribute(index.sortKey),
      projectionType: dynamodb.ProjectionType.ALL,
    });
  }
  for (const index of tableDefinition.globalIndexes) {
    table.addGlobalSecondaryIndex({
      indexName: index.name,
      partitionKey: attribute(index.partitionKey),
      sortKey: attribute(index.sortKey),
      // As lib/ledger/create-table.ts: the sweep re-reads each due account consistently anyway.
      projectionType: dynamodb.ProjectionType.KEYS_ONLY,
    });
  }
  const indexArns = [...tableDefinition.localIndexes, ...tableDefinition.globalIndexes].map(
    (index) => `${table.tableArn}/index/${index.name}`,
  );
  return { table, indexArns };
}
