import { type SQSClient, SendMessageBatchCommand } from "@aws-sdk/client-sqs";
import type { TopUpJob } from "./model.js";

/** Where the stream consumer hands top-up jobs (SQS when deployed, the local stand-in otherwise). */
export interface TopUpQueue {
  enqueue(jobs: readonly TopUpJob[]): Promise<void>;
}

/** SendMessageBatch, 10 at a time; whatever SQS refuses throws, so the stream delivers the batch again (jobs are idempotent). */
export function sqsTopUpQueue(client: SQSClient, queueUrl: string): TopUpQueue {
  return {
    async enqueue(jobs) {
      for (let start = 0; start < jobs.length; start += 10) {
        const batch = jobs.slice(start, start + 10);
        const result = await client.send(
          new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: batch.map((job, index) => ({ Id: String(index), MessageBody: JSON.stringify(job) })) }),
        );
        if (result.Failed?.length) throw new Error(`SQS refused ${result.Failed.length} top-up jobs: ${result.Failed[0]?.Message ?? "unknown"}`);
      }
    },
  };
}
