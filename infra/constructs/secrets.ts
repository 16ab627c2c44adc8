import { ArnFormat, CfnOutput, Stack } from "aws-cdk-lib";
import * as secretsmanager from "aws-cdk-lib/aws-secretsmanager";
import type { Construct } from "constructs";
import type { SecretName } from "../../lib/routes.js";
import { SECRET_PLACEHOLDER_KEY } from "../../lib/secrets.js";
import { acknowledge, pascal } from "./common.js";

/**
 * The secrets the functions read (ids "<Name>Secret"), made when a function first needs one:
 * created empty-ish, or imported by name. Values never enter the template; functions get ARNs
 * (or names) and read them at cold start.
 */
export class StackSecrets {
  /** every secret a function needs, in the order they were first asked for */
  readonly all = new Map<SecretName, secretsmanager.ISecret>();

  constructor(
    private readonly scope: Construct,
    /** use existing Secrets Manager secrets (by name) instead of creating them */
    private readonly importedNames: Partial<Record<SecretName, string>> = {},
  ) {}

  secret(name: SecretName): secretsmanager.ISecret {
    let secret = this.all.get(name);
    if (!secret) {
      const imported = this.importedNames[name];
      secret = imported
        ? secretsmanager.Secret.fromSecretNameV2(this.scope, `${pascal(name)}Secret`, imported)
        : new secretsmanager.Secret(this.scope, `${pascal(name)}Secret`, {
            description: `creditgate ${name}: set the real value with aws secretsmanager put-secret-value`,
            // CloudFormation cannot create an empty secret: start with a marker lib/secrets.ts treats as unset.
            generateSecretString: {
              secretStringTemplate: JSON.stringify({ [SECRET_PLACEHOLDER_KEY]: "replace this whole value" }),
              generateStringKey: "random",
              passwordLength: 16,
            },
          });
      this.all.set(name, secret);
    }
    return secret;
  }

  /** GetSecretValue takes an ARN or a name; an imported-by-name secret has no full ARN. */
  secretId(name: SecretName): string {
    return this.importedNames[name] ?? this.secret(name).secretArn;
  }

  /** The resource to grant on: a name-imported secret's ARN ends in a random 6-character suffix. */
  arnForPolicy(name: SecretName): string {
    const imported = this.importedNames[name];
    return imported
      ? Stack.of(this.scope).formatArn({ service: "secretsmanager", resource: "secret", resourceName: `${imported}-??????`, arnFormat: ArnFormat.COLON_RESOURCE_NAME })
      : this.secret(name).secretArn;
  }

  /** cdk-nag: the created secrets are not rotated here, on purpose. */
  acknowledgeNoRotation(): void {
    for (const secret of this.all.values()) {
      if (secret instanceof secretsmanager.Secret) {
        acknowledge(secret, {
          id: "AwsSolutions-SMG4",
          reason:
            "Third-party credentials (Stripe keys, the webhook signing secret, the JWT secret shared with the issuer) are rotated at their source and then put here; no rotation Lambda can rotate them.",
        });
      }
    }
  }

  /** One output per secret ("<Name>SecretArn"): where to put its value. */
  addOutputs(): void {
    for (const [name, secret] of this.all) {
      new CfnOutput(this.scope, `${pascal(name)}SecretArn`, { value: secret.secretArn, description: `put the ${name} value here` });
    }
  }
}
