#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace graft::testing {

// The graftd binary as a child process on 127.0.0.1 with free ports.
class GraftdProcess {
 public:
  GraftdProcess(std::string data_dir, std::string log_path) : data_dir_(std::move(data_dir)), log_(std::move(log_path)) {}
  ~GraftdProcess();

  // Starts graftd and waits for its "listening" line; false on failure.
  bool Start(const std::vector<std::string>& extra_flags = {});
  // Runs `argv` (a script that execs graftd, e.g. deploy/run.sh) with
  // GRAFT_DATA_DIR set to the data directory, and waits the same way.
  bool StartCommand(const std::vector<std::string>& argv);
  // Sends `signal`, waits, and returns the exit status (-1 when killed by a signal).
  int Stop(int signal);
  // Sends `signal` without waiting (SIGSTOP, SIGCONT).
  void Signal(int signal);

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  const std::string& log() const { return log_; }
  // The admin token graftd's first start wrote, and its file.
  std::string token_file() const { return data_dir_ + "/admin.token"; }
  std::string admin_token() const;

 private:
  std::string data_dir_;
  std::string log_;
  pid_t pid_ = -1;
  int port_ = 0;
  int metrics_port_ = 0;
};

}  // namespace graft::testing
