// graft tokens [create NAME --role R | revoke NAME | whoami]

#include <iomanip>
#include <ostream>

#include "absl/strings/str_cat.h"
#include "client/cli_commands.h"
#include "client/client.h"

namespace graft::client {
namespace {

std::string RoleText(v1::Role role) {
  switch (role) {
    case v1::ROLE_INFERENCE: return "inference";
    case v1::ROLE_TRAIN: return "train";
    case v1::ROLE_ADMIN: return "admin";
    default: return "unknown";
  }
}

absl::Status ListTokens(GraftClient& client, const Globals& g, std::ostream& out) {
  auto r = client.ListTokens();
  if (!r.ok()) return r.status();
  if (g.json) {
    out << ToJson(*r) << "\n";
    return absl::OkStatus();
  }
  out << std::left << std::setw(24) << "NAME" << std::setw(11) << "ROLE" << "CREATED\n";
  for (const auto& t : r->tokens()) {
    out << std::left << std::setw(24) << t.name() << std::setw(11) << RoleText(t.role())
        << Timestamp(t.created_at().seconds()) << "\n";
  }
  return absl::OkStatus();
}

absl::Status Create(GraftClient& client, const Globals& g, const std::string& name, const std::string& role,
                    std::ostream& out) {
  v1::Role r = v1::ROLE_UNSPECIFIED;
  if (role == "inference") r = v1::ROLE_INFERENCE;
  if (role == "train") r = v1::ROLE_TRAIN;
  if (role == "admin") r = v1::ROLE_ADMIN;
  if (r == v1::ROLE_UNSPECIFIED) {
    return absl::InvalidArgumentError(absl::StrCat("--role must be inference, train or admin, got '", role, "'"));
  }
  auto created = client.CreateToken(name, r);
  if (!created.ok()) return created.status();
  if (g.json) {
    out << "{\"name\":\"" << created->info().name() << "\",\"role\":\"" << RoleText(created->info().role())
        << "\",\"token\":\"" << created->token() << "\"}\n";
  } else {
    // The token comes last, alone on its line: `graft tokens create x | tail -1`.
    out << "token '" << created->info().name() << "' (" << RoleText(created->info().role())
        << ") created; it is shown only now:\n"
        << created->token() << "\n";
  }
  return absl::OkStatus();
}

}  // namespace

void AddTokenCommands(CLI::App& app, const Globals& g, std::ostream& out, Action* action) {
  auto* tokens = app.add_subcommand("tokens", "list (admin), create and revoke bearer tokens; whoami");
  tokens->callback([&g, &out, action, tokens]() {
    if (tokens->get_subcommands().empty()) *action = [&g, &out](GraftClient& c) { return ListTokens(c, g, out); };
  });
  auto name = std::make_shared<std::string>();
  auto role = std::make_shared<std::string>("inference");
  auto* create = tokens->add_subcommand("create", "a new token for a principal; prints it once, as the last line");
  create->add_option("name", *name, "the principal, 1-64 of [A-Za-z0-9._-]")->required();
  create->add_option("--role", *role, "inference, train or admin")->capture_default_str();
  create->callback([&g, &out, action, name, role]() {
    *action = [&g, &out, name, role](GraftClient& c) { return Create(c, g, *name, *role, out); };
  });
  auto revoke_name = std::make_shared<std::string>();
  auto* revoke = tokens->add_subcommand("revoke", "revoke a principal's token at once");
  revoke->add_option("name", *revoke_name, "the principal")->required();
  revoke->callback([&out, action, revoke_name]() {
    *action = [&out, revoke_name](GraftClient& c) {
      absl::Status s = c.RevokeToken(*revoke_name);
      if (s.ok()) out << *revoke_name << ": revoked\n";
      return s;
    };
  });
  auto* whoami = tokens->add_subcommand("whoami", "the principal and role of the token in use");
  whoami->callback([&g, &out, action]() {
    *action = [&g, &out](GraftClient& c) {
      auto me = c.WhoAmI();
      if (!me.ok()) return me.status();
      if (g.json) {
        out << ToJson(*me) << "\n";
      } else {
        out << me->name() << " (" << RoleText(me->role()) << ")\n";
      }
      return absl::OkStatus();
    };
  });
}

}  // namespace graft::client
