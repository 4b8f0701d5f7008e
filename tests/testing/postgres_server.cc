#include "tests/testing/postgres_server.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

namespace graft::testing {
namespace fs = std::filesystem;
namespace {

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

std::string Tail(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  const std::string all = s.str();
  return all.size() > 2000 ? all.substr(all.size() - 2000) : all;
}

}  // namespace

absl::Status PostgresServer::Run(const std::string& command) const {
  const std::string line = as_postgres_ ? absl::StrCat("runuser -u postgres -- ", command) : command;
  const std::string log = root_ + "/commands.log";
  if (std::system((line + " >>" + log + " 2>&1").c_str()) != 0) {
    return absl::InternalError(absl::StrCat("`", line, "` failed:\n", Tail(log), Tail(root_ + "/server.log")));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<PostgresServer>> PostgresServer::Start() {
  std::unique_ptr<PostgresServer> pg(new PostgresServer());
  // The newest installed major version's binaries (Debian keeps them off PATH).
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    const std::string bin = (e.path() / "bin").string();
    if (fs::exists(bin + "/initdb") && bin > pg->bin_) pg->bin_ = bin;
  }
  if (pg->bin_.empty()) {
    return absl::FailedPreconditionError(
        "no PostgreSQL server under /usr/lib/postgresql: deploy/install-deps.sh installs Debian's postgresql");
  }
  char pattern[] = "/tmp/graft-pg-XXXXXX";
  if (mkdtemp(pattern) == nullptr) return absl::InternalError("mkdtemp failed");
  pg->root_ = pattern;
  pg->as_postgres_ = geteuid() == 0;
  if (pg->as_postgres_ && std::system(absl::StrCat("chown postgres: ", pg->root_).c_str()) != 0) {
    return absl::InternalError("cannot hand the test's directory to the postgres user");
  }
  pg->port_ = FreePort();
  const std::string data = pg->root_ + "/data";
  if (auto s = pg->Run(absl::StrCat(pg->bin_, "/initdb -D ", data, " -U graft -A trust -E UTF8 --no-sync")); !s.ok()) {
    return s;
  }
  const std::string options = absl::StrCat("-p ", pg->port_, " -k ", pg->root_,
                                           " -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off");
  if (auto s = pg->Run(absl::StrCat(pg->bin_, "/pg_ctl -D ", data, " -l ", pg->root_, "/server.log -w -t 60 -o '",
                                    options, "' start"));
      !s.ok()) {
    return s;
  }
  pg->started_ = true;
  return pg;
}

PostgresServer::~PostgresServer() {
  if (started_) (void)Run(absl::StrCat(bin_, "/pg_ctl -D ", root_, "/data -m immediate -w stop"));
  std::error_code ec;
  fs::remove_all(root_, ec);
}

std::string PostgresServer::Uri(const std::string& database) const {
  return absl::StrCat("postgresql://graft@127.0.0.1:", port_, "/", database);
}

absl::Status PostgresServer::CreateDatabase(const std::string& name) {
  return Run(absl::StrCat(bin_, "/createdb -h 127.0.0.1 -p ", port_, " -U graft ", name));
}

PostgresServer* ProcessPostgres() {
  static const std::unique_ptr<PostgresServer> server = [] {
    auto started = PostgresServer::Start();
    if (!started.ok()) {
      ADD_FAILURE() << started.status();
      return std::unique_ptr<PostgresServer>();
    }
    return std::move(*started);
  }();
  return server.get();
}

std::string FreshPostgresDatabase() {
  static int databases = 0;
  PostgresServer* server = ProcessPostgres();
  if (server == nullptr) return "";
  const std::string name = absl::StrCat("t", ++databases);
  if (auto s = server->CreateDatabase(name); !s.ok()) {
    ADD_FAILURE() << s;
    return "";
  }
  return server->Uri(name);
}

}  // namespace graft::testing
