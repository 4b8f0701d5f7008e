#pragma once

// ABSL_LOG / ABSL_CHECK. Abseil's logging library arrived in 20230125; Debian
// 12 ships 20220623, so where absl/log is missing this header provides the
// same two macros (stream style, severities INFO, WARNING, ERROR, FATAL).
// LibTorch's c10 defines LOG and CHECK, hence the prefixed names.

#if __has_include("absl/log/log.h")
#include "absl/log/check.h"
#include "absl/log/log.h"
#else

#include <sstream>
#include <string_view>

namespace graft::log_internal {

enum class Severity { kINFO, kWARNING, kERROR, kFATAL };

class LogMessage {
 public:
  LogMessage(Severity severity, const char* file, int line);
  ~LogMessage();
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  std::ostream& stream() { return stream_; }

 private:
  Severity severity_;
  std::ostringstream stream_;
};

// Lets `cond ? (void)0 : Voidify() & stream` discard the stream's type.
struct Voidify {
  void operator&(std::ostream&) {}
};

}  // namespace graft::log_internal

#define ABSL_LOG(severity)                                                                   \
  ::graft::log_internal::LogMessage(::graft::log_internal::Severity::k##severity, __FILE__, \
                                    __LINE__)                                                \
      .stream()

#define ABSL_CHECK(condition)                                      \
  (condition) ? (void)0                                            \
              : ::graft::log_internal::Voidify() &                 \
                    ABSL_LOG(FATAL) << "Check failed: " #condition " "

#endif
