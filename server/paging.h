#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "server/job_convert.h"
#include "server/model_convert.h"

namespace graft::server {

// Pages of a listing: at most page_size items (default and most
// kMaxPageItems) and about kMaxPageBytes, so that no answer nears the message
// limit whatever the items hold. The page token is the next item's position.
inline constexpr int kMaxPageItems = 500;
inline constexpr size_t kMaxPageBytes = 16 << 20;

// Calls add(item) for the page's items (it returns the bytes it added) and
// returns the next page's token, empty after the last page.
template <typename Item, typename Add>
absl::StatusOr<std::string> Paginate(const std::vector<Item>& items, int32_t page_size, const std::string& token,
                                     const Add& add) {
  if (page_size < 0) return absl::InvalidArgumentError("page_size: must not be negative");
  const size_t limit = page_size == 0 || page_size > kMaxPageItems ? kMaxPageItems : static_cast<size_t>(page_size);
  uint64_t start = 0;
  if (!token.empty() && (!absl::SimpleAtoi(token, &start) || start > items.size())) {
    return absl::InvalidArgumentError(absl::StrCat("page_token: '", token, "' is not a token this listing gave"));
  }
  size_t bytes = 0;
  size_t i = static_cast<size_t>(start);
  for (size_t n = 0; i < items.size() && n < limit && (n == 0 || bytes < kMaxPageBytes); ++i, ++n) {
    bytes += add(items[i]);
  }
  return i < items.size() ? std::to_string(i) : std::string();
}

// One page of `items` into `out` (proto messages made by ToProto), answering
// the next page's token; `request` has page_size and page_token.
template <typename Request, typename Item, typename Message>
absl::StatusOr<std::string> PageInto(const Request& request, const std::vector<Item>& items,
                                     google::protobuf::RepeatedPtrField<Message>* out) {
  return Paginate(items, request.page_size(), request.page_token(), [&](const Item& item) {
    Message* m = out->Add();
    ToProto(item, m);
    return m->ByteSizeLong();
  });
}

}  // namespace graft::server
