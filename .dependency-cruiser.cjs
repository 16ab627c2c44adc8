/**
 * The project's dependency rules, checked by `npm run lint` (`npm run lint:deps`: dependency-cruiser;
 * CI runs the lint). Dependencies point inward: functions and infra wire lib together, lib never
 * reaches out to them; the use cases know the ports (store interfaces) and the model, never an
 * adapter: only the wiring (the runtime modules, infra, tests) builds one. Type-only imports count
 * like any other (a cycle of types is still a cycle).
 */

/** Adapters of the ports: the DynamoDB implementations of the stores. */
const ADAPTER = "^lib/.+/dynamo-[^/]+\\.ts$";
/** The per-process wiring in lib/: the deps every function builds at cold start. */
const RUNTIME = ["^lib/runtime\\.ts$", "^lib/billing/runtime\\.ts$", "^lib/events/runtime\\.ts$"];
/** What may build an adapter: the runtime modules, infra (CDK, local stack, ops CLI), tests. */
const WIRING = [...RUNTIME, "^infra/", "^test/"];

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: "no-cycles",
      severity: "error",
      comment: "An import cycle: break it by moving what both sides need into the model or the port they share.",
      from: {},
      to: { circular: true },
    },
    {
      name: "lib-stays-inside",
      severity: "error",
      comment: "lib/ is the product: it must not import the functions, infra (CDK, local stack, ops CLI) or tests that use it.",
      from: { path: "^lib/" },
      to: { path: "^(functions|infra|test)/" },
    },
    {
      name: "client-stands-alone",
      severity: "error",
      comment:
        "@creditgate/client (client/) is published on its own: it knows the server only through openapi.json's " +
        "generated types, never by importing lib/, functions/, infra/ or test/.",
      from: { path: "^client/" },
      to: { path: "^(lib|functions|infra|test)/" },
    },
    {
      name: "functions-are-thin",
      severity: "error",
      comment: "A function wires lib/ to its event; it never imports infra/ or test/.",
      from: { path: "^functions/" },
      to: { path: "^(infra|test)/" },
    },
    {
      name: "adapters-only-from-wiring",
      severity: "error",
      comment:
        "Use cases (and barrels, functions) work through the store ports: only the wiring (lib/runtime.ts, " +
        "lib/billing/runtime.ts, infra/, test/) and an adapter's own helpers (dynamo-*.ts) may import a dynamo-*.ts adapter.",
      from: { pathNot: [ADAPTER, ...WIRING] },
      to: { path: ADAPTER },
    },
    {
      name: "dynamodb-sdk-only-in-adapters",
      severity: "error",
      comment:
        "The DynamoDB SDK belongs to the adapters (dynamo-*.ts), the item helpers (lib/dynamo/), the wiring, " +
        "the table creation and the ops scans: a use case that needs it needs a port method instead.",
      from: {
        path: "^(lib|functions)/",
        pathNot: [ADAPTER, "^lib/dynamo/", ...RUNTIME, "^lib/ledger/create-table\\.ts$", "^lib/ops/"],
      },
      to: { path: "^node_modules/@aws-sdk/(client|util)-dynamodb/" },
    },
  ],
  options: {
    // the project's own modules: what lib/, functions/, infra/ and test/ import of each other
    includeOnly: { path: ["^(lib|functions|infra|test|client)/", "^node_modules/@aws-sdk/(client|util)-dynamodb/"] },
    doNotFollow: { path: "node_modules" },
    exclude: { path: ["^cdk\\.out/", "^dist/", "^client/dist/", "^test-results/"] },
    tsConfig: { fileName: "tsconfig.json" },
    // type-only imports are dependencies too: `import type` cycles are reported
    tsPreCompilationDeps: true,
    enhancedResolveOptions: {
      exportsFields: ["exports"],
      conditionNames: ["import", "require", "node", "default", "types"],
      extensions: [".ts", ".js", ".json"],
    },
    moduleSystems: ["es6", "cjs"],
  },
};
