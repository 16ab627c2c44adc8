import { createHash } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { type AttributeValue, type DynamoDBClient, ScanCommand } from "@aws-sdk/client-dynamodb";
import { unmarshall } from "@aws-sdk/util-dynamodb";
import { fileURLToPath } from "node:url";
import { afterAll, inject } from "vitest";
import { runOps } from "../../infra/ops/cli.js";

/**
 * Shared plumbing of the reliability suite: the size of the run (default, or 10x with
 * RELIABILITY_HEAVY=1), a seeded random source (RELIABILITY_SEED replays a run), a bounded
 * concurrency pool, and the results each file measures (written to test-results/reliability/,
 * which the suite's global teardown turns into results.json, results.md and, when asked, the
 * table of docs/reliability.md).
 */
export const HEAVY = process.env.RELIABILITY_HEAVY === "1";
export const MODE = HEAVY ? "heavy" : "default";
/** Counts scale 10x in heavy mode. */
export const scale = (count: number) => (HEAVY ? count * 10 : count);
/** Per-test timeout: generous in heavy mode, bounded in the default run. */
export const budgetMs = (defaultMs: number) => (HEAVY ? defaultMs * 12 : defaultMs);

export const SEED = Number(process.env.RELIABILITY_SEED ?? 20_260_101);

/** mulberry32: small, fast, good enough to shuffle and pick; the same seed gives the same script. */
export function random(seed = SEED) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
  const int = (min: number, max: number) => min + Math.floor(next() * (max - min + 1));
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)] as T;
  const chance = (p: number) => next() < p;
  /** picks a key of `weights` with probability proportional to its weight */
  const weighted = <K extends string>(weights: Record<K, number>): K => {
    const entries = Object.entries(weights) as [K, number][];
    let roll = next() * entries.reduce((sum, [, w]) => sum + w, 0);
    for (const [key, weight] of entries) {
      roll -= weight;
      if (roll < 0) return key;
    }
    return (entries.at(-1) as [K, number])[0];
  };
  const shuffle = <T>(items: T[]): T[] => {
    for (let i = items.length - 1; i > 0; i--) {
      const j = Math.floor(next() * (i + 1));
      [items[i], items[j]] = [items[j] as T, items[i] as T];
    }
    return items;
  };
  return { next, int, pick, chance, weighted, shuffle };
}
export type Random = ReturnType<typeof random>;

/** Runs `work` over `items` with at most `limit` in flight; every item runs, failures are collected. */
export async function pool<T>(items: T[], limit: number, work: (item: T, index: number) => Promise<void>): Promise<unknown[]> {
  const failures: unknown[] = [];
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      try {
        await work(items[index] as T, index);
      } catch (error) {
        failures.push(error);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return failures;
}

/** One row of the reliability table (docs/reliability.md): what was run or tried, how much, and what went wrong (all zero). */
export interface ResultRow {
  check: string;
  volume: string;
  /** accounts whose audit found a problem (balance vs ledger, seq chain, held vs holds, split) */
  drift: number;
  /** credits the independent model expects that the account does not have */
  creditsLost: number;
  /** business facts credited more than once, plus credits above the model */
  doubleGrants: number;
  /** anything else that must be zero: 5xx answers, writes by refused requests, diverging state... */
  other: number;
  otherLabel: string;
}

export interface SectionResult {
  section: string;
  order: number;
  mode: string;
  seed: number;
  wallMs: number;
  counts: Record<string, number>;
  rows: ResultRow[];
  /** whether every test of the file passed (written after the file ran; absent = not known to pass) */
  passed?: boolean;
}

export const RESULTS_DIR = fileURLToPath(new URL("../../test-results/reliability/", import.meta.url));

/** Records a file's measured results (called before its assertions, so a failing run is recorded too). */
export function recordSection(result: Omit<SectionResult, "mode" | "seed" | "passed">): void {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const full: SectionResult = { ...result, mode: MODE, seed: SEED };
  writeFileSync(`${RESULTS_DIR}section-${result.section}.json`, `${JSON.stringify(full, null, 2)}\n`);
}

interface TaskLike {
  type: string;
  mode?: string;
  result?: { state?: string };
  tasks?: TaskLike[];
}

/** Every test below `task` ran and passed (a skipped test, a failed hook or a failed test is not a pass). */
export function allTestsPassed(task: TaskLike): boolean {
  if (task.type === "test") return task.result?.state === "pass";
  return (task.tasks ?? []).every(allTestsPassed) && task.result?.state !== "fail";
}

/**
 * Registers, for the calling test file, a final hook that writes whether all its tests passed.
 * The reliability table is written only when every section passed: a row's zero counts alone cannot
 * prove a run was clean (an assertion outside the counted kinds can fail it).
 */
export function recordOutcomeOf(section: (typeof SECTIONS)[number]): void {
  // vitest passes the suite as the hook's second argument; the first must be a fixtures pattern
  // biome-ignore lint/correctness/noEmptyPattern: no fixtures are used
  afterAll(({}, suite) => {
    mkdirSync(RESULTS_DIR, { recursive: true });
    const passed = allTestsPassed(suite as unknown as TaskLike);
    writeFileSync(`${RESULTS_DIR}outcome-${section}.json`, `${JSON.stringify({ section, passed })}\n`);
  });
}

/** The sections a complete run records; docs/reliability.md is only rewritten from a complete run. */
export const SECTIONS = ["gate-storm", "webhook-storm", "faults", "hostile-input", "auth-matrix", "plan-changes", "topup-storm", "proxy-storm"] as const;

/** An independent cost model (the published rates, docs/billing.md "Catalog"), not lib/pricing: credits per 1K tokens (input, output). */
export const RATES: Record<string, [number, number]> = {
  "anthropic/claude-sonnet-4.5": [3, 15],
  "openai/gpt-5.2": [3, 15],
  "google/gemini-3-pro-preview": [3, 15],
  "mistralai/mistral-large-2512": [3, 15],
  "anthropic/claude-opus-4.5": [15, 75],
};
export function modelCost(model: string, input: number, output: number): number {
  const [rin, rout] = RATES[model] ?? [Number.NaN, Number.NaN];
  return Math.max(1, Math.round((input * rin) / 1000) + Math.round((output * rout) / 1000));
}

export const SIGNUP_BONUS = 10_000;

/** Every item of a table, as one stable digest: equal digests before and after = nothing was written. */
export async function tableDigest(client: DynamoDBClient, tableName: string): Promise<{ items: number; digest: string }> {
  const items: string[] = [];
  let start: Record<string, AttributeValue> | undefined;
  do {
    const page = await client.send(new ScanCommand({ TableName: tableName, ConsistentRead: true, ExclusiveStartKey: start }));
    for (const item of page.Items ?? []) items.push(stableJson(unmarshall(item)));
    start = page.LastEvaluatedKey;
  } while (start);
  items.sort();
  return { items: items.length, digest: createHash("sha256").update(items.join("\n")).digest("hex") };
}

function stableJson(value: unknown): string {
  if (value instanceof Set) return stableJson([...value].sort());
  if (Array.isArray(value)) return `[${value.map(stableJson).join(",")}]`;
  if (value && typeof value === "object") {
    return `{${Object.keys(value)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${stableJson((value as Record<string, unknown>)[key])}`)
      .join(",")}}`;
  }
  return JSON.stringify(value);
}

/** The line `ops audit --all` writes to stderr every 500 accounts (infra/ops/cli.ts): progress, not a warning. */
const AUDIT_PROGRESS = /^audited \d+ accounts \(\d+ drifting\)…$/;

/**
 * `npm run ops -- audit --all` over a storm's table, as an operator runs it after an incident:
 * every account's balance against its ledger. Exit code 0 means no account drifted; `err` is what
 * it wrote to stderr besides its progress lines (heavy storms have thousands of accounts).
 */
export async function opsAuditAll(tableName: string): Promise<{ code: number; out: string[]; err: string[]; progress: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const progress: string[] = [];
  const code = await runOps(["audit", "--all"], { TABLE_NAME: tableName, DYNAMODB_ENDPOINT: inject("dynamoEndpoint"), USER: "storm" }, {
    out: (line) => out.push(line),
    err: (line) => (AUDIT_PROGRESS.test(line) ? progress : err).push(line),
  });
  return { code, out, err, progress };
}
