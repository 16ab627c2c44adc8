import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A loopback stand-in for the Secrets Manager API (its JSON protocol's GetSecretValue only), for a
 * real SDK client pointed at it with AWS_ENDPOINT_URL_SECRETS_MANAGER. It records the secret ids
 * asked for, so a test can assert how often a function reads its secrets.
 */
export async function startFakeSecretsManager(values: Record<string, string>) {
  const calls: string[] = [];
  const server = createServer((request, response) => {
    let body = "";
    request.on("data", (chunk) => {
      body += chunk;
    });
    request.on("end", () => {
      const answer = (status: number, json: unknown) => {
        response.writeHead(status, { "content-type": "application/x-amz-json-1.1" });
        response.end(JSON.stringify(json));
      };
      if (request.headers["x-amz-target"] !== "secretsmanager.GetSecretValue") {
        return answer(400, { __type: "UnknownOperationException", message: String(request.headers["x-amz-target"]) });
      }
      const { SecretId } = JSON.parse(body) as { SecretId: string };
      calls.push(SecretId);
      const value = values[SecretId];
      if (value === undefined) return answer(400, { __type: "ResourceNotFoundException", message: "Secrets Manager can't find the specified secret." });
      return answer(200, { ARN: SecretId, Name: SecretId.split(":").at(-1), SecretString: value, VersionId: "v1", VersionStages: ["AWSCURRENT"] });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    calls,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
