#pragma once

// A fixture for tests of several graftd processes sharing one PostgreSQL
// database (fresh per test, on the test process's server) and one artifact
// directory, with fast heartbeats (0.5 s) and takeovers (3 s).

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/strip.h"
#include "client/client.h"
#include "core/util/files.h"
#include "tests/testing/graftd_process.h"
#include "tests/testing/postgres_server.h"
#include "tests/testing/temp_dir.h"

namespace graft::testing {

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    database_ = FreshPostgresDatabase();
    ASSERT_FALSE(database_.empty());
  }

  // Starts graftd `name` (data directory and log named after it) with the
  // shared flags and `flags`; null, with a test failure and its log, when it
  // does not start.
  GraftdProcess* Launch(const std::string& name, const std::vector<std::string>& flags) {
    std::vector<std::string> all{"--database=" + database_, "--artifact_dir=" + artifacts(), "--job_heartbeat_s=0.5",
                                 "--job_takeover_s=3"};
    all.insert(all.end(), flags.begin(), flags.end());
    auto process = std::make_unique<GraftdProcess>(dir_.Join(name), dir_.Join(name + ".log"));
    if (!process->Start(all)) {
      ADD_FAILURE() << name << " did not start: " << Log(name);
      return nullptr;
    }
    auto& slot = processes_[name];
    slot = std::move(process);
    return slot.get();
  }
  std::string Log(const std::string& name) const {
    return core::ReadFile(dir_.Join(name + ".log")).value_or("(no log)");
  }
  std::string artifacts() const { return dir_.Join("artifacts"); }
  // The admin token the first process wrote into the shared directory.
  client::ClientOptions Admin() const {
    client::ClientOptions options;
    options.token = std::string(absl::StripAsciiWhitespace(core::ReadFile(artifacts() + "/admin.token").value_or("")));
    return options;
  }

  TempDir dir_;
  std::string database_;
  std::map<std::string, std::unique_ptr<GraftdProcess>> processes_;
};

// Seconds until `done` held (polled every 50 ms), or -1 after `limit`.
inline double SecondsUntil(double limit, const std::function<bool()>& done) {
  const auto start = std::chrono::steady_clock::now();
  while (true) {
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (done()) return took;
    if (took > limit) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace graft::testing
