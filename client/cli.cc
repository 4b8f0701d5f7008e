#include "client/cli.h"

#include <CLI/CLI.hpp>

#include <cstdlib>
#include <ostream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "core/util/files.h"
#include "core/util/status_macros.h"

#include "client/cli_commands.h"
#include "client/client.h"

namespace graft::client {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* flag) {
  auto text = core::ReadFile(path);
  if (!text.ok()) return absl::InvalidArgumentError(absl::StrCat(flag, ": ", text.status().message()));
  return *text;
}

// The token (flag, environment, file) and TLS material the flags name.
absl::StatusOr<ClientOptions> ConnectionOptions(const Globals& g) {
  ClientOptions o;
  o.token = g.token;
  if (o.token.empty()) {
    if (const char* env = std::getenv("GRAFT_TOKEN")) o.token = env;
  }
  if (o.token.empty() && !g.token_file.empty()) {
    auto text = core::ReadFile(g.token_file);
    if (!text.ok()) return absl::InvalidArgumentError(absl::StrCat("--token_file: ", text.status().message()));
    o.token = std::string(absl::StripAsciiWhitespace(text->substr(0, text->find('\n'))));
  }
  o.tls = g.tls || !g.tls_ca.empty() || !g.tls_cert.empty() || !g.tls_key.empty();
  if (g.tls_cert.empty() != g.tls_key.empty()) return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  if (!g.tls_ca.empty()) {
    ASSIGN_OR_RETURN(o.tls_ca, ReadPem(g.tls_ca, "--tls_ca"));
  }
  if (!g.tls_cert.empty()) {
    ASSIGN_OR_RETURN(o.tls_cert, ReadPem(g.tls_cert, "--tls_cert"));
  }
  if (!g.tls_key.empty()) {
    ASSIGN_OR_RETURN(o.tls_key, ReadPem(g.tls_key, "--tls_key"));
  }
  return o;
}

}  // namespace

int RunCli(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  CLI::App app{"graft: the command-line client of the graft transfer-learning service"};
  app.require_subcommand(1);
  Globals g;
  app.add_option("--server", g.server, "graftd address")->capture_default_str();
  app.add_flag("--json", g.json, "machine-readable output (one JSON document, proto JSON field names)");
  app.add_option("--token", g.token, "bearer token (default $GRAFT_TOKEN, then --token_file)");
  app.add_option("--token_file", g.token_file, "file whose first line is the token, e.g. <data_dir>/admin.token");
  app.add_flag("--tls", g.tls, "connect with TLS, trusting the system's roots (or --tls_ca)");
  app.add_option("--tls_ca", g.tls_ca, "PEM CA that signed graftd's certificate (implies --tls)");
  app.add_option("--tls_cert", g.tls_cert, "PEM client certificate for mutual TLS (implies --tls)");
  app.add_option("--tls_key", g.tls_key, "PEM key of --tls_cert");
  Action action;
  AddBackboneCommands(app, g, out, &action);
  AddDatasetCommands(app, g, out, err, &action);
  AddJobCommands(app, g, out, err, &action);
  AddModelCommands(app, g, out, &action);
  AddTokenCommands(app, g, out, &action);
  // Global flags may come after the subcommand too.
  for (auto* sub : app.get_subcommands({})) {
    sub->fallthrough();
    for (auto* subsub : sub->get_subcommands({})) subsub->fallthrough();
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) {
      out << app.help();
      return 0;
    }
    err << "graft: " << e.what() << "\n";
    return 2;
  }
  if (!action) {
    err << "graft: nothing to do; see graft --help\n";
    return 2;
  }
  auto options = ConnectionOptions(g);
  if (!options.ok()) {
    err << "graft: " << options.status().message() << "\n";
    return 2;
  }
  GraftClient client(g.server, *options);
  const absl::Status status = action(client);
  if (!status.ok()) {
    err << "graft: " << absl::StatusCodeToString(status.code()) << ": " << status.message() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace graft::client
