// Residency as an operator and an application meet it through graftd: a
// memory budget that fits two of the three real backbones, graft backbones
// load|unload|pin (admin), RESOURCE_EXHAUSTED with the numbers, published
// models that do not keep their backbone resident, and the metrics.

#include <gtest/gtest.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "core/zoo/zoo.h"
#include "tests/integration/security_fixture.h"
#include "tests/testing/http_get.h"
#include "tests/testing/local_server.h"

namespace graft::security_testing {
namespace {

// Resident bytes of each shared backbone, measured in an unbounded zoo.
int64_t ResidentBytes(const std::string& name) {
  static const std::map<std::string, int64_t> sizes = [] {
    std::map<std::string, int64_t> out;
    auto zoo = core::Zoo::Create(core::ZooAt(testing::WeightsDir(), "cpu"));
    for (const char* n : {"mobilenet_v2", "squeezenet1_0", "squeezenet1_1"}) {
      if (zoo.ok() && (*zoo)->Resident(n).ok()) out[n] = (*zoo)->Get(n)->resident_bytes;
    }
    return out;
  }();
  return sizes.count(name) ? sizes.at(name) : 0;
}

class ResidencyApiTest : public ::testing::Test {
 protected:
  void Start(int64_t budget) {
    ServerOptions options = testing::LocalServerOptions(dir_.Join("data"));
    options.metrics_port = 0;
    options.device_memory_budget = absl::StrCat(budget);
    auto server = GraftServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    admin_ = std::make_unique<client::GraftClient>(Target(), testing::AdminClientOptions(dir_.Join("data")));
  }
  std::string Target() const { return "127.0.0.1:" + std::to_string(server_->port()); }
  static int64_t TwoOfThree() {
    const int64_t s0 = ResidentBytes("squeezenet1_0"), s1 = ResidentBytes("squeezenet1_1");
    return ResidentBytes("mobilenet_v2") + s0 + s1 - std::min(s0, s1) / 2;
  }
  v1::Residency Residency(const std::string& name) {
    const auto b = admin_->GetBackbone(name);
    EXPECT_TRUE(b.ok()) << b.status();
    return b.ok() ? b->residency() : v1::Residency();
  }
  static v1::PredictRequest Dog(const std::string& backbone) {
    v1::PredictRequest request;
    if (!backbone.empty()) request.set_backbone(backbone);
    request.set_top_k(1);
    request.add_images()->set_encoded(*core::ReadFile(testing::ImagesDir() + "/dog.jpg"));
    return request;
  }

  testing::TempDir dir_;
  std::unique_ptr<GraftServer> server_;
  std::unique_ptr<client::GraftClient> admin_;
};

TEST_F(ResidencyApiTest, AdminLoadsPinsAndUnloadsUnderTheBudget) {
  ASSERT_GT(ResidentBytes("mobilenet_v2"), 0);
  Start(TwoOfThree());
  auto listed = admin_->ListBackbones();
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->memory().budget_bytes(), TwoOfThree());
  EXPECT_EQ(listed->memory().backbone_bytes(), 0);  // nothing resident until used
  EXPECT_EQ(listed->memory().device(), "cpu");

  const auto loaded = admin_->LoadBackbone("squeezenet1_0");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->residency().device(), "cpu");
  EXPECT_EQ(loaded->residency().bytes(), ResidentBytes("squeezenet1_0"));
  const auto pinned = admin_->PinBackbone("SqueezeNet1_1", true);
  ASSERT_TRUE(pinned.ok()) << pinned.status();
  EXPECT_TRUE(pinned->residency().pinned());
  EXPECT_EQ(pinned->residency().device(), "cpu");

  // The third evicts the unpinned one, never the pinned one.
  const auto predicted = admin_->Predict(Dog("mobilenet_v2"));
  ASSERT_TRUE(predicted.ok()) << predicted.status();
  EXPECT_EQ(Residency("squeezenet1_0").device(), "");
  EXPECT_EQ(Residency("squeezenet1_0").evictions(), 1);
  EXPECT_EQ(Residency("squeezenet1_1").device(), "cpu");
  EXPECT_TRUE(Residency("mobilenet_v2").has_last_used_at());
  listed = admin_->ListBackbones();
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->memory().backbone_bytes(), ResidentBytes("squeezenet1_1") + ResidentBytes("mobilenet_v2"));

  // With both resident ones pinned, squeezenet1_0 cannot come back: the numbers say why.
  ASSERT_TRUE(admin_->PinBackbone("mobilenet_v2", true).ok());
  const auto refused = admin_->Predict(Dog("squeezenet1_0"));
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
  const std::string why(refused.status().message());
  EXPECT_NE(why.find("loading squeezenet1_0 needs"), std::string::npos) << why;
  EXPECT_NE(why.find(absl::StrCat(core::HumanBytes(TwoOfThree()), " budget (--device_memory_budget)")),
            std::string::npos)
      << why;
  EXPECT_NE(why.find(absl::StrCat("pinned mobilenet_v2 ", core::HumanBytes(ResidentBytes("mobilenet_v2")),
                                  ", squeezenet1_1 ", core::HumanBytes(ResidentBytes("squeezenet1_1")))),
            std::string::npos)
      << why;
  EXPECT_NE(why.find("graft backbones pin --off"), std::string::npos) << why;

  // Unloading unpins and evicts; then it fits.
  const auto unloaded = admin_->UnloadBackbone("mobilenet_v2");
  ASSERT_TRUE(unloaded.ok()) << unloaded.status();
  EXPECT_EQ(unloaded->residency().device(), "");
  EXPECT_FALSE(unloaded->residency().pinned());
  EXPECT_TRUE(admin_->Predict(Dog("squeezenet1_0")).ok());
  EXPECT_EQ(admin_->LoadBackbone("resnet_9000").status().code(), absl::StatusCode::kNotFound);

  const std::string page = testing::HttpGet(server_->metrics_port(), "/metrics");
  EXPECT_NE(page.find("graft_backbone_evictions_total{backbone=\"squeezenet1_0\",device=\"cpu\"} 1"), std::string::npos)
      << page;
  EXPECT_NE(page.find("graft_backbone_evictions_total{backbone=\"mobilenet_v2\",device=\"cpu\"} 1"), std::string::npos);
  EXPECT_NE(page.find(absl::StrCat("graft_device_memory_bytes{device=\"cpu\",kind=\"budget\"} ", TwoOfThree())),
            std::string::npos);
  EXPECT_NE(page.find(absl::StrCat("graft_device_memory_bytes{device=\"cpu\",kind=\"backbones\"} ",
                                   ResidentBytes("squeezenet1_0") + ResidentBytes("squeezenet1_1"))),
            std::string::npos);
  EXPECT_NE(page.find("graft_backbone_load_duration_seconds_count{backbone=\"mobilenet_v2\"} 1"), std::string::npos);
}

TEST_F(ResidencyApiTest, PublishedModelsAreChargedButDoNotKeepTheirBackbone) {
  Start(TwoOfThree());
  ASSERT_TRUE(admin_->UploadDataset(TinyDataset(dir_.path()), "colours").ok());
  v1::JobSpec spec;
  spec.set_backbone("squeezenet1_1");
  spec.set_dataset("colours");
  spec.set_model_name("colours");
  spec.add_stages()->set_epochs(2);
  auto* top = spec.add_stages();  // fine-tunes the last block: the model has blocks of its own
  top->set_epochs(1);
  top->set_train("top:1");
  const auto job = admin_->CreateJob(spec);
  ASSERT_TRUE(job.ok()) << job.status();
  int64_t job_bytes = 0;  // while it trains, its estimate is held
  ASSERT_TRUE(admin_
                  ->WatchJob(job->id(), false,
                             [&](const v1::JobEvent& e) {
                               if (e.has_epoch()) {
                                 if (auto l = admin_->ListBackbones(); l.ok()) {
                                   job_bytes = std::max(job_bytes, l->memory().job_bytes());
                                 }
                               }
                               return true;
                             })
                  .ok());
  EXPECT_GT(job_bytes, 0);
  const auto done = admin_->GetJob(job->id());
  ASSERT_TRUE(done.ok()) << done.status();
  ASSERT_EQ(done->state(), v1::JOB_STATE_SUCCEEDED) << done->error();
  auto listed = admin_->ListBackbones();
  ASSERT_TRUE(listed.ok());
  EXPECT_GT(listed->memory().model_bytes(), 0);  // its head and its own last block
  EXPECT_EQ(listed->memory().job_bytes(), 0);    // the job has ended

  v1::PredictRequest request = Dog("");
  request.add_models("colours");
  const auto before = admin_->Predict(request);
  ASSERT_TRUE(before.ok()) << before.status();
  // The model holds no backbone: it can be unloaded, and the model loads it again.
  const auto unloaded = admin_->UnloadBackbone("squeezenet1_1");
  ASSERT_TRUE(unloaded.ok()) << unloaded.status();
  EXPECT_EQ(unloaded->residency().device(), "");
  const auto after = admin_->Predict(request);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(Residency("squeezenet1_1").device(), "cpu");
  EXPECT_EQ(after->results(0).predictions(0).top(0).label(), before->results(0).predictions(0).top(0).label());
  EXPECT_FLOAT_EQ(after->results(0).predictions(0).top(0).probability(),
                  before->results(0).predictions(0).top(0).probability());
}

}  // namespace
}  // namespace graft::security_testing
