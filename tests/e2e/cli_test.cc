// The graftd and graft binaries as a user runs them.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "core/util/files.h"
#include "tests/testing/graftd_process.h"
#include "tests/testing/http_get.h"
#include "tests/testing/paths.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tls_certs.h"

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
  EXPECT_NE(pull.out.find("--offline"), std::string::npos) << pull.out;
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
  // Resident once used (graftd loads backbones lazily).
  ASSERT_EQ(Graft("predict -b squeezenet1_1 " + graft::testing::ImagesDir() + "/dog.jpg").exit_code, 0);
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
      EXPECT_TRUE(b["residency"].contains("lastUsedAt")) << b.dump();
    }
  }
  EXPECT_TRUE(found);
  EXPECT_GT(std::stoll(doc["memory"]["backboneBytes"].get<std::string>()), 0);  // int64: a JSON string
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

TEST_F(CliTest, TyposAreUnknownOptionsAndCommandsWithASuggestion) {
  const std::string dog = graft::testing::ImagesDir() + "/dog.jpg";
  // A misspelt option before an image is not read as an image file.
  const CmdResult option = Graft("predict --backbon MobileNetV2 " + dog);
  EXPECT_EQ(option.exit_code, 2);
  EXPECT_EQ(option.out,
            "graft: unknown option '--backbon' of 'graft predict'; did you mean '--backbone'? (see --help)\n");
  const CmdResult value = Graft("predict --backbone MobileNetV2 --topk 3 " + dog);
  EXPECT_EQ(value.exit_code, 2);
  EXPECT_NE(value.out.find("unknown option '--topk' of 'graft predict'; did you mean '--top_k'?"), std::string::npos)
      << value.out;
  const CmdResult command = Graft("predcit -b MobileNetV2 " + dog);
  EXPECT_EQ(command.exit_code, 2);
  EXPECT_EQ(command.out, "graft: unknown command 'predcit'; did you mean 'predict'? (see --help)\n");
  const CmdResult nested = Graft("models shwo my-model");
  EXPECT_EQ(nested.exit_code, 2);
  EXPECT_NE(nested.out.find("unknown command 'shwo' of 'graft models'; did you mean 'show'?"), std::string::npos)
      << nested.out;
  // --flag=value and a short option's value are values, not commands.
  EXPECT_EQ(Graft("predict --backbone=MobileNetV2 -k 1 " + dog).exit_code, 0);
  // -e 0 is refused, not taken for the default of 10 epochs.
  const CmdResult zero = Graft("train -b MobileNetV2 -d nothing -e 0");
  EXPECT_EQ(zero.exit_code, 2);
  EXPECT_NE(zero.out.find("--epochs"), std::string::npos) << zero.out;
  // $GRAFT_SERVER names the server, as it does for the SDK.
  const CmdResult env = Shell("GRAFT_SERVER=" + graftd_.address() + " " + GRAFT_BIN +
                              " --token_file=" + graftd_.token_file() + " health");
  EXPECT_EQ(env.exit_code, 0) << env.out;
  EXPECT_EQ(env.out, "SERVING\n");
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
  EXPECT_NE(train.out.find("epoch stage     loss     acc val_loss val_acc  val_f1        lr    img/s    time"), std::string::npos)
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
  // The report: at the job's end (models show) and on demand (evaluate).
  const CmdResult show = Graft("models show " + model);
  ASSERT_EQ(show.exit_code, 0) << show.out;
  EXPECT_NE(show.out.find("evaluated on 153 images of hym (val)"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("CLASS  PRECISION  RECALL   F1       SUPPORT\nants"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("confusion (rows: true class, columns: predicted"), std::string::npos) << show.out;
  const CmdResult evaluated = Graft("evaluate " + model + " --dataset hym --split train");
  ASSERT_EQ(evaluated.exit_code, 0) << evaluated.out;
  EXPECT_NE(evaluated.out.find("evaluated on 244 images of hym (train)"), std::string::npos) << evaluated.out;
  const auto report = nlohmann::json::parse(Graft("--json evaluate " + model + " -d hym").out);
  EXPECT_EQ(report["images"], "153");  // int64 is a string in proto JSON
  EXPECT_EQ(report["classes"].size(), 2u);
  EXPECT_EQ(report["confusion"].size(), 4u);
  // Batch prediction to CSV and JSON Lines: one row per image, in dataset order.
  const std::string csv = dir_.Join("val.csv"), jsonl = dir_.Join("val.jsonl");
  const CmdResult to_csv = Graft("predict -m " + model + " --dataset hym -o " + csv);
  ASSERT_EQ(to_csv.exit_code, 0) << to_csv.out;
  EXPECT_NE(to_csv.out.find("wrote 153 predictions to " + csv), std::string::npos) << to_csv.out;
  const std::string rows = core::ReadFile(csv).value();
  EXPECT_EQ(rows.rfind("file,true_label,true_index,label_1,probability_1,label_2,probability_2\nval/ants/", 0), 0u)
      << rows.substr(0, 200);
  EXPECT_EQ(std::count(rows.begin(), rows.end(), '\n'), 154);
  ASSERT_EQ(Graft("predict -m " + model + " --dataset hym --split all -k 1 -o " + jsonl).exit_code, 0);
  const std::string lines = core::ReadFile(jsonl).value();
  EXPECT_EQ(std::count(lines.begin(), lines.end(), '\n'), 153 + 244);
  const auto first = nlohmann::json::parse(lines.substr(0, lines.find('\n')));
  EXPECT_EQ(first["trueLabel"], "ants");
  EXPECT_EQ(first["top"].size(), 1u);
  EXPECT_FALSE(std::filesystem::exists(jsonl + ".part"));
  const CmdResult no_model = Graft("predict --dataset hym -o " + csv);
  EXPECT_EQ(no_model.exit_code, 1);
  EXPECT_NE(no_model.out.find("--dataset takes exactly one --model"), std::string::npos) << no_model.out;

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

// On a terminal (script(1) gives graft one) the watch shows the feature
// pass as it goes, not only the epochs; lr-find says what it runs before its
// one long call.
TEST_F(CliTest, TheFeaturePassAndTheRangeTestShowWhatTheyAreDoing) {
  ASSERT_EQ(Graft("datasets upload " + graft::testing::SharedDir() + "/data/hymenoptera --name hym").exit_code, 0);
  const std::string train = std::string(GRAFT_BIN) + " " + server_ + " train -b squeezenet1_1 -d hym -e 1 --input_size 112 -w";
  const CmdResult watched = Shell("script -qec '" + train + "' /dev/null");
  ASSERT_EQ(watched.exit_code, 0) << watched.out;
  EXPECT_NE(watched.out.find("\rfeatures of squeezenet1_1 ["), std::string::npos) << watched.out;
  EXPECT_NE(watched.out.find("state: SUCCEEDED"), std::string::npos) << watched.out;
  const CmdResult found = Graft("lr-find -b squeezenet1_1 -d hym --input_size 112 --steps 20");
  ASSERT_EQ(found.exit_code, 0) << found.out;
  EXPECT_EQ(found.out.rfind("range test on squeezenet1_1 over hym: the frozen features of every training image, then one "
                            "batch at each of 20 rising rates\n", 0), 0u) << found.out;
  EXPECT_NE(found.out.find("suggested learning rate:"), std::string::npos) << found.out;
}

}  // namespace
}  // namespace graft

namespace graft {
namespace {

// graft report's page in a real browser (Debian's chromium, headless, driven
// by tests/report/browser_check.py over the DevTools protocol): no console
// error, no request, one point per epoch on every curve, the stage boundary
// and restored epoch marked, the confusion cells the report's; a screenshot.
TEST_F(CliTest, ReportPageOpensInABrowserWithEveryEpochAndTheReportsConfusion) {
  const std::string data = graft::testing::SharedDir() + "/data/hymenoptera";
  ASSERT_EQ(Graft("datasets upload " + data + " --name hym").exit_code, 0);
  // Two stages, macro F1 monitored, classes drawn evenly.
  const CmdResult train = Graft(
      "train -b MobileNetV2 -d hym -e 2 --fine_tune_epochs 2 --fine_tune top:1 --input_size 112 --seed 3 "
      "--early_stopping --monitor val_macro_f1 --patience 3 --balanced_sampling --model_name insects --watch");
  ASSERT_EQ(train.exit_code, 0) << train.out;
  EXPECT_NE(train.out.find("* the frozen part's output was cached: img/s counts the trainable part"), std::string::npos)
      << train.out;
  // Not a terminal: graft watch prints the learning curves once, at the end.
  const auto curves = train.out.find("learning curves:\nloss     train ");
  ASSERT_NE(curves, std::string::npos) << train.out;
  const std::string loss_line = train.out.substr(curves + 17, train.out.find('\n', curves + 17) - curves - 17);
  // 4 epochs: 2 + '|' + 2 blocks per curve (each block 3 bytes of UTF-8).
  EXPECT_NE(loss_line.find("train "), std::string::npos);
  const std::string train_curve = loss_line.substr(15, loss_line.find("  val ") - 15);
  EXPECT_EQ(train_curve.size(), 4 * 3 + 1u) << loss_line;
  EXPECT_EQ(train_curve[6], '|') << loss_line;

  const std::string page = dir_.Join("report.html"), model_json = dir_.Join("model.json"), shot = dir_.Join("report.png");
  const CmdResult report = Graft("report insects -o " + page);
  ASSERT_EQ(report.exit_code, 0) << report.out;
  EXPECT_NE(report.out.find("wrote " + page), std::string::npos) << report.out;
  const CmdResult show = Graft("--json models show insects");
  ASSERT_EQ(show.exit_code, 0) << show.out;
  ASSERT_TRUE(core::WriteFileAtomic(model_json, show.out).ok());
  const auto model = nlohmann::json::parse(show.out);
  EXPECT_EQ(model["history"].size(), 4u);
  EXPECT_EQ(model["spec"]["earlyStopping"]["monitor"], "MONITOR_VAL_MACRO_F1");
  EXPECT_EQ(model["spec"]["balancedSampling"], true);

  const CmdResult browser = Shell(std::string(GRAFT_PYTHON) + " " + GRAFT_SOURCE_DIR + "/tests/report/browser_check.py " +
                                  page + " " + model_json + " " + shot);
  EXPECT_EQ(browser.exit_code, 0) << browser.out;
  const std::string png = core::ReadFile(shot).value_or("");
  EXPECT_EQ(png.rfind("\x89PNG\r\n\x1a\n", 0), 0u) << "no PNG screenshot";
  std::cout << browser.out;
  // Kept for a person to look at when GRAFT_KEEP_REPORT names a folder.
  if (const char* keep = std::getenv("GRAFT_KEEP_REPORT")) {
    std::filesystem::copy_file(page, std::string(keep) + "/report.html", std::filesystem::copy_options::overwrite_existing);
    std::filesystem::copy_file(shot, std::string(keep) + "/report.png", std::filesystem::copy_options::overwrite_existing);
  }
}

TEST_F(CliTest, TokensAreMadeByTheAdminAndHoldTheirRoles) {
  // Without a token nothing but health answers, and the message says what to do.
  const std::string bare = std::string(GRAFT_BIN) + " --server=" + graftd_.address() + " ";
  const CmdResult anonymous = Shell("env -u GRAFT_TOKEN " + bare + "backbones");
  EXPECT_EQ(anonymous.exit_code, 1);
  EXPECT_NE(anonymous.out.find("graft: UNAUTHENTICATED: ListBackbones: no token"), std::string::npos) << anonymous.out;
  EXPECT_NE(anonymous.out.find("admin.token"), std::string::npos) << anonymous.out;
  EXPECT_EQ(Shell("env -u GRAFT_TOKEN " + bare + "health").exit_code, 0);

  // The admin makes an inference token; it is the last line, alone.
  const CmdResult created = Graft("tokens create app --role inference");
  ASSERT_EQ(created.exit_code, 0) << created.out;
  const std::string body = created.out.substr(0, created.out.size() - 1);
  const std::string token = body.substr(body.rfind('\n') + 1);
  EXPECT_EQ(token.rfind("graft_", 0), 0u) << created.out;
  const CmdResult json = Graft("--json tokens create ci --role train");
  ASSERT_EQ(json.exit_code, 0) << json.out;
  const auto doc = nlohmann::json::parse(json.out);
  EXPECT_EQ(doc["name"], "ci");
  EXPECT_EQ(doc["role"], "train");
  EXPECT_EQ(doc["token"].get<std::string>().rfind("graft_", 0), 0u);

  // $GRAFT_TOKEN: predicts, may not upload, is who it says.
  const std::string as_app = "GRAFT_TOKEN=" + token + " " + bare;
  const CmdResult predict = Shell(as_app + "predict -b MobileNetV2 " + graft::testing::ImagesDir() + "/dog.jpg");
  EXPECT_EQ(predict.exit_code, 0) << predict.out;
  EXPECT_NE(predict.out.find("malamute"), std::string::npos) << predict.out;
  const CmdResult upload = Shell(as_app + "datasets upload " + graft::testing::SharedDir() + "/data/hymenoptera --name x");
  EXPECT_EQ(upload.exit_code, 1);
  EXPECT_NE(upload.out.find("PERMISSION_DENIED: UploadDataset needs the role train; 'app' has the role inference"),
            std::string::npos)
      << upload.out;
  EXPECT_EQ(Shell(as_app + "tokens whoami").out, "app (inference)\n");
  const CmdResult listed = Graft("tokens");
  EXPECT_NE(listed.out.find("app"), std::string::npos);
  EXPECT_NE(listed.out.find("inference"), std::string::npos);
  EXPECT_EQ(listed.out.find(token), std::string::npos);
  ASSERT_EQ(Graft("tokens revoke app").exit_code, 0);
  EXPECT_NE(Shell(as_app + "tokens whoami").out.find("UNAUTHENTICATED"), std::string::npos);
}

// Server reflection (--reflection), as grpcurl uses it: every service it
// lists resolves to the file that defines it, the health service included
// (gRPC's built-in one has no descriptor unless graft links its own in).
TEST(Reflection, EveryListedServiceResolvesToItsFileHealthIncluded) {
  graft::testing::TempDir dir;
  graft::testing::GraftdProcess graftd{dir.Join("data"), dir.Join("graftd.log")};
  ASSERT_TRUE(graftd.Start({"--reflection"})) << "see " << graftd.log();
  const CmdResult probe = Shell(std::string(GRAFT_PYTHON) + " " + GRAFT_SOURCE_DIR + "/tests/e2e/reflection_probe.py " +
                                graftd.address());
  EXPECT_EQ(probe.exit_code, 0) << probe.out;
  EXPECT_NE(probe.out.find("grpc.health.v1.Health: grpc/health/v1/health.proto"), std::string::npos) << probe.out;
  EXPECT_NE(probe.out.find("graft.v1.Inference: graft/v1/inference.proto"), std::string::npos) << probe.out;
  EXPECT_EQ(graftd.Stop(SIGTERM), 0);
}

TEST(CliTls, MutualTlsWithATokenEndToEnd) {
  graft::testing::TempDir dir;
  ASSERT_EQ(graft::testing::MakeTestCertificates(dir.path()), "");
  graft::testing::GraftdProcess graftd(dir.Join("data"), dir.Join("graftd.log"));
  ASSERT_TRUE(graftd.Start({"--tls_cert=" + dir.Join("server.pem"), "--tls_key=" + dir.Join("server.key"),
                            "--tls_client_ca=" + dir.Join("ca.pem")}))
      << graftd.log();
  const std::string graft = std::string(GRAFT_BIN) + " --server=localhost:" + std::to_string(graftd.port()) +
                            " --token_file=" + graftd.token_file() + " ";
  const std::string mtls = "--tls_ca=" + dir.Join("ca.pem") + " --tls_cert=" + dir.Join("client.pem") +
                           " --tls_key=" + dir.Join("client.key") + " ";
  EXPECT_EQ(Shell(graft + mtls + "tokens whoami").out, "admin (admin)\n");
  const CmdResult predict = Shell(graft + mtls + "predict -b MobileNetV2 " + graft::testing::ImagesDir() + "/dog.jpg");
  EXPECT_EQ(predict.exit_code, 0) << predict.out;
  EXPECT_NE(predict.out.find("malamute"), std::string::npos) << predict.out;
  // Plaintext, and TLS without the client certificate, are turned away.
  EXPECT_NE(Shell(graft + "tokens whoami").out.find("UNAVAILABLE"), std::string::npos);
  EXPECT_NE(Shell(graft + "--tls_ca=" + dir.Join("ca.pem") + " tokens whoami").out.find("UNAVAILABLE"),
            std::string::npos);
  EXPECT_EQ(graftd.Stop(SIGTERM), 0);
}

// The README's first use, typed as a new user would: deploy/run.sh, then
// health and a prediction with the admin token it wrote.
TEST(FirstUse, RunShStartsAServerThatAnswersWithTheAdminToken) {
  graft::testing::TempDir dir;
  graft::testing::GraftdProcess graftd(dir.Join("data"), dir.Join("run.log"));
  const std::string build_dir = std::filesystem::path(GRAFT_BIN).parent_path().parent_path().string();
  ::setenv("GRAFT_BUILD_DIR", build_dir.c_str(), 1);
  ASSERT_TRUE(graftd.StartCommand({"/bin/bash", graft::testing::SourceDir() + "/deploy/run.sh",
                                   "--zoo_dir=" + graft::testing::WeightsDir(), "--port=0", "--metrics_port=0",
                                   "--http_port=0"}))
      << "deploy/run.sh did not start graftd on loopback; see " << graftd.log();
  const std::string graft = "cd " + graft::testing::SourceDir() + " && GRAFT_TOKEN=$(cat " + graftd.token_file() +
                            ") " + std::string(GRAFT_BIN) + " --server=" + graftd.address() + " ";
  const CmdResult health = Shell(graft + "health");
  EXPECT_EQ(health.out, "SERVING\n");
  const CmdResult predict = Shell(graft + "predict --backbone MobileNetV2 ../shared/images/dog.jpg");
  EXPECT_EQ(predict.exit_code, 0) << predict.out;
  EXPECT_NE(predict.out.find("   1  malamute"), std::string::npos) << predict.out;
  EXPECT_EQ(graftd.Stop(SIGTERM), 0);
}

}  // namespace
}  // namespace graft
