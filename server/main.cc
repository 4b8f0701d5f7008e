// graftd: the graft transfer-learning server.

#include <csignal>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "core/util/host_memory.h"
#include "core/util/log.h"
#include "server/server.h"

#include <torch/version.h>

#include "core/util/device.h"

namespace {

std::string DefaultDataDir() {
  if (const char* env = std::getenv("GRAFT_DATA_DIR")) return env;
  if (const char* home = std::getenv("HOME")) return std::string(home) + "/.local/share/graft";
  return "/var/lib/graft";
}

}  // namespace

#define GRAFT_OPTION(type, name, default_value, help) ABSL_FLAG(type, name, default_value, help);
#define GRAFT_OPTION_IN_PROCESS(type, name, in_process_default, graftd_default, help) \
  ABSL_FLAG(type, name, graftd_default, help);
#include "server/options.inc"
#undef GRAFT_OPTION
#undef GRAFT_OPTION_IN_PROCESS
ABSL_FLAG(std::vector<std::string>, weights_file, {},
          "NAME=FILE,...: use another torchvision weights file for a backbone (e.g. "
          "resnet50=resnet50-11ad3fa6.pth, IMAGENET1K_V2), fetched and hash-checked like the default one.");

namespace {
std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }
}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("graftd: the graft transfer-learning server");
  absl::ParseCommandLine(argc, argv);
  // Before any thread exists: glibc gives a thread created before this its
  // own arena, whose 64 MiB heaps are mapped and unmapped around every large
  // tensor (measured: a job thread on such an arena ran its feature pass with
  // 2,600 munmaps and 30% of the time in the kernel). Server::Start repeats
  // this for servers started inside other programs.
  if (absl::GetFlag(FLAGS_retain_host_memory)) graft::core::RetainHostMemory();
  graft::InitLogging();

  // OpenCV's decoders check their own pixel limit (read once, at the first
  // decode): held to graftd's, as a second line behind graft's header checks.
  const std::string pixels = std::to_string(absl::GetFlag(FLAGS_max_image_pixels));
  ::setenv("OPENCV_IO_MAX_IMAGE_PIXELS", pixels.c_str(), 1);

  graft::server::ServerOptions options;
#define GRAFT_OPTION(type, name, default_value, help) options.name = absl::GetFlag(FLAGS_##name);
#define GRAFT_OPTION_IN_PROCESS(type, name, in_process_default, graftd_default, help) \
  options.name = absl::GetFlag(FLAGS_##name);
#include "server/options.inc"
#undef GRAFT_OPTION
#undef GRAFT_OPTION_IN_PROCESS
  if (const char* env = std::getenv("GRAFT_DATABASE"); options.database.empty() && env != nullptr) options.database = env;
  for (const std::string& pair : absl::GetFlag(FLAGS_weights_file)) {
    const size_t eq = pair.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == pair.size()) {
      ABSL_LOG(ERROR) << "--weights_file takes NAME=FILE pairs, got '" << pair << "'";
      return 1;
    }
    options.weights_files[pair.substr(0, eq)] = pair.substr(eq + 1);
  }

  // Before the server starts: a SIGTERM that arrives as soon as "graftd
  // listening" is logged (a supervisor, a test that restarts graftd at once)
  // must shut it down cleanly, not kill it (the default action).
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  auto server = graft::server::GraftServer::Start(options);
  if (!server.ok()) {
    ABSL_LOG(ERROR) << "graftd failed to start: " << server.status().message();
    return 1;
  }
  ABSL_LOG(INFO) << "graftd listening: grpc " << options.host << ":" << (*server)->port() << " metrics "
                 << ((*server)->metrics_port() >= 0 ? options.host + ":" + std::to_string((*server)->metrics_port()) + "/metrics"
                                                    : std::string("off"))
                 << " http " << ((*server)->http_port() >= 0 ? options.host + ":" + std::to_string((*server)->http_port()) + "/v2"
                                                             : std::string("off"))
                 << " data_dir " << options.data_dir << " zoo_dir " << (*server)->zoo_dir();
  ABSL_LOG(INFO) << "graftd runs on LibTorch " << TORCH_VERSION << ", CUDA "
                 << (graft::core::CudaCompiled() ? "compiled in" : "not compiled in") << ", "
                 << (graft::core::CudaAvailable() ? "a CUDA device available" : "no CUDA device");

  std::thread waiter([&]() { (*server)->Wait(); });
  while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ABSL_LOG(INFO) << "graftd shutting down";
  (*server)->Shutdown();
  waiter.join();
  return 0;
}
