"""The whole flow through the SDK against a real sluiced."""

import os
import re
import subprocess
import sys
import time

import pytest

from sluice import Client, SluiceError
from sluice.client import new_request_id
from sluice.catalog.v1 import tokens_pb2
from sluice.common.v1 import common_pb2
from sluice.ingest.v1 import ingest_pb2
from sluice.opslog.v1 import opslog_pb2
from sluice.scheduler.v1 import scheduler_pb2

HERE = os.path.dirname(__file__)
PROJECT = os.path.join(HERE, "..", "..", "testdata", "project")
INVALID = os.path.join(HERE, "..", "..", "testdata", "invalid")


def first_row(client, sql):
    rows = client.query(sql).rows
    if not rows:
        return ""
    out = []
    for v in rows[0].values:
        kind = v.WhichOneof("kind")
        out.append(str(getattr(v, kind)) if kind != "number_value" else ("%g" % v.number_value))
    return "|".join(out)


def workspace(server, name):
    """Creates a workspace with the operator token; a client carrying its admin token."""
    with Client(server.address, token=server.operator_token) as operator:
        ws = operator.create_workspace(name)
    assert ws.created and ws.admin_token.startswith("sluice_")
    return Client(server.address, token=ws.admin_token)


def wait_refused(server, secret):
    """Waits until secret is refused (rotated or revoked secrets stop working within moments)."""
    with Client(server.address, token=secret, retries=0) as c:
        deadline = time.monotonic() + 30
        while True:
            try:
                c.current_token()
            except SluiceError as e:
                if e.reason == "UNAUTHENTICATED":
                    return
                raise
            assert time.monotonic() < deadline, "secret still accepted 30s after rotation or revocation"
            time.sleep(0.05)


def test_whole_flow(server):
    with Client(server.address) as anonymous, pytest.raises(SluiceError) as no_token:
        anonymous.query("SELECT 1")
    assert no_token.value.reason == "UNAUTHENTICATED"
    with workspace(server, "sdk_py") as c:
        push = c.push_dir(PROJECT)
        assert push.applied and len(push.actions) == 4

        # The copy, then the same request again, as a client retrying after a timeout would.
        request_id = new_request_id()
        job = c.run_copy("seed", parameters={"rows": "100"}, request_id=request_id)
        again = c.run_copy("seed", parameters={"rows": "100"}, request_id=request_id)
        assert again.id == job.id
        states = []
        done = c.wait(job, on_progress=lambda j: states.append(j.status))
        assert done.status == scheduler_pb2.JOB_STATUS_DONE and states[-1] == scheduler_pb2.JOB_STATUS_DONE
        copies = list(c.jobs(page_size=1, kinds=[scheduler_pb2.JOB_KIND_COPY]))
        assert [j.request_id for j in copies] == [request_id]
        assert first_row(c, "SELECT count(), sum(id) FROM events") == "100|4950"  # one write

        pop = c.populate("by_kind_mv", truncate=True)
        c.wait(pop)
        assert first_row(c, "SELECT kind, sum(n) FROM by_kind GROUP BY kind ORDER BY kind") == "a|50"

        # The ops log, two events a page: every event once, newest first.
        for _ in range(600):
            everything = list(c.events(page_size=1000))
            kinds = {e.event_type for e in everything}
            if opslog_pb2.EVENT_TYPE_COPY in kinds and opslog_pb2.EVENT_TYPE_POPULATEVIEW in kinds:
                break
            time.sleep(0.1)
        paged = list(c.events(page_size=2))
        assert len(everything) >= 3
        assert [e.id for e in paged] == [e.id for e in everything]
        stamps = [e.timestamp.ToNanoseconds() for e in paged]
        assert stamps == sorted(stamps, reverse=True)

        with pytest.raises(SluiceError) as refused:
            c.push_dir(INVALID)
        assert refused.value.reason == "INVALID_DATAFILE"
        d = refused.value.diagnostics[0]
        assert d.position.file == "broken.pipe" and d.position.line >= 1 and d.position.column >= 1
        assert d.code != common_pb2.DIAGNOSTIC_CODE_UNSPECIFIED

        with pytest.raises(SluiceError) as bad_mode:
            c.run_copy("seed", mode=99)
        assert bad_mode.value.reason == "INVALID_ARGUMENT"
        assert bad_mode.value.field_violations[0][0] == "mode"
        assert "COPY_MODE_APPEND" in bad_mode.value.field_violations[0][1]


def test_tokens(server):
    with workspace(server, "sdk_py_tokens") as admin:
        admin.push_dir(PROJECT)
        issued = admin.create_token("dashboard", ["JOBS:READ", "DATASOURCES:READ:events"], "reads events")
        retried = tokens_pb2.CreateTokenRequest(name="kiosk", scopes=["JOBS:READ"], request_id=new_request_id())
        k1 = admin.tokens.CreateToken(retried, metadata=admin.metadata)
        k2 = admin.tokens.CreateToken(retried, metadata=admin.metadata)
        assert k2.issued.secret == k1.issued.secret  # a retried CreateToken answers the same secret
        with pytest.raises(SluiceError) as taken:
            admin.create_token("dashboard", ["JOBS:READ"])
        assert taken.value.reason == "ALREADY_EXISTS" and taken.value.resource == ("token", "dashboard")

        with Client(server.address, token=issued.secret) as dash:
            me = dash.current_token()
            assert (me.name, me.workspace, sorted(me.scopes)) == ("dashboard", "sdk_py_tokens", ["DATASOURCES:READ:events", "JOBS:READ"])
            assert first_row(dash, "SELECT count() FROM events") == "0"
            with pytest.raises(SluiceError) as denied:
                dash.query("SELECT count() FROM by_kind")
            assert denied.value.reason == "PERMISSION_DENIED"

        rotated = admin.rotate_token("dashboard")
        assert rotated.secret != issued.secret
        rr = tokens_pb2.RotateTokenRequest(name="kiosk", request_id=new_request_id())
        r1 = admin.tokens.RotateToken(rr, metadata=admin.metadata)
        r2 = admin.tokens.RotateToken(rr, metadata=admin.metadata)
        assert r2.issued.secret == r1.issued.secret  # a retried RotateToken rotates once
        wait_refused(server, issued.secret)
        with Client(server.address, token=rotated.secret) as fresh:
            assert fresh.current_token().name == "dashboard"

        assert [t.name for t in admin.list_tokens()] == ["admin", "dashboard", "kiosk"]
        admin.revoke_token("dashboard")
        wait_refused(server, rotated.secret)
        with pytest.raises(SluiceError) as gone:
            admin.revoke_token("dashboard")
        assert gone.value.reason == "NOT_FOUND"


def test_quickstart(server):
    """The README's program, run as a user would run it."""
    with Client(server.address, token=server.operator_token) as operator:
        ws = operator.create_workspace("sdk_py_quickstart")
    sdk = os.path.join(HERE, "..")
    out = subprocess.run([sys.executable, os.path.join(sdk, "examples", "quickstart.py"), PROJECT, "seed"], check=True,
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": sdk, "SLUICE_ADDR": server.address, "SLUICE_TOKEN": ws.admin_token}).stdout
    # The job's states, the rows, then the latest events (as many as the ops log holds yet).
    lines = out.strip().split("\n")
    copied = lines.index("copied 100 rows")
    assert copied >= 1 and lines[copied - 1].endswith(": JOB_STATUS_DONE, 1/1 steps"), out
    for line in lines[copied + 1:]:
        assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? EVENT_TYPE_[A-Z_]+ \w* RESULT_[A-Z]+$", line), out


def test_ingest(server, tmp_path):
    with workspace(server, "sdk_py_ingest") as c:
        c.push_dir(PROJECT)
        rows = '{"id": 1, "kind": "a", "ts": "2024-01-01 00:00:00"}\n{"id": 2, "kind": "b", "ts": "2024-01-01 00:00:01"}\n'
        res = c.append("events", rows)
        assert res.successful_rows == 2 and res.import_id
        # The same request sent twice, as the SDK's retries send it: the rows once.
        req = ingest_pb2.AppendRequest(datasource="events", data=b'{"id": 3, "kind": "a", "ts": "2024-01-01 00:00:02"}\n', wait=True,
                                       request_id=new_request_id())
        a1 = c.ingest.Append(req, metadata=c.metadata)
        a2 = c.ingest.Append(req, metadata=c.metadata)
        assert a2.result.import_id == a1.result.import_id
        assert first_row(c, "SELECT count(), sum(id) FROM events") == "3|6"

        more = tmp_path / "more.csv"
        more.write_text("id,kind,ts\n10,b,2024-01-02 00:00:00\n11,b,2024-01-02 00:00:01\n")
        assert c.append_file("events", str(more)).successful_rows == 2
        assert first_row(c, "SELECT count(), sum(id) FROM events") == "5|27"
        assert c.append_file("events", str(more), replace=True).successful_rows == 2
        assert first_row(c, "SELECT count(), sum(id) FROM events") == "2|21"  # replaced by the file's rows

        with pytest.raises(SluiceError) as malformed:
            c.append("events", '{"id": 20, "kind": "a"}\n{"id": \n')
        assert malformed.value.reason == "INVALID_ARGUMENT"
        assert malformed.value.field_violations[0][0] == "data" and "line 2" in malformed.value.field_violations[0][1]
        with pytest.raises(SluiceError) as missing:
            c.append("nosuch", rows)
        assert missing.value.reason == "NOT_FOUND" and missing.value.resource == ("datasource", "nosuch")
        assert first_row(c, "SELECT count() FROM events") == "2"  # refused appends wrote nothing
