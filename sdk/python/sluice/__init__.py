"""Sluice client for Python: the v1 gRPC API (generated stubs under sluice.<service>.v1) with a
connection by address and token, pushing a folder, starting a copy or a populate and waiting on
its progress, iteration over pages, retries with the request's idempotency key, and errors as
SluiceError with their structured details."""

from sluice.client import Client, JobFailedError, read_datafiles
from sluice.errors import SluiceError

__all__ = ["Client", "JobFailedError", "SluiceError", "read_datafiles"]
