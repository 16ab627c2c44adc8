import { readdirSync } from "node:fs";
import { join, parse, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build, type Metafile } from "esbuild";
import { LAMBDA_ESBUILD_OPTIONS } from "./bundling.js";
import { isMain } from "./local/is-main.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
export const FUNCTIONS_DIR = join(ROOT, "functions");
export const DEFAULT_OUTDIR = join(ROOT, "dist", "functions");

/** Each .ts file directly in functions/ is one Lambda; its name is the bundle's name. */
export function functionEntries(dir = FUNCTIONS_DIR): Record<string, string> {
  return Object.fromEntries(
    readdirSync(dir)
      .filter((file) => file.endsWith(".ts") && !file.endsWith(".d.ts"))
      .map((file) => [parse(file).name, join(dir, file)]),
  );
}

export interface BuiltFunction {
  name: string;
  /** absolute path of the .mjs bundle; the Lambda handler is `<name>.handler` */
  file: string;
}

/**
 * Bundles every function for Lambda nodejs24.x: ESM, minified, with source maps, everything
 * inlined (the AWS SDK too, so the bundle runs exactly the SDK version we tested).
 */
export async function bundleFunctions(
  outdir = DEFAULT_OUTDIR,
  entries = functionEntries(),
): Promise<{ functions: BuiltFunction[]; metafile: Metafile }> {
  const result = await build({
    ...LAMBDA_ESBUILD_OPTIONS,
    entryPoints: entries,
    outdir,
    outExtension: { ".js": ".mjs" },
    metafile: true,
    logLevel: "warning",
  });
  const functions = Object.keys(entries).map((name) => ({ name, file: resolve(outdir, `${name}.mjs`) }));
  return { functions, metafile: result.metafile };
}

// `tsx infra/build.ts [outdir]` builds into dist/functions (or outdir).
if (isMain(import.meta.url)) {
  const { functions } = await bundleFunctions(process.argv[2] ? resolve(process.argv[2]) : DEFAULT_OUTDIR);
  for (const fn of functions) console.log(`built ${fn.name} -> ${fn.file}`);
}
