import { beforeAll } from "vitest";

/**
 * A test file's (or describe block's) fixture, made once in `beforeAll`, as a value the file can
 * name from its first line: a view that forwards to the fixture once `beforeAll` made it (reading
 * it earlier throws, naming `name`). Fixtures made this way run in the order they were declared.
 */
export function useFixture<T extends object>(name: string, create: () => Promise<T>): T {
  let fixture: T | undefined;
  beforeAll(async () => {
    fixture = await create();
  });
  return new Proxy({} as T, {
    get(_, key) {
      if (!fixture) throw new Error(`${name}: the fixture is made in beforeAll; use it inside tests and hooks`);
      return Reflect.get(fixture, key);
    },
  });
}
