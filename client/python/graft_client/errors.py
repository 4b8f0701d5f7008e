"""graft's errors as exceptions carrying the gRPC status code and message."""
import grpc


class GraftError(Exception):
    """A call graftd refused or could not answer.

    code: the grpc.StatusCode; message: graftd's message, which names what was
    wrong and the limit (flag) that applies.
    """

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class InvalidArgument(GraftError):
    pass


class NotFound(GraftError):
    pass


class AlreadyExists(GraftError):
    pass


class PermissionDenied(GraftError):
    pass


class Unauthenticated(GraftError):
    pass


class ResourceExhausted(GraftError):
    pass


class FailedPrecondition(GraftError):
    pass


class Unavailable(GraftError):
    pass


class DeadlineExceeded(GraftError):
    pass


class Cancelled(GraftError):
    pass


_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
}


def from_rpc_error(error: grpc.RpcError) -> GraftError:
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    return _BY_CODE.get(code, GraftError)(code, details or "")
