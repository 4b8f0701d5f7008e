#include "core/util/limit_error.h"

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace graft::core {

absl::Status LimitError(absl::StatusCode code, absl::string_view message, absl::string_view flag) {
  const std::string named = absl::StrCat("--", flag);
  absl::Status status(code, absl::StrContains(message, named) ? std::string(message)
                                                              : absl::StrCat(message, " (", named, ")"));
  status.SetPayload(kLimitPayloadUrl, absl::Cord(flag));
  return status;
}

std::string LimitFlagOf(const absl::Status& status) {
  const auto payload = status.GetPayload(kLimitPayloadUrl);
  return payload ? std::string(*payload) : std::string();
}

absl::Status Rephrased(absl::StatusCode code, absl::string_view message, const absl::Status& cause) {
  absl::Status status(code, message);
  cause.ForEachPayload([&](absl::string_view url, const absl::Cord& payload) { status.SetPayload(url, payload); });
  return status;
}

}  // namespace graft::core
