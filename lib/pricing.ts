import { UnknownModelError, ValidationError } from "./errors.js";
import { catalog, isModelId, type ModelId } from "./catalog.js";

/** Token counts above these are refused as absurd rather than priced. */
export const MAX_INPUT_TOKENS = 2_000_000;
export const MAX_OUTPUT_TOKENS = 1_000_000;

export function requireModel(model: string): ModelId {
  if (!isModelId(model)) throw new UnknownModelError(model);
  return model;
}

function tokens(value: number, field: string, max: number): number {
  if (!Number.isSafeInteger(value) || value < 0) throw new ValidationError(`${field} must be a non-negative integer`, field);
  if (value > max) throw new ValidationError(`${field} must be at most ${max}`, field);
  return value;
}

/** Validates token counts as `costOfCall` does, before the model is known (settle prices from the stored hold). */
export function checkTokenCounts(inputTokens: number, outputTokens: number): void {
  tokens(inputTokens, "inputTokens", MAX_INPUT_TOKENS);
  tokens(outputTokens, "outputTokens", MAX_OUTPUT_TOKENS);
}

/** Cost of a call = round(in*rin/1000) + round(out*rout/1000), at least 1 credit. */
export function costOfCall(model: string, inputTokens: number, outputTokens: number, outputField = "outputTokens"): number {
  const known = requireModel(model);
  const tier = catalog.modelTiers[catalog.models[known] as string];
  if (!tier) throw new UnknownModelError(model);
  const input = tokens(inputTokens, "inputTokens", MAX_INPUT_TOKENS);
  const output = tokens(outputTokens, outputField, MAX_OUTPUT_TOKENS);
  const cost = Math.round((input * tier.inputPer1k) / 1000) + Math.round((output * tier.outputPer1k) / 1000);
  return Math.max(1, cost);
}
