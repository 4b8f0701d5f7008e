#include "core/serve/model_ref.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace graft::core {
absl::StatusOr<ModelRef> ParseModelRef(const std::string& text) {
  ModelRef ref;
  if (text.empty()) return absl::InvalidArgumentError("no model named (an id, NAME, NAME:VERSION or NAME@ALIAS)");
  if (text.size() > 256) return absl::InvalidArgumentError("a model reference is at most 256 characters");
  if (text.rfind("model-", 0) == 0 && text.find_first_of("/:@") == std::string::npos) {
    ref.id = text;
    return ref;
  }
  std::string rest = text;
  if (const size_t slash = rest.find('/'); slash != std::string::npos) {
    ref.owner = rest.substr(0, slash);
    rest = rest.substr(slash + 1);
    if (ref.owner.empty()) return absl::InvalidArgumentError(absl::StrCat("'", text, "': empty owner before '/'"));
  }
  const size_t colon = rest.find(':');
  const size_t at = rest.find('@');
  if (colon != std::string::npos && at != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("'", text, "': give NAME:VERSION or NAME@ALIAS, not both"));
  }
  ref.name = rest.substr(0, std::min(colon, at));
  const std::string where = absl::StrCat("model '", text, "'");
  if (auto s = ValidateModelName(ref.name, where); !s.ok()) return s;
  if (colon != std::string::npos) {
    const std::string v = rest.substr(colon + 1);
    int64_t version = 0;
    if (!absl::SimpleAtoi(v, &version) || version < 1 || v.empty() || v[0] == '+' || v[0] == '-') {
      return absl::InvalidArgumentError(absl::StrCat(where, ": the version after ':' is a number from 1"));
    }
    ref.version = version;
  } else if (at != std::string::npos) {
    ref.alias = rest.substr(at + 1);
    if (ref.alias != kLatestAlias) {
      if (auto s = ValidateAliasName(ref.alias, where); !s.ok()) return s;
    }
  }
  return ref;
}

}  // namespace graft::core
