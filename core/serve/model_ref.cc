#include "core/serve/model_ref.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace graft::core {
namespace {

bool NameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

absl::Status CheckName(const std::string& s, const std::string& field, const char* what) {
  if (s.empty() || s.size() > 64) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": a ", what, " is 1 to 64 characters, got ", s.size()));
  }
  if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= '0' && s[0] <= '9'))) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": a ", what, " starts with a letter or digit"));
  }
  for (char c : s) {
    if (!NameChar(c)) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": a ", what, " holds only letters, digits, '.', '_' and '-'"));
    }
  }
  if (s.rfind("model-", 0) == 0) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": a ", what, " may not start with \"model-\" (ids do)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateModelName(const std::string& name, const std::string& field) {
  return CheckName(name, field, "model name");
}

absl::Status ValidateAliasName(const std::string& alias, const std::string& field) {
  return CheckName(alias, field, "model alias");
}

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
