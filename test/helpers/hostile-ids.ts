import fc from "fast-check";

/**
 * Ids an attacker picks, by class (see SECURITY.md): the names every JavaScript object answers
 * for, look-alikes of them and of each other, and the boundaries of the id grammar
 * (lib/ledger/validation.ts: 1–128 of letters, digits and `._@|:+=-`).
 */
export const PROTOTYPE_NAMES = [
  "__proto__",
  "constructor",
  "prototype",
  "toString",
  "valueOf",
  "hasOwnProperty",
  "isPrototypeOf",
  "propertyIsEnumerable",
  "toLocaleString",
  "__defineGetter__",
  "__defineSetter__",
  "__lookupGetter__",
  "__lookupSetter__",
] as const;

/** Within the grammar: case and punctuation variants that must be distinct ids, never the same key. */
export const GRAMMAR_LOOKALIKES = ["__PROTO__", "__proto__.", "_proto_", "__proto", "Constructor", "constructor.", "toString:", "=valueOf"];

/** Outside the grammar (refused with 400 before anything is written): confusables and odd whitespace. */
export const REFUSED_LOOKALIKES = [
  "＿＿proto＿＿", // fullwidth low lines
  "\u0441onstructor", // Cyrillic es
  "__proto__\u200b", // zero-width space
  "toString\u00a0", // no-break space
  " __proto__",
  "",
  "a".repeat(129),
];

export const LONGEST_ID = "z".repeat(128);

/** Any valid id an attacker might choose (prototype names and look-alikes much more often than chance). */
export function hostileIdArbitrary(): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...PROTOTYPE_NAMES) },
    { weight: 2, arbitrary: fc.constantFrom(...GRAMMAR_LOOKALIKES, LONGEST_ID, "a", "0") },
    { weight: 1, arbitrary: fc.stringMatching(/^[A-Za-z0-9._@|:+=-]{1,128}$/) },
  );
}
