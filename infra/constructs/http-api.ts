import { Duration, RemovalPolicy } from "aws-cdk-lib";
import { AccessLogFormat } from "aws-cdk-lib/aws-apigateway";
import { CorsHttpMethod, HttpApi, HttpMethod, HttpStage, LogGroupLogDestination } from "aws-cdk-lib/aws-apigatewayv2";
import { HttpLambdaIntegration } from "aws-cdk-lib/aws-apigatewayv2-integrations";
import * as logs from "aws-cdk-lib/aws-logs";
import type { Construct } from "constructs";
import type { FunctionName } from "../../lib/routes.js";
import type { HouseFunction } from "../house-function.js";
import { acknowledge, pascal, specs } from "./common.js";

export interface HttpApiProps {
  /** the web app's origin: CORS allows only it */
  appUrl: string;
  /** default-stage throttling (requests per second, burst) */
  throttle: { rateLimit: number; burstLimit: number };
  /** of the access logs */
  logRetention: logs.RetentionDays;
}

/** The Stripe webhook's route, as API Gateway's metrics name it. */
export interface WebhookRoute {
  apiId: string;
  stageName: string;
  method: string;
  /** the route's path */
  resource: string;
}

export interface CreditgateHttpApi {
  api: HttpApi;
  stage: HttpStage;
  /** the route of the function that authenticates by itself (auth "none"), if there is one */
  webhook?: WebhookRoute;
}

/**
 * The HTTP API ("Api") with its access-logged "$default" stage ("DefaultStage", "ApiAccessLogs")
 * and exactly the routes of lib/routes.ts, each integrated with the function that serves it.
 */
export function addHttpApi(scope: Construct, functions: Record<FunctionName, HouseFunction>, props: HttpApiProps): CreditgateHttpApi {
  const accessLogs = new logs.LogGroup(scope, "ApiAccessLogs", {
    retention: props.logRetention,
    removalPolicy: RemovalPolicy.DESTROY,
  });
  const api = new HttpApi(scope, "Api", {
    description: "creditgate HTTP API",
    createDefaultStage: false,
    // Browsers call the user routes from the app only; the gate and Stripe are server-to-server.
    corsPreflight: {
      allowOrigins: [new URL(props.appUrl).origin],
      allowMethods: [CorsHttpMethod.GET, CorsHttpMethod.POST, CorsHttpMethod.OPTIONS],
      allowHeaders: ["authorization", "content-type"],
      maxAge: Duration.hours(1),
    },
  });
  const stage = new HttpStage(scope, "DefaultStage", {
    httpApi: api,
    stageName: "$default",
    autoDeploy: true,
    throttle: props.throttle,
    // Route-level metrics: the webhook's 5xx rate alarm needs them.
    detailedMetricsEnabled: true,
    accessLogSettings: {
      destination: new LogGroupLogDestination(accessLogs),
      format: AccessLogFormat.custom(
        JSON.stringify({
          requestId: "$context.requestId",
          requestTime: "$context.requestTime",
          ip: "$context.identity.sourceIp",
          userAgent: "$context.identity.userAgent",
          routeKey: "$context.routeKey",
          status: "$context.status",
          protocol: "$context.protocol",
          responseLength: "$context.responseLength",
          responseLatency: "$context.responseLatency",
          integrationLatency: "$context.integrationLatency",
          integrationStatus: "$context.integrationStatus",
          integrationError: "$context.integrationErrorMessage",
        }),
      ),
    },
  });
  for (const [name, spec] of specs()) {
    if (spec.routes.length === 0) continue;
    const integration = new HttpLambdaIntegration(`${pascal(name)}Integration`, functions[name].fn);
    for (const routeKey of spec.routes) {
      const [method, path] = routeKey.split(" ") as [keyof typeof HttpMethod, string];
      if (!(method in HttpMethod) || !path?.startsWith("/")) throw new Error(`bad route key "${routeKey}" in lib/routes.ts`);
      api.addRoutes({ path, methods: [HttpMethod[method]], integration });
    }
  }
  // No API Gateway authorizer: every "jwt" function verifies its bearer token itself (lib/auth.ts,
  // HS256 secret or JWKS) and the gate also checks the service scope; the webhook's auth is the
  // Stripe signature. With an OIDC issuer an HttpJwtAuthorizer could reject bad tokens earlier.
  acknowledge(api, {
    id: "AwsSolutions-APIG4",
    reason:
      "Authorization happens in the functions: lib/auth.ts verifies the bearer JWT (and the gate's service scope) on every jwt route; the Stripe webhook is authenticated by its signature over the raw body. The only routes served without authentication are public by design and read nothing per user: GET /v1/openapi.json and GET /v1/plans.",
  });

  const webhookRoute = specs().find(([, spec]) => spec.auth === "none")?.[1].routes[0];
  if (!webhookRoute) return { api, stage };
  const [method, resource] = webhookRoute.split(" ") as [string, string];
  return { api, stage, webhook: { apiId: api.apiId, stageName: stage.stageName, method, resource } };
}
