#include "client/cli.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <optional>
#include <vector>
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

size_t EditDistance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

// "; did you mean 'X'?" for the closest of `known` within a few edits (or
// the only one `word` begins), else nothing.
std::string Suggestion(const std::string& word, const std::vector<std::string>& known) {
  std::string best;
  size_t best_distance = std::max<size_t>(2, word.size() / 3) + 1;
  for (const std::string& k : known) {
    const size_t d = k.rfind(word, 0) == 0 && word.size() >= 3 ? 1 : EditDistance(word, k);
    if (d < best_distance) {
      best_distance = d;
      best = k;
    }
  }
  return best.empty() ? "" : absl::StrCat("; did you mean '", best, "'?");
}

// CLI11 takes an option it does not know for a value of a positional (an
// image: "File does not exist: X") and a misspelt command for a missing one
// ("A subcommand is required"). This walks the arguments as CLI11 will and
// names the first unknown option or command, with the closest known one.
std::optional<std::string> UnknownWord(CLI::App& app, int argc, const char* const* argv) {
  std::vector<CLI::App*> chain{&app};
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") break;
    if (arg.size() > 1 && arg[0] == '-' && !(std::isdigit(static_cast<unsigned char>(arg[1])) || arg[1] == '.')) {
      const std::string name = arg.substr(0, arg.find('='));
      const CLI::Option* option = nullptr;
      for (auto it = chain.rbegin(); it != chain.rend() && option == nullptr; ++it) {
        option = (*it)->get_option_no_throw(name);
      }
      if (option == nullptr) {
        std::vector<std::string> known;
        for (const CLI::App* a : chain) {
          for (const CLI::Option* o : a->get_options()) {
            for (const std::string& l : o->get_lnames()) known.push_back("--" + l);
          }
        }
        const std::string where = chain.size() > 1 ? absl::StrCat(" of 'graft ", chain.back()->get_name(), "'") : "";
        return absl::StrCat("unknown option '", name, "'", where, Suggestion(name, known), " (see --help)");
      }
      // A value in the next argument (not --name=value, not -xVALUE).
      const bool attached = arg.find('=') != std::string::npos || (arg[1] != '-' && arg.size() > 2);
      if (option->get_expected_min() > 0 && !attached) ++i;
      continue;
    }
    CLI::App* current = chain.back();
    const auto subs = current->get_subcommands([](CLI::App* s) { return !s->get_name().empty(); });
    if (subs.empty()) continue;  // a positional of the command
    CLI::App* found = nullptr;
    std::vector<std::string> names;
    for (CLI::App* s : subs) {
      if (s->check_name(arg)) found = s;
      names.push_back(s->get_name());
    }
    if (found == nullptr) {
      const std::string what = chain.size() > 1 ? absl::StrCat(" of 'graft ", current->get_name(), "'") : "";
      return absl::StrCat("unknown command '", arg, "'", what, Suggestion(arg, names), " (see --help)");
    }
    chain.push_back(found);
  }
  return std::nullopt;
}

}  // namespace

int RunCli(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  CLI::App app{"graft: the command-line client of the graft transfer-learning service"};
  app.require_subcommand(1);
  Globals g;
  if (const char* server = std::getenv("GRAFT_SERVER"); server != nullptr && *server != '\0') g.server = server;
  app.add_option("--server", g.server, "graftd address (default $GRAFT_SERVER, else localhost:50051)")
      ->capture_default_str();
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
  AddPredictionCommands(app, g, out, &action);
  AddTokenCommands(app, g, out, &action);
  // Global flags may come after the subcommand too.
  for (auto* sub : app.get_subcommands({})) {
    sub->fallthrough();
    for (auto* subsub : sub->get_subcommands({})) subsub->fallthrough();
  }
  if (const auto unknown = UnknownWord(app, argc, argv)) {
    err << "graft: " << *unknown << "\n";
    return 2;
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
