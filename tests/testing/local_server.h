#pragma once

// Options for an in-process graftd in a test: loopback, a free port, no
// metrics endpoint, CPU, the shared weights as its zoo.

#include <fstream>
#include <string>

#include "client/client.h"

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

// The first line of a token file (graftd's <data_dir>/admin.token).
inline std::string ReadToken(const std::string& path) {
  std::ifstream in(path);
  std::string token;
  std::getline(in, token);
  return token;
}

// A client of an in-process graftd, as its admin.
inline client::ClientOptions AdminClientOptions(const std::string& data_dir) {
  client::ClientOptions options;
  options.token = ReadToken(server::GraftServer::AdminTokenPath(data_dir));
  return options;
}

}  // namespace graft::testing
