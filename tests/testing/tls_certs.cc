#include "tests/testing/tls_certs.h"

#include <cstdlib>
#include <vector>

namespace graft::testing {

std::string MakeTestCertificates(const std::string& d) {
  const std::string subj = " -subj /CN=";
  const std::vector<std::string> commands = {
      "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -keyout " + d + "/ca.key -out " + d + "/ca.pem" + subj +
          "graft-test-ca",
      "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -keyout " + d + "/other.key -out " + d + "/other.pem" +
          subj + "other-ca",
      "openssl req -newkey rsa:2048 -nodes -keyout " + d + "/server.key -out " + d + "/server.csr" + subj +
          "localhost",
      "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1' > " + d + "/san.ext",
      "openssl x509 -req -in " + d + "/server.csr -CA " + d + "/ca.pem -CAkey " + d +
          "/ca.key -CAcreateserial -days 2 -extfile " + d + "/san.ext -out " + d + "/server.pem",
      "openssl req -newkey rsa:2048 -nodes -keyout " + d + "/client.key -out " + d + "/client.csr" + subj + "client",
      "openssl x509 -req -in " + d + "/client.csr -CA " + d + "/ca.pem -CAkey " + d +
          "/ca.key -CAcreateserial -days 2 -out " + d + "/client.pem"};
  for (const std::string& cmd : commands) {
    if (std::system((cmd + " >/dev/null 2>&1").c_str()) != 0) return cmd;
  }
  return "";
}

}  // namespace graft::testing
