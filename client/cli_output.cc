#include "client/cli_output.h"

#include <google/protobuf/util/json_util.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <iomanip>
#include <sstream>

namespace graft::client {

std::string ToJson(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  std::string s;
  (void)google::protobuf::util::MessageToJsonString(m, &s, options);
  return s;
}

std::string ToJsonLine(const google::protobuf::Message& m) {
  std::string s;
  (void)google::protobuf::util::MessageToJsonString(m, &s, google::protobuf::util::JsonPrintOptions());
  return s;
}

std::string CsvField(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string HumanBytes(int64_t bytes) {
  if (bytes <= 0) return "-";
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  std::ostringstream s;
  s << std::fixed << std::setprecision(u == 0 ? 0 : 1) << v << " " << units[u];
  return s.str();
}

std::string HumanDuration(double seconds) {
  if (seconds < 0 || seconds > 1e7) return "--:--";
  const int s = static_cast<int>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof(buf), "%d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60);
  } else {
    std::snprintf(buf, sizeof(buf), "%02d:%02d", s / 60, s % 60);
  }
  return buf;
}

std::string Timestamp(int64_t seconds) {
  if (seconds <= 0) return "-";
  const std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

std::string Bar(double fraction, int width) {
  const int filled = static_cast<int>(std::min(1.0, std::max(0.0, fraction)) * width);
  return "[" + std::string(static_cast<size_t>(filled), '#') + std::string(static_cast<size_t>(width - filled), '.') + "]";
}

bool StderrIsTty() { return ::isatty(STDERR_FILENO) == 1; }

std::string StateName(v1::JobState s) {
  const std::string name = v1::JobState_Name(s);
  return name.rfind("JOB_STATE_", 0) == 0 ? name.substr(10) : name;
}

std::string EpochHeader() {
  char buf[160];
  std::snprintf(buf, sizeof(buf), "%5s %5s %8s %7s %8s %7s %7s %9s %8s %7s", "epoch", "stage", "loss", "acc",
                "val_loss", "val_acc", "val_f1", "lr", "img/s", "time");
  return buf;
}

std::string EpochRow(const v1::EpochMetrics& m) {
  char buf[160];
  std::snprintf(buf, sizeof(buf), "%5d %5d %8.4f %7.4f %8.4f %7.4f %7.4f %9.2e %8.1f %6.1fs%s", m.epoch(), m.stage(),
                m.train_loss(), m.train_accuracy(), m.val_loss(), m.val_accuracy(), m.val_macro_f1(),
                m.learning_rate(), m.images_per_second(), m.epoch_seconds(), m.frozen_part_cached() ? (m.frozen_part_bf16() ? " *b" : " *") : (m.frozen_part_bf16() ? " b" : ""));
  return buf;
}

std::string Sparkline(const std::vector<double>& values, double lo, double hi) {
  static const char* const kBlocks[8] = {"\u2581", "\u2582", "\u2583", "\u2584", "\u2585", "\u2586", "\u2587", "\u2588"};
  std::string out;
  for (double v : values) {
    if (!std::isfinite(v)) {
      out += ' ';
      continue;
    }
    const double t = hi > lo ? (std::clamp(v, lo, hi) - lo) / (hi - lo) : 0.5;
    out += kBlocks[static_cast<int>(std::lround(t * 7))];
  }
  return out;
}

std::string LearningCurves(const std::vector<v1::EpochMetrics>& all) {
  constexpr size_t kMax = 60;
  const std::vector<v1::EpochMetrics> epochs(all.size() > kMax ? all.end() - kMax : all.begin(), all.end());
  auto line = [&](const char* label, auto train, auto val) {
    double lo = INFINITY, hi = -INFINITY;
    for (const auto& e : epochs) {
      for (double v : {train(e), val(e)}) {
        if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
      }
    }
    if (!std::isfinite(lo)) lo = hi = 0;
    auto curve = [&](auto value) {
      std::string out;
      for (size_t i = 0; i < epochs.size(); ++i) {
        if (i > 0 && epochs[i].stage() != epochs[i - 1].stage()) out += '|';
        out += Sparkline({value(epochs[i])}, lo, hi);
      }
      return out;
    };
    std::ostringstream o;
    o << std::left << std::setw(9) << label << "train " << curve(train) << "  val " << curve(val) << "  ("
      << std::fixed << std::setprecision(3) << lo << " .. " << hi << ")";
    return o.str();
  };
  return line("loss", [](const v1::EpochMetrics& e) { return e.train_loss(); },
              [](const v1::EpochMetrics& e) { return e.val_loss(); }) +
         "\n" +
         line("accuracy", [](const v1::EpochMetrics& e) { return e.train_accuracy(); },
              [](const v1::EpochMetrics& e) { return e.val_accuracy(); });
}

}  // namespace graft::client
