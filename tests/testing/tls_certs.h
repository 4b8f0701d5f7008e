#pragma once

#include <string>

namespace graft::testing {

// Makes, with the openssl command, in `dir`: ca.pem/ca.key (a test CA),
// server.pem/server.key (for localhost and 127.0.0.1, signed by the CA),
// client.pem/client.key (signed by the CA) and other.pem/other.key (a CA
// that signed nothing here). Empty on success, else the failed command.
std::string MakeTestCertificates(const std::string& dir);

}  // namespace graft::testing
