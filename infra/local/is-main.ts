import { realpathSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";

const real = (path: string) => {
  try {
    return realpathSync(path);
  } catch {
    return resolve(path);
  }
};

/**
 * Whether the module at `moduleUrl` is the script node was asked to run. Compared as real paths:
 * `import.meta.url` is percent-encoded (a space is %20) and names the symlink's target, while
 * `process.argv[1]` is the path as typed, so a string comparison of the two silently says "no"
 * in a folder with a space or behind a symlink — and a CLI would then do nothing and exit 0.
 */
export function isMain(moduleUrl: string, argv1: string | undefined = process.argv[1]): boolean {
  if (!argv1) return false;
  return real(fileURLToPath(moduleUrl)) === real(argv1);
}
