// Weights on first use, as a new user meets them: a backbone without weights
// is fetched from the operator's mirror (official torchvision file names, the
// SHA-256 prefix in the name checked), verified and used; a job waits QUEUED
// while it happens; --offline says what to do; a corrupted file is never
// used; weights put into the zoo directory are used without a restart.

#include <gtest/gtest.h>

#include <filesystem>

#include "tests/integration/security_fixture.h"
#include "tests/testing/http_server.h"
#include "tests/testing/local_server.h"

namespace graft::security_testing {
namespace {

// The shared weights under torchvision's naming scheme: the first 8 hex
// digits of each file's SHA-256, as the operator's mirror would name them.
constexpr char kSqueeze11[] = "squeezenet1_1-26933201.pth";
constexpr char kSqueeze10[] = "squeezenet1_0-1355b621.pth";
constexpr int kDogsled = 537;  // squeezenet1_1's top class for dog.jpg

class FirstUseTest : public ::testing::Test {
 protected:
  void Start(bool offline) {
    ServerOptions options = testing::LocalServerOptions(dir_.Join("data"));
    options.zoo_dir.clear();  // <data_dir>/zoo, empty
    options.offline = offline;
    options.weights_base_url = mirror_.Url("/models/");
    options.weights_files = {{"squeezenet1_1", kSqueeze11}, {"SqueezeNet1_0", kSqueeze10}};
    auto server = GraftServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    client_ = std::make_unique<client::GraftClient>("127.0.0.1:" + std::to_string(server_->port()),
                                                    testing::AdminClientOptions(dir_.Join("data")));
  }
  static std::string Shared(const std::string& file) {
    auto bytes = core::ReadFile(testing::WeightsDir() + "/" + file);
    EXPECT_TRUE(bytes.ok()) << bytes.status();
    return bytes.ok() ? *bytes : "";
  }
  static v1::PredictRequest Dog(const std::string& backbone) {
    v1::PredictRequest request;
    request.set_backbone(backbone);
    request.set_top_k(1);
    request.add_images()->set_encoded(*core::ReadFile(testing::ImagesDir() + "/dog.jpg"));
    return request;
  }
  bool ZooEmpty() const { return fs::is_empty(server_->zoo_dir()); }

  testing::TempDir dir_;
  testing::HttpServer mirror_;
  std::unique_ptr<GraftServer> server_;
  std::unique_ptr<client::GraftClient> client_;
};

TEST_F(FirstUseTest, PredictFetchesVerifiesAndAnswers) {
  mirror_.Serve(std::string("/models/") + kSqueeze11, Shared("squeezenet1_1-imagenet.pth"));
  Start(/*offline=*/false);
  const auto before = client_->GetBackbone("squeezenet1_1");
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_FALSE(before->weights().present());
  const auto answer = client_->Predict(Dog("SqueezeNet1_1"));
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->results(0).predictions(0).top(0).index(), kDogsled);
  EXPECT_TRUE(fs::exists(fs::path(server_->zoo_dir()) / kSqueeze11));
  const auto after = client_->GetBackbone("squeezenet1_1");
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_TRUE(after->weights().present());
  EXPECT_EQ(after->residency().device(), "cpu");
}

TEST_F(FirstUseTest, AnInferenceTokenStartsNoDownloadAnAdminsFirstUseDoes) {
  mirror_.Serve(std::string("/models/") + kSqueeze11, Shared("squeezenet1_1-imagenet.pth"));
  Start(/*offline=*/false);
  auto token = client_->CreateToken("app", v1::ROLE_INFERENCE);
  ASSERT_TRUE(token.ok()) << token.status();
  client::ClientOptions app_options;
  app_options.token = token->token();
  client::GraftClient app("127.0.0.1:" + std::to_string(server_->port()), app_options);
  const auto refused = app.Predict(Dog("squeezenet1_1"));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
  EXPECT_NE(refused.status().message().find("inference tokens start no downloads"), std::string::npos)
      << refused.status();
  v1::EmbedRequest embed;
  embed.set_backbone("squeezenet1_1");
  *embed.add_images() = Dog("squeezenet1_1").images(0);
  EXPECT_EQ(app.Embed(embed).status().code(), absl::StatusCode::kFailedPrecondition);
  // A download would have connected to the mirror by now.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(mirror_.requests(), 0) << "an inference token's call started a download";
  EXPECT_TRUE(ZooEmpty());
  // The admin's first use fetches them; from then on the application predicts.
  ASSERT_TRUE(client_->Predict(Dog("squeezenet1_1")).ok());
  const auto answer = app.Predict(Dog("squeezenet1_1"));
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->results(0).predictions(0).top(0).index(), kDogsled);
}

TEST_F(FirstUseTest, AJobWaitsQueuedWhileItsWeightsAreFetchedThenRuns) {
  mirror_.Serve(std::string("/models/") + kSqueeze10, Shared("squeezenet1_0-imagenet.pth"));
  mirror_.set_pause_per_piece_ms(25);  // ~5 MB in 64 KiB pieces: about 2 s
  Start(/*offline=*/false);
  const auto uploaded = client_->UploadDataset(TinyDataset(dir_.path()), "colours");
  ASSERT_TRUE(uploaded.ok()) << uploaded.status();
  v1::JobSpec spec;
  spec.set_backbone("squeezenet1_0");
  spec.set_dataset("colours");
  spec.add_stages()->set_epochs(1);
  const auto job = client_->CreateJob(spec);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state(), v1::JOB_STATE_QUEUED);
  std::vector<std::pair<v1::JobState, std::string>> states;
  ASSERT_TRUE(client_
                  ->WatchJob(job->id(), false,
                             [&](const v1::JobEvent& e) {
                               if (e.has_state()) states.emplace_back(e.state().state(), e.state().reason());
                               return true;
                             })
                  .ok());
  ASSERT_FALSE(states.empty());
  EXPECT_EQ(states.back().first, v1::JOB_STATE_SUCCEEDED) << states.back().second;
  int fetching = 0;
  bool started = false;
  for (const auto& [state, reason] : states) {
    if (reason.rfind("fetching weights (", 0) == 0) {
      EXPECT_EQ(state, v1::JOB_STATE_QUEUED);
      EXPECT_FALSE(started) << "a fetch event after the job started";
      ++fetching;
    }
    started = started || state == v1::JOB_STATE_RUNNING;
  }
  EXPECT_GE(fetching, 2) << "the job said nothing while its weights were fetched";
}

TEST_F(FirstUseTest, OfflineAnswersFailedPreconditionNamingTheFile) {
  Start(/*offline=*/true);
  const auto answer = client_->Predict(Dog("resnet18"));
  EXPECT_EQ(answer.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(answer.status().message().find("resnet18-f37072fd.pth"), std::string::npos) << answer.status();
  EXPECT_NE(answer.status().message().find("--offline"), std::string::npos) << answer.status();
  EXPECT_TRUE(ZooEmpty());
}

TEST_F(FirstUseTest, ACorruptedFileIsNeverUsed) {
  std::string corrupted = Shared("squeezenet1_1-imagenet.pth");
  corrupted[corrupted.size() / 2] ^= 1;
  mirror_.Serve(std::string("/models/") + kSqueeze11, corrupted);
  Start(/*offline=*/false);
  for (int attempt = 0; attempt < 2; ++attempt) {  // the second is answered the failure, not a new download
    const auto answer = client_->Predict(Dog("squeezenet1_1"));
    EXPECT_EQ(answer.status().code(), absl::StatusCode::kDataLoss) << answer.status();
    EXPECT_NE(answer.status().message().find("does not start with 26933201"), std::string::npos) << answer.status();
    EXPECT_TRUE(ZooEmpty()) << "a refused download was left in the zoo";
  }
  const auto backbone = client_->GetBackbone("squeezenet1_1");
  ASSERT_TRUE(backbone.ok());
  EXPECT_FALSE(backbone->weights().present());
}

TEST_F(FirstUseTest, WeightsCopiedIntoTheZooAreUsedWithoutARestart) {
  Start(/*offline=*/true);
  EXPECT_EQ(client_->Predict(Dog("squeezenet1_1")).status().code(), absl::StatusCode::kFailedPrecondition);
  fs::copy_file(testing::WeightsDir() + "/squeezenet1_1-imagenet.safetensors",
                fs::path(server_->zoo_dir()) / "squeezenet1_1-imagenet.safetensors");
  const auto listed = client_->GetBackbone("squeezenet1_1");
  ASSERT_TRUE(listed.ok());
  EXPECT_TRUE(listed->weights().present()) << "the listing does not see the new file";
  EXPECT_EQ(listed->residency().device(), "") << "loaded before first use";
  const auto answer = client_->Predict(Dog("squeezenet1_1"));
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->results(0).predictions(0).top(0).index(), kDogsled);
  // A file that does not load is reported, and read again only once replaced.
  fs::copy_file(testing::ImagesDir() + "/dog.jpg", fs::path(server_->zoo_dir()) / "squeezenet1_0-imagenet.safetensors");
  const auto broken = client_->Predict(Dog("squeezenet1_0"));
  EXPECT_EQ(broken.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(broken.status().message().find("could not be loaded"), std::string::npos) << broken.status();
}

TEST(FirstUseOptions, WeightsFileMustBeATorchvisionName) {
  testing::TempDir dir;
  ServerOptions options = testing::LocalServerOptions(dir.Join("data"));
  options.weights_files = {{"resnet50", "../resnet50-0676ba61.pth"}};
  auto server = GraftServer::Start(options);
  ASSERT_FALSE(server.ok());
  EXPECT_NE(server.status().message().find("--weights_file"), std::string::npos) << server.status();
  options.weights_files = {{"nonet", "nonet-0676ba61.pth"}};
  server = GraftServer::Start(options);
  ASSERT_FALSE(server.ok());
  EXPECT_NE(server.status().message().find("unknown backbone 'nonet'"), std::string::npos) << server.status();
}

}  // namespace
}  // namespace graft::security_testing
