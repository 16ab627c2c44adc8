import type { BuildOptions } from "esbuild";

/**
 * The one set of esbuild options for every Lambda bundle. `infra/build.ts` (dist/ bundles, the
 * bundle tests) passes them to esbuild's API; `infra/house-function.ts` maps them to
 * NodejsFunction's options, so what the tests load is built exactly like what `cdk deploy` ships.
 * Plain data, no CDK import: build.ts stays fast to load.
 */
export const LAMBDA_ESBUILD_OPTIONS = {
  bundle: true,
  platform: "node",
  format: "esm",
  // Lambda nodejs24.x
  target: "node24",
  minify: true,
  sourcemap: true,
  // Prefer the ESM builds of dependencies (smaller, tree-shaken).
  mainFields: ["module", "main"],
  // CommonJS inside an ESM bundle (parts of the AWS SDK) still calls require.
  banner: { js: "import { createRequire } from 'module'; const require = createRequire(import.meta.url);" },
  // Nothing external: the AWS SDK is bundled too, so Lambda runs exactly the SDK version we tested.
  external: [],
} satisfies BuildOptions;
