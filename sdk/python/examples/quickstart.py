"""Quickstart: push a folder of datafiles, run a Copy Pipe while showing its progress, and print
the workspace's latest ops-log events. SLUICE_ADDR and SLUICE_TOKEN say where and as whom (a
workspace token, such as the admin token `sluice workspace create` prints):

    python3 examples/quickstart.py ../testdata/project seed
"""

import itertools
import os
import sys

from sluice import Client, SluiceError
from sluice.opslog.v1 import opslog_pb2
from sluice.scheduler.v1 import scheduler_pb2

folder, pipe = sys.argv[1:3]
with Client(os.environ.get("SLUICE_ADDR", "127.0.0.1:7181"), token=os.environ.get("SLUICE_TOKEN")) as c:
    try:
        c.push_dir(folder)
    except SluiceError as e:
        for d in e.diagnostics:
            print(f"{d.position.file}:{d.position.line}:{d.position.column}: {d.message}")
        raise
    # run_copy sends a request id, and its retries reuse it: the copy runs once.
    job = c.wait(c.run_copy(pipe), on_progress=lambda j: print(
        f"job {j.id}: {scheduler_pb2.JobStatus.Name(j.status)}, {j.progress.steps_done}/{j.progress.steps_total} steps"))
    print(f"copied {job.progress.statistics.written_rows} rows")
    for ev in itertools.islice(c.events(page_size=5), 5):
        print(ev.timestamp.ToDatetime(), opslog_pb2.EventType.Name(ev.event_type), ev.datasource_name,
              opslog_pb2.Result.Name(ev.result))
