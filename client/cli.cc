#include "client/cli.h"

#include <CLI/CLI.hpp>

#include <ostream>

#include "client/cli_commands.h"
#include "client/client.h"

namespace graft::client {

int RunCli(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  CLI::App app{"graft: the command-line client of the graft transfer-learning service"};
  app.require_subcommand(1);
  Globals g;
  app.add_option("--server", g.server, "graftd address")->capture_default_str();
  app.add_flag("--json", g.json, "machine-readable output (one JSON document, proto JSON field names)");
  Action action;
  AddBackboneCommands(app, g, out, &action);
  AddDatasetCommands(app, g, out, err, &action);
  AddJobCommands(app, g, out, err, &action);
  AddModelCommands(app, g, out, &action);
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
  GraftClient client(g.server);
  const absl::Status status = action(client);
  if (!status.ok()) {
    err << "graft: " << absl::StatusCodeToString(status.code()) << ": " << status.message() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace graft::client
