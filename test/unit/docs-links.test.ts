import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

/**
 * The project owns its documents: every relative link in the README, SECURITY.md and docs/ must
 * reach a file of this repository (and, with a `#fragment`, a heading of that file), and nothing
 * may cite a document that lives outside it.
 */
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const DOCS = ["README.md", "SECURITY.md", ...readdirSync(join(ROOT, "docs")).filter((name) => name.endsWith(".md")).map((name) => `docs/${name}`)];

/** The text outside fenced code blocks and inline code: what Markdown renders as links. */
function prose(markdown: string): string {
  return markdown.replace(/^```[\s\S]*?^```/gm, "").replace(/`[^`\n]*`/g, "");
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens, repeats numbered. */
function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const [, heading] of markdown.replace(/^```[\s\S]*?^```/gm, "").matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const slug = (heading ?? "")
      .replace(/`/g, "")
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, "")
      .replace(/\s/g, "-");
    const count = seen.get(slug) ?? 0;
    seen.set(slug, count + 1);
    anchors.add(count === 0 ? slug : `${slug}-${count}`);
  }
  return anchors;
}

interface Link {
  doc: string;
  target: string;
}

function linksOf(doc: string): Link[] {
  const text = prose(readFileSync(join(ROOT, doc), "utf8"));
  return [...text.matchAll(/\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)].map((match) => ({ doc, target: match[1] ?? "" }));
}

/** Why a link is dead, or undefined when it resolves inside the repository. */
function problemOf({ doc, target }: Link): string | undefined {
  if (/^(https?:|mailto:)/.test(target)) return undefined;
  if (/^[a-z]+:/i.test(target) || target.startsWith("/")) return "not a relative link";
  const [path = "", fragment] = target.split("#", 2);
  const file = path === "" ? join(ROOT, doc) : resolve(dirname(join(ROOT, doc)), decodeURIComponent(path));
  const inside = relative(ROOT, file);
  if (inside.startsWith(`..${sep}`) || inside === "..") return "leaves the repository";
  if (!existsSync(file)) return "no such file";
  if (fragment !== undefined) {
    if (!statSync(file).isFile() || !file.endsWith(".md")) return "a fragment of something that is not a Markdown file";
    if (!anchorsOf(readFileSync(file, "utf8")).has(fragment)) return `no heading #${fragment}`;
  }
  return undefined;
}

describe("the project's documents", () => {
  it("are the README, SECURITY.md and docs/", () => {
    expect(DOCS).toEqual(expect.arrayContaining(["README.md", "SECURITY.md", "docs/invariants.md", "docs/architecture.md"]));
  });

  it("link only to files (and headings) of this repository", () => {
    const links = DOCS.flatMap(linksOf);
    expect(links.length).toBeGreaterThan(20);
    const dead = links.flatMap((link) => {
      const problem = problemOf(link);
      return problem ? [`${link.doc}: ${link.target} (${problem})`] : [];
    });
    expect(dead).toEqual([]);
  });

  it("the link check itself finds dead links, links leaving the repository and missing headings", () => {
    expect(problemOf({ doc: "README.md", target: "docs/no-such-page.md" })).toBe("no such file");
    expect(problemOf({ doc: "README.md", target: "../shared/BRIEF.md" })).toBe("leaves the repository");
    expect(problemOf({ doc: "docs/billing.md", target: "../../elsewhere.md" })).toBe("leaves the repository");
    expect(problemOf({ doc: "docs/billing.md", target: "invariants.md#no-such-heading" })).toBe("no heading #no-such-heading");
    expect(problemOf({ doc: "docs/billing.md", target: "/etc/passwd" })).toBe("not a relative link");
    expect(problemOf({ doc: "docs/billing.md", target: "#catalog" })).toBeUndefined();
    expect(problemOf({ doc: "docs/operations.md", target: "../SECURITY.md#who-can-do-what" })).toBeUndefined();
  });

  it("nothing cites the design brief that lives outside the repository", () => {
    const brief = ["DESIGN", "md"].join(".");
    const cites: string[] = [];
    const walk = (dir: string) => {
      for (const entry of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
        const path = `${dir}/${entry.name}`;
        if (entry.isDirectory()) walk(path);
        else if (/\.(ts|md)$/.test(entry.name) && readFileSync(join(ROOT, path), "utf8").includes(brief)) cites.push(path);
      }
    };
    for (const dir of ["lib", "functions", "infra", "test", "docs"]) walk(dir);
    for (const doc of ["README.md", "SECURITY.md"]) if (readFileSync(join(ROOT, doc), "utf8").includes(brief)) cites.push(doc);
    expect(cites).toEqual([]);
  });
});
