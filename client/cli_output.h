#pragma once

#include <google/protobuf/message.h>

#include <cstdint>
#include <iosfwd>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

#include "absl/status/status.h"
#include "graft/v1/training.pb.h"

namespace graft::client {

struct Globals {
  std::string server = "localhost:50051";
  bool json = false;
  std::string token;       // --token, else $GRAFT_TOKEN, else --token_file's first line
  std::string token_file;
  bool tls = false;        // implied by any --tls_* file
  std::string tls_ca, tls_cert, tls_key;  // PEM file paths
};

// One JSON document with the proto JSON mapping's field names.
std::string ToJson(const google::protobuf::Message& m);
// The same on one line (JSON Lines).
std::string ToJsonLine(const google::protobuf::Message& m);
// One CSV field (RFC 4180: quoted when it holds a comma, quote or line break).
std::string CsvField(const std::string& s);
std::string HumanBytes(int64_t bytes);
std::string HumanDuration(double seconds);
std::string Timestamp(int64_t seconds);
// "[#####.....]" of `width` characters.
std::string Bar(double fraction, int width);
bool StderrIsTty();
std::string StateName(v1::JobState s);
// Prints `m` as JSON with --json, else with `print`; passes errors through.
template <typename M, typename Print>
absl::Status Show(const absl::StatusOr<M>& m, const Globals& g, std::ostream& out, Print print) {
  if (!m.ok()) return m.status();
  if (g.json) {
    out << ToJson(*m) << "\n";
  } else {
    print(*m, out);
  }
  return absl::OkStatus();
}

// One character per value from the eight blocks ▁▂▃▄▅▆▇█, scaled over
// [lo, hi] (values outside are clamped; a non-finite value is a space).
std::string Sparkline(const std::vector<double>& values, double lo, double hi);
// The learning curves so far as two lines (loss; accuracy), train and val on
// one scale per line, '|' where a stage begins; the last 60 epochs at most.
std::string LearningCurves(const std::vector<v1::EpochMetrics>& epochs);

// One row of the per-epoch table, and its header.
std::string EpochHeader();
std::string EpochRow(const v1::EpochMetrics& m);

}  // namespace graft::client
