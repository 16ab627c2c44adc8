import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

/**
 * The hand-made Stripe fixtures (test/fixtures/stripe/*.json) carry every field Stripe's official
 * object of the same resource carries (fixtures3.json, see NOTICE.md): the event's `data.object`
 * at the top level, and each line of an invoice. They may carry more (fields of the pinned API
 * version the official file lacks), never fewer, so they cannot drift into shapes Stripe never sends.
 */
const dir = new URL("../fixtures/stripe/", import.meta.url);
// biome-ignore lint/suspicious/noExplicitAny: fixtures are arbitrary JSON
const read = (file: string): any => JSON.parse(readFileSync(new URL(file, dir), "utf8"));
// biome-ignore lint/suspicious/noExplicitAny: fixtures are arbitrary JSON
const resources: Record<string, any> = read("fixtures3.json").resources;
const handMade = readdirSync(dir).filter((file) => file.endsWith(".json") && file !== "fixtures3.json");

/** The official object's keys that `object` lacks. */
const missing = (official: object, object: object) => Object.keys(official).filter((key) => !(key in object));

describe("hand-made Stripe fixtures carry every field of Stripe's official object", () => {
  it("there are hand-made fixtures, each of a resource the official file has", () => {
    expect(handMade.length).toBeGreaterThanOrEqual(15);
    for (const file of handMade) expect(resources[read(file).data.object.object], file).toBeDefined();
  });

  it.each(handMade)("%s: data.object", (file) => {
    const object = read(file).data.object;
    expect(missing(resources[object.object], object)).toEqual([]);
  });

  it.each(handMade.filter((file) => read(file).data.object.object === "invoice"))("%s: every line item", (file) => {
    const lines = read(file).data.object.lines.data;
    expect(lines.length).toBeGreaterThan(0);
    const [officialLine] = resources.invoice.lines.data;
    for (const line of lines) expect(missing(officialLine, line)).toEqual([]);
  });
});
