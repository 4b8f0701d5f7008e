#include "tests/testing/graftd_process.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>
#include "tests/testing/paths.h"

namespace graft::testing {

GraftdProcess::~GraftdProcess() {
  if (pid_ > 0) Stop(SIGKILL);
}

bool GraftdProcess::Start(const std::vector<std::string>& extra_flags) {
  std::vector<std::string> args = {GRAFTD_BIN, "--host=127.0.0.1", "--port=0", "--metrics_port=0", "--http_port=0", "--offline",
                                   "--data_dir=" + data_dir_, "--zoo_dir=" + std::string(GRAFT_SHARED_DIR) + "/weights"};
  args.insert(args.end(), extra_flags.begin(), extra_flags.end());
  return StartCommand(args);
}

bool GraftdProcess::StartCommand(const std::vector<std::string>& command) {
  const std::streamoff offset = [&]() {
    std::ifstream in(log_, std::ios::ate);
    return in ? static_cast<std::streamoff>(in.tellg()) : std::streamoff{0};
  }();
  pid_ = ::fork();
  if (pid_ < 0) return false;
  if (pid_ == 0) {
    std::vector<std::string> args = command;
    ::setenv("GRAFT_DATA_DIR", data_dir_.c_str(), 1);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (std::freopen(log_.c_str(), "a", stderr) == nullptr) std::_Exit(126);
    if (std::freopen(log_.c_str(), "a", stdout) == nullptr) std::_Exit(126);
    ::execv(argv[0], argv.data());
    std::_Exit(127);
  }
  const std::regex listening("graftd listening: grpc 127\\.0\\.0\\.1:([0-9]+) metrics 127\\.0\\.0\\.1:([0-9]+)/metrics");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream in(log_);
    in.seekg(offset);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    std::smatch m;
    if (std::regex_search(text, m, listening)) {
      port_ = std::stoi(m[1].str());
      metrics_port_ = std::stoi(m[2].str());
      return true;
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

int GraftdProcess::Stop(int signal) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, signal);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void GraftdProcess::Signal(int signal) {
  if (pid_ > 0) ::kill(pid_, signal);
}

std::string GraftdProcess::admin_token() const {
  std::ifstream in(token_file());
  std::string token;
  std::getline(in, token);
  return token;
}

}  // namespace graft::testing
