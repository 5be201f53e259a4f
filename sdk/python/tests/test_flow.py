"""The whole flow through the SDK against a real sluiced."""

import os
import time

import pytest

from sluice import Client, SluiceError
from sluice.client import new_request_id
from sluice.common.v1 import common_pb2
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


def test_whole_flow(server_address):
    with Client(server_address, workspace="sdk_py") as c:
        c.create_workspace("sdk_py")
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
