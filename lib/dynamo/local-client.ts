import { DynamoDBClient, type DynamoDBClientConfig } from "@aws-sdk/client-dynamodb";

/**
 * A client of DynamoDB Local at `endpoint` (local runs, the ops CLI, tests, the benchmark): it
 * wants some region and credentials, any will do. `config` adds to or overrides them.
 */
export function localDynamoClient(endpoint: string, config: DynamoDBClientConfig = {}): DynamoDBClient {
  return new DynamoDBClient({
    endpoint,
    region: "local",
    credentials: { accessKeyId: "local", secretAccessKey: "local" },
    ...config,
  });
}
