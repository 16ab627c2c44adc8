import { Logger } from "@aws-lambda-powertools/logger";

/**
 * The one structured JSON logger of a function. The HTTP stack (lib/http/logging) stamps every
 * line of a request with its request ids; POWERTOOLS_LOG_LEVEL sets the level.
 */
export const logger = new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? "creditgate" });
