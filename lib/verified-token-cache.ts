/**
 * Tokens this container has already verified, so a user's next call in a warm container skips the
 * signature check (HS256 through WebCrypto runs on libuv's thread pool: about half a millisecond
 * alone, ten under sixteen concurrent calls in one process). Hand-written rather than a cache
 * library: a bounded Map in insertion order is all it needs.
 *
 * Only successes are kept, under the whole token string (so any changed byte misses), and a hit
 * counts only while the token's own `exp` has not passed and for at most `MAX_AGE_MS` after it was
 * verified — a key rotated out of the issuer's JWKS stops being honoured within that time.
 */
export const VERIFIED_TOKEN_MAX_AGE_MS = 60_000;
const MAX_ENTRIES = 500;

export class VerifiedTokenCache<T> {
  private readonly entries = new Map<string, { value: T; usableUntil: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  get(token: string): T | undefined {
    const entry = this.entries.get(token);
    if (entry === undefined) return undefined;
    if (this.now() < entry.usableUntil) return entry.value;
    this.entries.delete(token);
    return undefined;
  }

  /** `expiresAtSeconds`: the token's `exp` claim (required by the verifier). */
  set(token: string, value: T, expiresAtSeconds: number): void {
    const usableUntil = Math.min(expiresAtSeconds * 1000, this.now() + VERIFIED_TOKEN_MAX_AGE_MS);
    if (!(usableUntil > this.now())) return;
    this.entries.delete(token);
    this.entries.set(token, { value, usableUntil });
    // the oldest verified first out: a container serves few users at a time
    if (this.entries.size > MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value as string);
  }

  get size(): number {
    return this.entries.size;
  }
}
