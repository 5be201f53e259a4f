"""Starts a real sluiced for the suite: SLUICED names the binary, SLUICE_CHDB_LIB libchdb.so."""

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


class Server:
    """A running sluiced: its gRPC address and its operator token (which the catalog writes to
    <data dir>/token on first start)."""

    def __init__(self, address, operator_token):
        self.address = address
        self.operator_token = operator_token


@pytest.fixture(scope="session")
def server():
    binary, lib = os.environ.get("SLUICED"), os.environ.get("SLUICE_CHDB_LIB")
    if not binary or not lib:
        pytest.fail("set SLUICED (the sluiced binary) and SLUICE_CHDB_LIB (libchdb.so); `make test-sdk` does")
    data = tempfile.mkdtemp(prefix="sluice-py-")
    proc = subprocess.Popen([binary, "-target=all", "-data-dir", data, "-grpc-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0",
                             "-log-format", "json", "-clickhouse-embedded-lib", lib],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    found, lines = queue.Queue(), []

    def read():
        for line in proc.stderr:
            if len(lines) < 200:
                lines.append(line)
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("msg") == "sluiced ready":
                found.put(rec["grpc_addr"])

    threading.Thread(target=read, daemon=True).start()
    try:
        address = found.get(timeout=120)
    except queue.Empty:
        proc.kill()
        pytest.fail("sluiced not ready within 2 minutes:\n" + "".join(lines))
    with open(os.path.join(data, "token"), encoding="utf-8") as f:
        operator_token = f.read().strip()
    yield Server(address, operator_token)
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    shutil.rmtree(data, ignore_errors=True)
