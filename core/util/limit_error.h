#pragma once

// Refusals because a request or the server reached one of graftd's limits.
// The message is for people and names the flag; the flag also travels as the
// status's payload, for programs: metrics count hits per flag from it, and
// the gRPC and REST answers carry it (google.rpc.ErrorInfo).

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"

namespace graft::core {

inline constexpr char kLimitPayloadUrl[] = "type.graft.dev/graft.LimitExceeded";

// A status of `code` whose message is `message`, followed by " (--FLAG)"
// unless it names the flag already, carrying `flag` (without "--").
absl::Status LimitError(absl::StatusCode code, absl::string_view message, absl::string_view flag);

// The flag a LimitError carries; empty for any other status.
std::string LimitFlagOf(const absl::Status& status);

// A status of `code` and `message` (a prefix naming where, say, and the
// cause's message) that keeps `cause`'s payloads: a limit's flag survives.
absl::Status Rephrased(absl::StatusCode code, absl::string_view message, const absl::Status& cause);

}  // namespace graft::core
