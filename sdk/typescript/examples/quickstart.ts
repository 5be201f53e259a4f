// Quickstart pushes a folder of datafiles, runs a Copy Pipe while showing its progress, and
// prints the workspace's latest ops-log events. SLUICE_ADDR and SLUICE_TOKEN say where and as
// whom (a workspace token, such as the admin token `sluice workspace create` prints):
//
//   npm run build && node dist/examples/quickstart.js ../testdata/project seed
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { SluiceClient, SluiceError } from "../src/index.js";
import { EventType, Result } from "../src/gen/sluice/opslog/v1/opslog_pb.js";
import { JobStatus } from "../src/gen/sluice/scheduler/v1/scheduler_pb.js";

const [folder, pipe] = process.argv.slice(2);
const c = new SluiceClient(process.env.SLUICE_ADDR ?? "127.0.0.1:7181", { token: process.env.SLUICE_TOKEN });
try {
  await c.pushDir(folder);
} catch (e) {
  if (e instanceof SluiceError) for (const d of e.diagnostics) console.log(`${d.position?.file}:${d.position?.line}:${d.position?.column}: ${d.message}`);
  throw e;
}
// runCopy sends a request id, and its retries reuse it: the copy runs once.
const job = await c.wait(await c.runCopy({ pipe }), (j) =>
  console.log(`job ${j.id}: ${JobStatus[j.status]}, ${j.progress?.stepsDone}/${j.progress?.stepsTotal} steps`),
);
console.log(`copied ${job.progress?.statistics?.writtenRows ?? 0n} rows`);
let n = 0;
for await (const ev of c.events({ pageSize: 5 })) {
  console.log(ev.timestamp && timestampDate(ev.timestamp).toISOString(), EventType[ev.eventType], ev.datasourceName, Result[ev.result]);
  if (++n === 5) break;
}
