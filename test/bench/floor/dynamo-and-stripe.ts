// The floor for Stripe functions: the DynamoDB client and the Stripe client, nothing else.
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import Stripe from "stripe";

export const client = new DynamoDBClient({});
export const stripe = new Stripe("sk_test_floor");
export const handler = async () => ({ statusCode: 200, body: String(typeof client.send) + String(typeof stripe.customers) });
