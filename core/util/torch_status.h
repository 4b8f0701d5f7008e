#pragma once

// The library edge: LibTorch and OpenCV report errors by throwing. Every core
// function that calls them runs the call through GuardExceptions so that no
// exception crosses a core API.

#include <exception>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace graft::core {

// First line of an exception message (LibTorch appends long C++ backtraces).
std::string FirstLine(const std::string& message);

// Runs `fn`, converting any exception into a Status with `code` and a message
// prefixed by `context`. `fn` returns absl::Status, absl::StatusOr<T> or T.
template <typename Fn>
auto GuardExceptions(absl::StatusCode code, const std::string& context, Fn&& fn)
    -> decltype(std::declval<Fn>()()) {
  try {
    return std::forward<Fn>(fn)();
  } catch (const std::exception& e) {
    return absl::Status(code, absl::StrCat(context, ": ", FirstLine(e.what())));
  } catch (...) {
    return absl::Status(code, absl::StrCat(context, ": unknown exception"));
  }
}

template <typename Fn>
auto GuardInternal(const std::string& context, Fn&& fn) {
  return GuardExceptions(absl::StatusCode::kInternal, context, std::forward<Fn>(fn));
}

}  // namespace graft::core
