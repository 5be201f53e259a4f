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

/** Creates a workspace with the operator token; a client carrying its admin token. */
async function workspace(name: string): Promise<SluiceClient> {
  const operator = new SluiceClient(server.address, { token: server.operatorToken });
  const ws = await operator.createWorkspace(name);
  assert.equal(ws.created, true);
  assert.ok(ws.adminToken.startsWith("sluice_"));
  return new SluiceClient(server.address, { token: ws.adminToken });
}

/** Waits until secret is refused (rotated or revoked secrets stop working within moments). */
async function waitRefused(secret: string) {
  const c = new SluiceClient(server.address, { token: secret, retries: 0 });
  for (let i = 0; ; i++) {
    try {
      await c.currentToken();
    } catch (err) {
      if (err instanceof SluiceError && err.reason === "UNAUTHENTICATED") return;
      throw err;
    }
    assert.ok(i < 600, "secret still accepted 30s after rotation or revocation");
    await new Promise((r) => setTimeout(r, 50));
  }
}

before(async () => {
  server = await startServer();
  client = await workspace("sdk_ts");
});
after(async () => server?.stop());

const firstRow = async (sql: string) => {
  const resp = await client.query(sql);
  return (resp.rows[0]?.values ?? []).map((v) => String(v.kind.value)).join("|");
};

test("whole flow: push, copy retried once, populate, ops log pages, refused push", async () => {
  await assert.rejects(new SluiceClient(server.address).query("SELECT 1"), (err: unknown) => {
    assert.ok(err instanceof SluiceError);
    assert.equal(err.reason, "UNAUTHENTICATED", "no token, no answer");
    return true;
  });

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

test("tokens: create and rotate once however often retried, use, list, revoke", async () => {
  const admin = await workspace("sdk_ts_tokens");
  await admin.pushDir("../testdata/project");
  const issued = await admin.createToken("dashboard", ["JOBS:READ", "DATASOURCES:READ:events"], "reads events");
  const retried = { name: "kiosk", scopes: ["JOBS:READ"], requestId: SluiceClient.newRequestId() };
  const k1 = await admin.tokens.createToken(retried);
  const k2 = await admin.tokens.createToken(retried);
  assert.equal(k2.issued?.secret, k1.issued?.secret, "a retried CreateToken answers the same secret");
  await assert.rejects(admin.createToken("dashboard", ["JOBS:READ"]), (err: unknown) => {
    assert.ok(err instanceof SluiceError);
    assert.equal(err.reason, "ALREADY_EXISTS");
    assert.equal(err.resource?.resourceName, "dashboard");
    return true;
  });

  const dash = new SluiceClient(server.address, { token: issued.secret });
  const me = await dash.currentToken();
  assert.equal(me?.name, "dashboard");
  assert.equal(me?.workspace, "sdk_ts_tokens");
  assert.deepEqual([...(me?.scopes ?? [])].sort(), ["DATASOURCES:READ:events", "JOBS:READ"]);
  assert.equal((await dash.query("SELECT count() FROM events")).rows[0]?.values[0]?.kind.value, "0");
  await assert.rejects(dash.query("SELECT count() FROM by_kind"), (err: unknown) => {
    assert.ok(err instanceof SluiceError);
    assert.equal(err.reason, "PERMISSION_DENIED");
    return true;
  });

  const rotated = await admin.rotateToken("dashboard");
  assert.notEqual(rotated.secret, issued.secret);
  const rr = { name: "kiosk", requestId: SluiceClient.newRequestId() };
  const r1 = await admin.tokens.rotateToken(rr);
  const r2 = await admin.tokens.rotateToken(rr);
  assert.equal(r2.issued?.secret, r1.issued?.secret, "a retried RotateToken rotates once");
  await waitRefused(issued.secret);
  assert.equal((await new SluiceClient(server.address, { token: rotated.secret }).currentToken())?.name, "dashboard");

  const names: string[] = [];
  for await (const t of admin.listTokens()) names.push(t.name);
  assert.deepEqual(names, ["admin", "dashboard", "kiosk"]);
  await admin.revokeToken("dashboard");
  await waitRefused(rotated.secret);
  await assert.rejects(admin.revokeToken("dashboard"), (err: unknown) => err instanceof SluiceError && err.reason === "NOT_FOUND");
});

test("the README's quickstart runs as a user would run it", async () => {
  const operator = new SluiceClient(server.address, { token: server.operatorToken });
  const ws = await operator.createWorkspace("sdk_ts_quickstart");
  const { execFileSync } = await import("node:child_process");
  const out = execFileSync(process.execPath, ["dist/examples/quickstart.js", "../testdata/project", "seed"], {
    env: { ...process.env, SLUICE_ADDR: server.address, SLUICE_TOKEN: ws.adminToken },
    encoding: "utf8",
  });
  // The job's states, the rows, then the latest events (as many as the ops log holds yet).
  const lines = out.trim().split("\n");
  const copied = lines.indexOf("copied 100 rows");
  assert.ok(copied >= 1 && lines[copied - 1].endsWith(": DONE, 1/1 steps"), out);
  for (const l of lines.slice(copied + 1)) assert.match(l, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [A-Z_]+ \w* [A-Z]+$/, out);
});

test("ingest: rows appended once however often retried, a file streamed and replaced, a malformed request refused", async () => {
  const c = await workspace("sdk_ts_ingest");
  await c.pushDir("../testdata/project");
  const rows = '{"id": 1, "kind": "a", "ts": "2024-01-01 00:00:00"}\n{"id": 2, "kind": "b", "ts": "2024-01-01 00:00:01"}\n';
  const res = await c.append("events", rows);
  assert.equal(res.successfulRows, 2n);
  assert.ok(res.importId);
  const req = { datasource: "events", data: new TextEncoder().encode('{"id": 3, "kind": "a", "ts": "2024-01-01 00:00:02"}\n'), wait: true, requestId: SluiceClient.newRequestId() };
  const a1 = await c.ingest.append(req);
  const a2 = await c.ingest.append(req);
  assert.equal(a2.result?.importId, a1.result?.importId, "a retried Append answers the first");
  const count = async (sql: string) => (await c.query(sql)).rows[0]?.values.map((v) => String(v.kind.value)).join("|");
  assert.equal(await count("SELECT count(), sum(id) FROM events"), "3|6", "the retried rows once");

  const { mkdtempSync, writeFileSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const file = join(mkdtempSync(join(tmpdir(), "sluice-ts-")), "more.csv");
  writeFileSync(file, "id,kind,ts\n10,b,2024-01-02 00:00:00\n11,b,2024-01-02 00:00:01\n");
  assert.equal((await c.appendFile("events", file)).successfulRows, 2n);
  assert.equal(await count("SELECT count(), sum(id) FROM events"), "5|27");
  assert.equal((await c.appendFile("events", file, { replace: true })).successfulRows, 2n);
  assert.equal(await count("SELECT count(), sum(id) FROM events"), "2|21", "replaced by the file's rows");

  await assert.rejects(c.append("events", '{"id": 20, "kind": "a"}\n{"id": \n'), (err: unknown) => {
    assert.ok(err instanceof SluiceError);
    assert.equal(err.reason, "INVALID_ARGUMENT");
    assert.equal(err.fieldViolations[0]?.field, "data");
    assert.match(err.fieldViolations[0]?.description ?? "", /line 2/);
    return true;
  });
  await assert.rejects(c.append("nosuch", rows), (err: unknown) => err instanceof SluiceError && err.reason === "NOT_FOUND" && err.resource?.resourceName === "nosuch");
  assert.equal(await count("SELECT count() FROM events"), "2", "refused appends wrote nothing");
});
