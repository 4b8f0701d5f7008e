// The graftd and graft binaries as a user runs them.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "tests/testing/graftd_process.h"
#include "tests/testing/http_get.h"
#include "tests/testing/paths.h"
#include "tests/testing/temp_dir.h"

namespace graft {
namespace {

struct CmdResult {
  int exit_code = -1;
  std::string out;
};

// Runs a shell command; stdout and stderr together.
CmdResult Shell(const std::string& cmd) {
  CmdResult r;
  FILE* pipe = ::popen((cmd + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) r.out.append(buf, n);
  const int status = ::pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(graftd_.Start()) << "graftd did not start; see " << graftd_.log();
    server_ = "--server=" + graftd_.address() + " --token_file=" + graftd_.token_file();
  }
  void TearDown() override { EXPECT_EQ(graftd_.Stop(SIGTERM), 0) << "graftd did not exit cleanly on SIGTERM"; }

  CmdResult Graft(const std::string& args) { return Shell(std::string(GRAFT_BIN) + " " + server_ + " " + args); }

  graft::testing::TempDir dir_;
  graft::testing::GraftdProcess graftd_{dir_.Join("data"), dir_.Join("graftd.log")};
  std::string server_;
};

TEST_F(CliTest, HealthPrintsServing) {
  const CmdResult r = Graft("health");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out, "SERVING\n");
}

TEST_F(CliTest, PredictPrintsATableOfTopK) {
  const std::string images = graft::testing::ImagesDir();
  const CmdResult r = Graft("predict --backbone MobileNetV2 -k 3 " + images + "/dog.jpg " + images + "/eagle.jpg");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find(images + "/dog.jpg\n   1  malamute"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(images + "/eagle.jpg\n   1  kite"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("   3  "), std::string::npos);
  EXPECT_EQ(r.out.find("   4  "), std::string::npos);
  EXPECT_NE(r.out.find("server: decode"), std::string::npos);
}

TEST_F(CliTest, BackbonesPullExplainsWhenDownloadsAreOff) {
  const CmdResult pull = Graft("backbones pull ResNet18");
  EXPECT_EQ(pull.exit_code, 1) << pull.out;
  EXPECT_NE(pull.out.find("FAILED_PRECONDITION"), std::string::npos) << pull.out;
  EXPECT_NE(pull.out.find("--allow_download"), std::string::npos) << pull.out;
  // Already resident: nothing to fetch, and it says so.
  const CmdResult present = Graft("backbones pull MobileNetV2");
  EXPECT_EQ(present.exit_code, 0) << present.out;
  EXPECT_NE(present.out.find("mobilenet_v2: weights verified and resident on cpu"), std::string::npos) << present.out;
  // The plain listing still works beside the subcommand.
  const CmdResult list = Graft("backbones");
  EXPECT_EQ(list.exit_code, 0) << list.out;
  EXPECT_NE(list.out.find("densenet121"), std::string::npos) << list.out;
}

TEST_F(CliTest, RegistersAndUnregistersACustomBackbone) {
  const std::string scripts = dir_.Join("scripts");
  ASSERT_EQ(Shell(graft::testing::Python() + " " + graft::testing::SourceDir() + "/tests/integration/make_torchscript.py " +
                  scripts + " " + graft::testing::WeightsDir())
                .exit_code,
            0);
  // 3*8*9+8 + 8*16*9+16 = 1392 parameters. A relative path is resolved by the CLI, not by graftd's working directory.
  const CmdResult reg = Shell("cd " + scripts + " && " + std::string(GRAFT_BIN) + " " + server_ +
                              " backbones register tiny tiny_pooled.pt --feature_dim 16 --input_size 128");
  EXPECT_EQ(reg.exit_code, 0) << reg.out;
  EXPECT_NE(reg.out.find("tiny: registered, 1392 parameters, 16 features, input 128x128, resident on cpu"),
            std::string::npos)
      << reg.out;
  const CmdResult list = Graft("backbones");
  EXPECT_NE(list.out.find("torchscript"), std::string::npos) << list.out;
  const CmdResult wrong = Graft("backbones register other " + scripts + "/tiny_pooled.pt --feature_dim 8");
  EXPECT_EQ(wrong.exit_code, 1) << wrong.out;
  EXPECT_NE(wrong.out.find("INVALID_ARGUMENT"), std::string::npos) << wrong.out;
  EXPECT_NE(wrong.out.find("produces [2, 16]"), std::string::npos) << wrong.out;
  const CmdResult embed = Graft("embed -b tiny " + graft::testing::ImagesDir() + "/dog.jpg");
  EXPECT_EQ(embed.exit_code, 0) << embed.out;
  EXPECT_NE(embed.out.find("dim 16"), std::string::npos) << embed.out;
  const CmdResult unreg = Graft("backbones unregister tiny");
  EXPECT_EQ(unreg.exit_code, 0) << unreg.out;
  EXPECT_NE(unreg.out.find("tiny: unregistered"), std::string::npos) << unreg.out;
  EXPECT_EQ(Graft("backbone tiny").exit_code, 1);
}

TEST_F(CliTest, JsonOutputUsesProtoFieldNames) {
  const CmdResult list = Graft("--json backbones");
  ASSERT_EQ(list.exit_code, 0) << list.out;
  const auto doc = nlohmann::json::parse(list.out);
  ASSERT_GE(doc["backbones"].size(), 26u);  // the zoo as of the full-zoo work; it only grows
  bool found = false;
  for (const auto& b : doc["backbones"]) {
    if (b["name"] == "squeezenet1_1") {
      found = true;
      EXPECT_EQ(b["featureDim"], 512);
      EXPECT_EQ(b["weights"]["present"], true);
      EXPECT_EQ(b["residency"]["device"], "cpu");
    }
  }
  EXPECT_TRUE(found);
  const CmdResult predict = Graft("predict --json -b squeezenet1_1 -k 2 " + graft::testing::ImagesDir() + "/dog.jpg");
  ASSERT_EQ(predict.exit_code, 0) << predict.out;
  const auto p = nlohmann::json::parse(predict.out);
  EXPECT_EQ(p["results"][0]["predictions"][0]["top"].size(), 2u);
  EXPECT_EQ(p["results"][0]["backbone"], "squeezenet1_1");
  const CmdResult embed = Graft("embed --json -b mobilenet_v2 " + graft::testing::ImagesDir() + "/horses.jpg");
  ASSERT_EQ(embed.exit_code, 0) << embed.out;
  const auto e = nlohmann::json::parse(embed.out);
  EXPECT_EQ(e["dim"], 1280);
  EXPECT_EQ(e["embeddings"][0]["values"].size(), 1280u);
}

TEST_F(CliTest, ShowsOneBackbone) {
  const CmdResult r = Graft("backbone ResNet50");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("name:        resnet50"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("parameters:  25557032"), std::string::npos);
  EXPECT_NE(r.out.find("weights:     not present"), std::string::npos);
}

TEST_F(CliTest, FailuresExitNonZeroWithOneLine) {
  const CmdResult missing = Graft("predict -b resnet18 " + graft::testing::ImagesDir() + "/dog.jpg");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_EQ(missing.out.rfind("graft: FAILED_PRECONDITION: backbone 'resnet18' has no ImageNet weights", 0), 0u) << missing.out;
  EXPECT_EQ(std::count(missing.out.begin(), missing.out.end(), '\n'), 1);
  const CmdResult unknown = Graft("backbone nosuchnet");
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.out.find("NOT_FOUND"), std::string::npos);
  const CmdResult down = Shell(std::string(GRAFT_BIN) + " --server=127.0.0.1:1 health");
  EXPECT_EQ(down.exit_code, 1);
  EXPECT_NE(down.out.find("UNAVAILABLE"), std::string::npos) << down.out;
}

TEST_F(CliTest, UploadTrainWatchPredictExport) {
  const std::string data = graft::testing::SharedDir() + "/data/hymenoptera";
  const CmdResult up = Graft("datasets upload " + data + " --name hym");
  ASSERT_EQ(up.exit_code, 0) << up.out;
  EXPECT_NE(up.out.find("layout:   train/ + val/"), std::string::npos) << up.out;
  EXPECT_NE(up.out.find("rejected files:\n  train/ants/imageNotFound.gif: GIF is not a supported image format"),
            std::string::npos) << up.out;

  const CmdResult train = Graft("train -b MobileNetV2 -d hym -e 2 --input_size 112 --seed 5 --watch");
  ASSERT_EQ(train.exit_code, 0) << train.out;
  EXPECT_NE(train.out.find("state: RUNNING"), std::string::npos) << train.out;
  EXPECT_NE(train.out.find("epoch stage     loss     acc val_loss val_acc        lr    img/s    time"), std::string::npos)
      << train.out;
  EXPECT_NE(train.out.find("state: SUCCEEDED"), std::string::npos);
  const auto at = train.out.find("model: model-");
  ASSERT_NE(at, std::string::npos) << train.out;
  const std::string model = train.out.substr(at + 7, train.out.find('\n', at) - at - 7);

  const CmdResult jobs = Graft("jobs");
  EXPECT_NE(jobs.out.find("SUCCEEDED  mobilenet_v2"), std::string::npos) << jobs.out;
  const CmdResult predict = Graft("predict -m " + model + " " + data + "/val/bees/10870992_eebeeb3a12.jpg");
  ASSERT_EQ(predict.exit_code, 0) << predict.out;
  EXPECT_NE(predict.out.find("   1  bees"), std::string::npos) << predict.out;
  const std::string file = dir_.Join("model.safetensors");
  const CmdResult exported = Graft("export " + model + " -o " + file);
  ASSERT_EQ(exported.exit_code, 0) << exported.out;
  EXPECT_GT(std::filesystem::file_size(file), 8'000'000u);
  const auto listed = nlohmann::json::parse(Graft("--json models").out);
  EXPECT_EQ(listed["models"][0]["id"], model);
  EXPECT_EQ(listed["models"][0]["classNames"], nlohmann::json({"ants", "bees"}));

  const std::string page = graft::testing::HttpGet(graftd_.metrics_port(), "/metrics");
  EXPECT_NE(page.find("graft_training_epochs_total{backbone=\"mobilenet_v2\"} 2"), std::string::npos) << page;
  EXPECT_NE(page.find("graft_jobs{state=\"SUCCEEDED\"} 1"), std::string::npos);
  EXPECT_NE(page.find("graft_models 1"), std::string::npos);
  EXPECT_NE(page.find("graft_datasets 1"), std::string::npos);
  EXPECT_NE(page.find("graft_upload_rejected_files_total 1"), std::string::npos);
  EXPECT_NE(page.find("graft_training_accuracy_ratio{backbone=\"mobilenet_v2\",split=\"val\"}"), std::string::npos);
  EXPECT_NE(page.find("graft_training_images_per_second{backbone=\"mobilenet_v2\"}"), std::string::npos);

  const CmdResult rm = Graft("datasets rm hym");
  EXPECT_EQ(rm.exit_code, 0) << rm.out;
  const CmdResult gone = Graft("datasets show hym");
  EXPECT_EQ(gone.exit_code, 1);
}

}  // namespace
}  // namespace graft
