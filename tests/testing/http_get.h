#pragma once

#include <string>

namespace graft::testing {

// GET http://127.0.0.1:<port><path>; returns the whole response (status line,
// headers and body), or an empty string when the connection fails.
std::string HttpGet(int port, const std::string& path);
// GET with an Authorization: Bearer `token` header.
std::string HttpGet(int port, const std::string& path, const std::string& token);
// In a Prometheus text page, the value of the series whose line starts with
// `prefix` ("name{labels}"); -1 when absent.
double MetricValue(const std::string& page, const std::string& prefix);

}  // namespace graft::testing
