#pragma once

// ABSL_LOG / ABSL_CHECK. Abseil's logging library arrived in 20230125; Debian
// 12 ships 20220623, so where absl/log is missing (the switch below, the one
// place that knows) this header provides the same two macros (stream style, severities INFO, WARNING, ERROR, FATAL).
// LibTorch's c10 defines LOG and CHECK, hence the prefixed names.

namespace graft {
// Once at the start of a program: INFO and above go to stderr, with either
// implementation (Abseil's own sends only ERROR there unless told).
void InitLogging();
}  // namespace graft

// absl_log.h and absl_check.h define only the ABSL_-prefixed macros (log.h
// and check.h would define LOG and CHECK, which c10 owns).
#if __has_include("absl/log/absl_log.h")
#include "absl/log/absl_check.h"
#include "absl/log/absl_log.h"
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
