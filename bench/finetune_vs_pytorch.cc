// bench/finetune_vs_pytorch: the hymenoptera transfer-learning job through
// graftd (in-process server, real gRPC client over loopback; upload excluded,
// timed from CreateJob to the model answering a Predict) against the PyTorch
// tutorial loop and an expert hand-written script (bench/reference/), all in
// this invocation, on the same machine and thread count.
//
//   finetune_vs_pytorch [--epochs 25] [--tutorial on|off] [--expert on|off] [--seeds 0,1,2,3,4] [--fp16 on|off] [--threads N]

#include <torch/torch.h>

#include <chrono>
#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/bench_server.h"
#include "client/client.h"
#include "core/util/files.h"
#include "server/server.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  int epochs = 25;
  bool tutorial = true;
  bool expert = true;
  std::vector<int> seeds{0, 1, 2, 3, 4};
  bool fp16 = true;
  int threads = static_cast<int>(std::thread::hardware_concurrency());
};

struct GraftRun {
  double seconds = 0;
  double best_val_accuracy = 0;
  std::string error;
};

GraftRun RunGraft(const Args& args, int seed) {
  GraftRun run;
  graft::bench::ScratchDir dir;
  graft::server::ServerOptions options = graft::bench::BenchServerOptions(dir.path(), args.threads);
  options.feature_cache_fp16 = args.fp16;
  auto server = graft::server::GraftServer::Start(options);
  if (!server.ok()) return {0, 0, std::string(server.status().message())};
  graft::client::GraftClient client(absl::StrCat("127.0.0.1:", (*server)->port()),
                                    graft::bench::BenchClientOptions(dir.path()));
  auto dataset = client.UploadDataset(graft::bench::SharedDir() + "/data/hymenoptera", "hymenoptera");
  if (!dataset.ok()) return {0, 0, std::string(dataset.status().message())};

  graft::v1::JobSpec spec;
  spec.set_backbone("mobilenet_v2");
  spec.set_dataset(dataset->dataset().id());
  spec.set_batch_size(32);
  spec.set_seed(static_cast<uint64_t>(seed));
  auto* stage = spec.add_stages();
  stage->set_epochs(args.epochs);
  stage->set_train("head");
  stage->mutable_optimizer()->set_kind(graft::v1::OPTIMIZER_ADAM);
  stage->mutable_optimizer()->set_learning_rate(1e-3);

  const auto start = Clock::now();
  auto job = client.CreateJob(spec);
  if (!job.ok()) return {0, 0, std::string(job.status().message())};
  const auto watched = client.WatchJob(job->id(), false, [](const graft::v1::JobEvent&) { return true; });
  auto done = client.GetJob(job->id());
  if (!watched.ok() || !done.ok() || done->state() != graft::v1::JOB_STATE_SUCCEEDED) {
    return {0, 0, done.ok() ? "job ended " + graft::v1::JobState_Name(done->state()) + ": " + done->error()
                            : std::string(done.status().message())};
  }
  graft::v1::PredictRequest predict;
  predict.add_models(done->model_id());
  auto bytes = graft::core::ReadFile(graft::bench::SharedDir() + "/images/dog.jpg");
  predict.add_images()->set_encoded(bytes.value_or(""));
  const auto served = client.Predict(predict);
  run.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (!served.ok()) run.error = "the model does not serve: " + std::string(served.status().message());
  run.best_val_accuracy = done->best().val_accuracy();
  return run;
}

std::map<std::string, double> RunReference(const std::string& script, const Args& args, int seed) {
  const std::string cmd = absl::StrCat(graft::bench::kPython, " ", GRAFT_BENCH_DIR, "/reference/", script,
                                       " --data ", graft::bench::SharedDir(), "/data/hymenoptera --weights ",
                                       graft::bench::SharedDir(), "/weights/mobilenet_v2-imagenet.pth --epochs ",
                                       args.epochs, " --threads ", args.threads, " --seed ", seed);
  return graft::bench::ParseValues(graft::bench::RunCommand(cmd));
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--epochs") args.epochs = std::stoi(value);
    else if (flag == "--tutorial") args.tutorial = value == "on";
    else if (flag == "--expert") args.expert = value == "on";
    else if (flag == "--seeds") {
      args.seeds.clear();
      for (const auto& s : absl::StrSplit(value, ',')) args.seeds.push_back(std::stoi(std::string(s)));
    }
    else if (flag == "--fp16") args.fp16 = value == "on";
    else if (flag == "--threads") args.threads = std::stoi(value);
    else {
      std::cerr << "unknown flag " << flag << "\n";
      return 2;
    }
  }
  std::cout << "threads: " << args.threads << "\nepochs: " << args.epochs << "\nseeds: " << args.seeds.size() << "\n";
  // Best validation accuracy moves by a few images between seeds (153 in
  // all): both sides run every seed and are compared on the mean.
  double graft_seconds = 0, graft_accuracy = 0;
  for (int seed : args.seeds) {
    const GraftRun graft = RunGraft(args, seed);
    if (!graft.error.empty()) {
      std::cerr << "graft run failed: " << graft.error << "\n";
      return 1;
    }
    std::cout << "graft_seed_" << seed << "_seconds: " << graft.seconds << "\ngraft_seed_" << seed
              << "_best_val_accuracy: " << graft.best_val_accuracy << "\n";
    graft_seconds += graft.seconds / static_cast<double>(args.seeds.size());
    graft_accuracy += graft.best_val_accuracy / static_cast<double>(args.seeds.size());
  }
  std::cout << "graft_seconds: " << graft_seconds << "\ngraft_best_val_accuracy: " << graft_accuracy << "\n";
  if (args.expert) {
    double seconds = 0, accuracy = 0;
    for (int seed : args.seeds) {
      const auto expert = RunReference("finetune_expert.py", args, seed);
      if (!expert.count("wall_seconds")) {
        std::cerr << "the expert reference printed no result\n";
        return 1;
      }
      std::cout << "expert_seed_" << seed << "_seconds: " << expert.at("wall_seconds") << "\nexpert_seed_" << seed
                << "_best_val_accuracy: " << expert.at("best_val_accuracy") << "\n";
      seconds += expert.at("wall_seconds") / static_cast<double>(args.seeds.size());
      accuracy += expert.at("best_val_accuracy") / static_cast<double>(args.seeds.size());
    }
    std::cout << "expert_seconds: " << seconds << "\nexpert_best_val_accuracy: " << accuracy
              << "\nspeedup_vs_expert: " << seconds / graft_seconds
              << "\naccuracy_minus_expert: " << graft_accuracy - accuracy << "\n";
  }
  if (args.tutorial) {
    const auto tutorial = RunReference("finetune_tutorial.py", args, args.seeds.front());
    if (!tutorial.count("wall_seconds")) {
      std::cerr << "the tutorial reference printed no result\n";
      return 1;
    }
    std::cout << "tutorial_seconds: " << tutorial.at("wall_seconds")
              << "\ntutorial_best_val_accuracy: " << tutorial.at("best_val_accuracy")
              << "\nspeedup_vs_tutorial: " << tutorial.at("wall_seconds") / graft_seconds << "\n";
  }
  return 0;
}
