#include "core/util/names.h"

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

}  // namespace graft::core
