#include "core/util/log.h"

#if __has_include("absl/log/absl_log.h")

#include "absl/log/globals.h"
#include "absl/log/initialize.h"

namespace graft {

void InitLogging() {
  absl::InitializeLog();
  absl::SetStderrThreshold(absl::LogSeverityAtLeast::kInfo);
}

}  // namespace graft

#else

namespace graft {

void InitLogging() {}

}  // namespace graft


#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "absl/synchronization/mutex.h"

namespace graft::log_internal {

LogMessage::LogMessage(Severity severity, const char* file, int line) : severity_(severity) {
  static constexpr char kLetters[] = {'I', 'W', 'E', 'F'};
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() % 1000000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char stamp[32];
  std::snprintf(stamp, sizeof(stamp), "%02d%02d %02d:%02d:%02d.%06lld", tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min, tm.tm_sec, static_cast<long long>(us));
  std::string_view base(file);
  if (const auto slash = base.rfind('/'); slash != std::string_view::npos) base.remove_prefix(slash + 1);
  stream_ << kLetters[static_cast<int>(severity)] << stamp << ' ' << ::getpid() << ' ' << base << ':' << line << "] ";
}

LogMessage::~LogMessage() {
  stream_ << '\n';
  ABSL_CONST_INIT static absl::Mutex mu(absl::kConstInit);  // one line at a time
  {
    absl::MutexLock lock(&mu);
    const std::string s = stream_.str();
    std::fwrite(s.data(), 1, s.size(), stderr);
    std::fflush(stderr);
  }
  if (severity_ == Severity::kFATAL) std::abort();
}

}  // namespace graft::log_internal

#endif
