#pragma once

// The in-process graftd the end-to-end benchmarks talk to over loopback:
// a scratch data directory, ../shared/weights as the zoo, CPU, no metrics port.

#include <fstream>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "bench/bench_util.h"
#include "client/client.h"
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

// A client of that graftd with the admin token its first start wrote.
inline graft::client::ClientOptions BenchClientOptions(const std::string& data_dir) {
  graft::client::ClientOptions options;
  std::ifstream in(graft::server::GraftServer::AdminTokenPath(data_dir));
  std::getline(in, options.token);
  return options;
}

}  // namespace graft::bench
