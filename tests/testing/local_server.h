#pragma once

// Options for an in-process graftd in a test: loopback, a free port, no
// metrics endpoint, CPU, the shared weights as its zoo.

#include <string>

#include "server/server.h"
#include "tests/testing/paths.h"

namespace graft::testing {

inline server::ServerOptions LocalServerOptions(const std::string& data_dir) {
  server::ServerOptions options;
  options.host = "127.0.0.1";
  options.port = 0;
  options.metrics_port = -1;
  options.data_dir = data_dir;
  options.zoo_dir = WeightsDir();
  options.device = "cpu";
  return options;
}

}  // namespace graft::testing
