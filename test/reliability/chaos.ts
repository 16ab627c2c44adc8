/**
 * "The Lambda was killed between two steps": a store wrapper whose chosen methods, while enabled,
 * sometimes end the invocation right before or right after their write. A kill is an error no
 * layer handles (not retryable, not an AppError), so nothing after it in the use case runs, as
 * when the process dies; the caller (the chat backend, the user's browser, Stripe) sees a 5xx
 * and tries again.
 */
export class LambdaKilled extends Error {
  constructor(point: string) {
    super(`Lambda killed ${point}`);
    this.name = "LambdaKilled";
  }
}

export type KillPoint = "before" | "after";

export interface KillSwitch {
  enabled: boolean;
  rate: number;
  random: () => number;
  /** kills by `<store>.<method>:<before|after>` */
  counts: Map<string, number>;
  /** points whose next calls are killed whatever the dice say (so each named point is exercised) */
  forced?: Map<string, number>;
}

// biome-ignore lint/suspicious/noExplicitAny: wraps arbitrary store methods
type AnyFn = (...args: any[]) => Promise<any>;

export function killable<T extends object>(label: string, target: T, points: Partial<Record<keyof T, KillPoint>>, killSwitch: KillSwitch): T {
  const wrapped = { ...target } as T;
  for (const [name, point] of Object.entries(points) as [keyof T & string, KillPoint][]) {
    const method = target[name] as unknown as AnyFn;
    const id = `${label}.${name}:${point}`;
    (wrapped as Record<string, AnyFn>)[name] = async (...args) => {
      const forced = killSwitch.forced?.get(id) ?? 0;
      if (!killSwitch.enabled || (forced === 0 && killSwitch.random() >= killSwitch.rate)) return method(...args);
      if (forced > 0) killSwitch.forced?.set(id, forced - 1);
      killSwitch.counts.set(id, (killSwitch.counts.get(id) ?? 0) + 1);
      if (point === "after") await method(...args);
      throw new LambdaKilled(`${point} ${label}.${name}`);
    };
  }
  return wrapped;
}
