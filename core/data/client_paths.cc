#include "core/data/client_paths.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/data/dataset_store.h"
#include "core/util/ids.h"
#include "core/util/names.h"

namespace graft::core {

namespace {

// RFC 3629: the length of the valid UTF-8 sequence at s[i] (no overlong
// forms, no surrogates, nothing past U+10FFFF); 0 when there is none.
size_t Utf8Length(const std::string& s, size_t i) {
  const auto at = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = at(i);
  size_t n = 0;
  unsigned char lo = 0x80, hi = 0xbf;  // the second byte's range
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) {
    n = 1;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 2;
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 3;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
  } else {
    return 0;
  }
  if (i + n >= s.size()) return 0;  // the sequence runs past the end
  if (at(i + 1) < lo || at(i + 1) > hi) return 0;
  for (size_t k = 2; k <= n; ++k) {
    if ((at(i + k) & 0xc0) != 0x80) return 0;
  }
  return n + 1;
}

}  // namespace

bool IsValidUtf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = Utf8Length(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}


std::string PrintablePath(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t n = Utf8Length(s, i);
    if (n == 0 || c < 0x20 || c == 0x7f) {
      absl::StrAppend(&out, "\\x", absl::Hex(c, absl::kZeroPad2));
      ++i;
    } else {
      out.append(s, i, n);
      i += n;
    }
  }
  return out;
}


absl::Status DatasetStore::CheckRelativePath(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("empty path");
  if (path.size() > kMaxPathChars) {
    return absl::InvalidArgumentError(absl::StrCat("path longer than ", kMaxPathChars, " characters"));
  }
  if (path[0] == '/' || path[0] == '\\' || (path.size() > 1 && path[1] == ':')) {
    return absl::InvalidArgumentError("absolute paths are not accepted");
  }
  for (absl::string_view c : absl::StrSplit(path, absl::ByAnyChar("/\\"), absl::SkipEmpty())) {
    if (c == "..") return absl::InvalidArgumentError("paths with '..' are not accepted");
    if (c != "." && (c[0] == '.' || c == "__MACOSX")) return absl::InvalidArgumentError("hidden or system file");
  }
  if (path.find('\0') != std::string::npos) return absl::InvalidArgumentError("path contains a NUL byte");
  // Folder names become class names that clients print: no terminal control
  // sequences, and UTF-8 (protobuf strings must be).
  for (const char ch : path) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(absl::StrCat("path contains a control character (0x", absl::Hex(c, absl::kZeroPad2), ")"));
    }
  }
  if (!IsValidUtf8(path)) return absl::InvalidArgumentError("path is not valid UTF-8");
  return absl::OkStatus();
}

absl::Status DatasetStore::CheckName(const std::string& name) {
  if (name.empty() || name.size() > 128) return absl::InvalidArgumentError("header.name: 1 to 128 characters required");
  if (!IsPlainName(name, 128)) {
    return absl::InvalidArgumentError(
        absl::StrCat("header.name: '", name, "' may only hold letters, digits, '-', '_' and '.'"));
  }
  if (LooksLikeId(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("header.name: '", name, "' has the form of an id (<kind>-<12 hex digits>); choose another name"));
  }
  return absl::OkStatus();
}

}  // namespace graft::core
