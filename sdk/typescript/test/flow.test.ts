// The whole flow through the SDK against a real sluiced.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { SluiceClient, SluiceError } from "../src/index.js";
import { CopyMode } from "../src/gen/sluice/common/v1/common_pb.js";
import { EventType } from "../src/gen/sluice/opslog/v1/opslog_pb.js";
import { JobKind, JobStatus } from "../src/gen/sluice/scheduler/v1/scheduler_pb.js";
import { startServer, type Server } from "./server.js";

let server: Server;
let client: SluiceClient;
before(async () => {
  server = await startServer();
  client = new SluiceClient(server.address, { workspace: "sdk_ts" });
  await client.createWorkspace("sdk_ts");
});
after(async () => server?.stop());

const firstRow = async (sql: string) => {
  const resp = await client.query(sql);
  return (resp.rows[0]?.values ?? []).map((v) => String(v.kind.value)).join("|");
};

test("whole flow: push, copy retried once, populate, ops log pages, refused push", async () => {
  const push = await client.pushDir("../testdata/project");
  assert.equal(push.applied, true);
  assert.equal(push.actions.length, 4);

  const requestId = SluiceClient.newRequestId();
  const job = await client.runCopy({ pipe: "seed", parameters: { rows: "100" }, requestId });
  const again = await client.runCopy({ pipe: "seed", parameters: { rows: "100" }, requestId });
  assert.equal(again.id, job.id, "a retry with the same request id returns the first job");
  const states: JobStatus[] = [];
  const done = await client.wait(job, (j) => states.push(j.status));
  assert.equal(done.status, JobStatus.DONE);
  assert.equal(states.at(-1), JobStatus.DONE);
  const copies = [];
  for await (const j of client.jobs({ kinds: [JobKind.COPY], pageSize: 1 })) copies.push(j);
  assert.equal(copies.length, 1);
  assert.equal(copies[0].requestId, requestId);
  assert.equal(await firstRow("SELECT count(), sum(id) FROM events"), "100|4950", "one write");

  const pop = await client.populate({ pipe: "by_kind_mv", options: { truncate: true } });
  await client.wait(pop);
  assert.equal(await firstRow("SELECT kind, sum(n) FROM by_kind GROUP BY kind ORDER BY kind"), "a|50");

  // Ops log: two events a page, each once, newest first.
  let all: string[] = [];
  for (let i = 0; i < 600; i++) {
    const evs = [];
    for await (const ev of client.events({ pageSize: 1000 })) evs.push(ev);
    all = evs.map((e) => e.id);
    if (evs.some((e) => e.eventType === EventType.COPY) && evs.some((e) => e.eventType === EventType.POPULATEVIEW)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const paged: string[] = [];
  let prev = Infinity;
  for await (const ev of client.events({ pageSize: 2 })) {
    const ms = Number(ev.timestamp!.seconds) * 1000 + ev.timestamp!.nanos / 1e6;
    assert.ok(ms <= prev, "newest first");
    prev = ms;
    paged.push(ev.id);
  }
  assert.ok(all.length >= 3);
  assert.deepEqual(paged, all, "pages of two hold every event once, in order");

  await assert.rejects(client.pushDir("../testdata/invalid"), (err: unknown) => {
    assert.ok(err instanceof SluiceError);
    assert.equal(err.reason, "INVALID_DATAFILE");
    const d = err.diagnostics[0];
    assert.equal(d.position?.file, "broken.pipe");
    assert.ok((d.position?.line ?? 0) >= 1 && (d.position?.column ?? 0) >= 1);
    assert.ok(d.code !== 0);
    return true;
  });
  await assert.rejects(client.runCopy({ pipe: "seed", mode: 99 as CopyMode }), (err: unknown) => {
    assert.ok(err instanceof SluiceError);
    assert.equal(err.reason, "INVALID_ARGUMENT");
    assert.equal(err.fieldViolations[0]?.field, "mode");
    assert.match(err.fieldViolations[0]?.description ?? "", /COPY_MODE_APPEND/);
    return true;
  });
});
