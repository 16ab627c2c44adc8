import { en } from "zod/locales";
import { config } from "zod/mini";

/**
 * English zod issue messages ("Invalid input: expected string, received undefined", "Too small:
 * expected string to have >=1 characters", …). Classic `zod` installs them on first use; `zod/mini`
 * (which we use for its small bundle) does not, and would say only "Invalid input". Our
 * ValidationError messages, config errors and logs quote these messages, so every module that
 * builds a zod/mini schema imports this module: no schema can be parsed before the locale is set.
 * As in classic zod, a locale someone configured explicitly is kept.
 */
if (!config().localeError) config(en());
