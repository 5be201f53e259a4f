"""SluiceError: an error a Sluice call returned, with its details (see
proto/sluice/common/v1/errors.proto)."""

import os

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from sluice.common.v1 import common_pb2

# google.rpc.Status and its details, from a descriptor set shipped with the package, in a pool
# of their own: nothing is registered globally, so googleapis-common-protos may be installed too.
_pool = descriptor_pool.DescriptorPool()
with open(os.path.join(os.path.dirname(__file__), "_rpc_descriptors.binpb"), "rb") as f:
    _fds = descriptor_pb2.FileDescriptorSet.FromString(f.read())
for _fd in _fds.file:
    _pool.Add(_fd)


def _cls(name):
    desc = _pool.FindMessageTypeByName(name)
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(_pool).GetPrototype(desc)


Status = _cls("google.rpc.Status")
ErrorInfo = _cls("google.rpc.ErrorInfo")
BadRequest = _cls("google.rpc.BadRequest")
ResourceInfo = _cls("google.rpc.ResourceInfo")
RetryInfo = _cls("google.rpc.RetryInfo")

_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED}


class SluiceError(Exception):
    """An error a Sluice call returned.

    code: grpc.StatusCode; reason: the stable reason ("NOT_FOUND", "INVALID_DATAFILE", ...);
    message; metadata: ErrorInfo metadata; field_violations: [(field, description)];
    diagnostics: [sluice.common.v1.Diagnostic] (file, line, column, code); resource: (type,
    name) or None; retry_delay: seconds to wait before retrying, None when a retry will not help.
    """

    def __init__(self, code, message, reason="", metadata=None, field_violations=(), diagnostics=(), resource=None, retry_delay=None):
        super().__init__(f"{message} ({reason})")
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata or {})
        self.field_violations = list(field_violations)
        self.diagnostics = list(diagnostics)
        self.resource = resource
        self.retry_delay = retry_delay

    @property
    def retryable(self):
        return self.retry_delay is not None

    @classmethod
    def from_rpc_error(cls, err):
        """Reads the status details of a grpc.RpcError."""
        code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
        message = err.details() if hasattr(err, "details") else str(err)
        reason, metadata, fields, diags, resource, retry = code.name, {}, [], [], None, None
        for key, value in (err.trailing_metadata() or ()) if hasattr(err, "trailing_metadata") else ():
            if key != "grpc-status-details-bin":
                continue
            status = Status.FromString(value)
            for any_ in status.details:
                type_name = any_.type_url.split("/")[-1]
                if type_name == "google.rpc.ErrorInfo":
                    info = ErrorInfo.FromString(any_.value)
                    reason, metadata = info.reason, dict(info.metadata)
                elif type_name == "google.rpc.BadRequest":
                    fields += [(v.field, v.description) for v in BadRequest.FromString(any_.value).field_violations]
                elif type_name == "sluice.common.v1.Diagnostic":
                    diags.append(common_pb2.Diagnostic.FromString(any_.value))
                elif type_name == "google.rpc.ResourceInfo":
                    r = ResourceInfo.FromString(any_.value)
                    resource = (r.resource_type, r.resource_name)
                elif type_name == "google.rpc.RetryInfo":
                    d = RetryInfo.FromString(any_.value).retry_delay
                    retry = d.seconds + d.nanos / 1e9
        if retry is None and code in _RETRYABLE:
            retry = 0.2
        return cls(code, message, reason, metadata, fields, diags, resource, retry)
