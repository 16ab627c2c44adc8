// The floor for bundle size and cold import: a function that only constructs the DynamoDB client.
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";

export const client = new DynamoDBClient({});
export const handler = async () => ({ statusCode: 200, body: String(typeof client.send) });
