#include "server/raw_bytes.h"

#include "absl/strings/str_cat.h"
#include "server/little_endian.h"

namespace graft::server {

absl::StatusOr<std::vector<std::string>> SplitRawBytes(const std::string& raw, int64_t expected,
                                                       const std::string& what) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < raw.size()) {
    if (raw.size() - at < 4) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": raw BYTES contents end inside an element's 4-byte length at byte ", at));
    }
    const uint32_t n = LoadLittleEndian32(raw.data() + at);
    at += 4;
    if (n > raw.size() - at) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": raw BYTES element ", out.size(), " claims ", n,
                                                     " bytes but ", raw.size() - at, " remain"));
    }
    if (static_cast<int64_t>(out.size()) >= expected) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": raw BYTES contents hold more than the ", expected, " elements of its shape"));
    }
    out.emplace_back(raw.data() + at, n);
    at += n;
  }
  if (static_cast<int64_t>(out.size()) != expected) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": raw BYTES contents hold ", out.size(), " elements; its shape holds ", expected));
  }
  return out;
}

void AppendRawBytes(const std::string& element, std::string* raw) {
  AppendLittleEndian32(static_cast<uint32_t>(element.size()), raw);
  raw->append(element);
}

}  // namespace graft::server
