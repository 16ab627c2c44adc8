import type { AutoTopUpState } from "./model.js";
import type { AccountMirror } from "./rules.js";

/** The user's auto top-up item, read and written whole under a version (compare-and-swap). */
export interface StoredTopUp {
  state: AutoTopUpState;
  version: number;
}

export interface TopUpStore {
  get(userId: string): Promise<StoredTopUp | undefined>;
  /**
   * Writes `state` if the stored version is still `expectedVersion` (0: no item yet); false when
   * another write came first. With `mirror`, what the account item carries for the change stream
   * (`autoTopUpBelow`, `autoTopUpWaiting`; absent fields are removed) is written in the same
   * transaction, and the account must exist.
   */
  save(userId: string, state: AutoTopUpState, expectedVersion: number, mirror?: AccountMirror): Promise<boolean>;
}
