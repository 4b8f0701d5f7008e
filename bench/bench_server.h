#pragma once

// The in-process graftd the end-to-end benchmarks talk to over loopback:
// a scratch data directory, ../shared/weights as the zoo, CPU, no metrics port.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "bench/bench_util.h"
#include "server/server.h"

namespace graft::bench {

inline graft::server::ServerOptions BenchServerOptions(const std::string& data_dir, int threads) {
  graft::server::ServerOptions options;
  options.host = "127.0.0.1";
  options.port = 0;
  options.metrics_port = -1;
  options.data_dir = data_dir;
  options.zoo_dir = SharedDir() + "/weights";
  options.device = "cpu";
  options.intra_op_threads = threads;
  return options;
}

}  // namespace graft::bench
