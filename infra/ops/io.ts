/** Where an ops command writes: results to `out`, progress and problems to `err` (the CLI's stdout and stderr; a test's arrays). */
export interface OpsIo {
  out: (line: string) => void;
  err: (line: string) => void;
}
