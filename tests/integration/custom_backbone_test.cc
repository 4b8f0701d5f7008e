// Custom TorchScript backbones: registered through the RPC, refused with the
// reason when broken, fine-tuned frozen, served, kept across restarts, and
// unregistered only when nothing uses them.

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "client/client.h"
#include "core/util/files.h"
#include "core/zoo/precision.h"
#include "server/metrics.h"
#include "server/server.h"
#include "tests/testing/local_server.h"
#include "tests/testing/paths.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/hymenoptera.h"

namespace graft::server {
namespace {

namespace fs = std::filesystem;


class CustomBackboneTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    scripts_ = new graft::testing::TempDir();
    const std::string cmd = graft::testing::Python() + " " + graft::testing::SourceDir() +
                            "/tests/integration/make_torchscript.py " + scripts_->path() + " " +
                            graft::testing::WeightsDir();
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  static void TearDownTestSuite() {
    delete scripts_;
    scripts_ = nullptr;
  }
  static std::string Script(const std::string& name) { return scripts_->Join(name); }

  void SetUp() override { Restart(); }

  void Restart(const std::string& zoo_dir = graft::testing::WeightsDir()) {
    client_.reset();
    server_.reset();
    ServerOptions options = graft::testing::LocalServerOptions(dir_.Join("data"));
    options.zoo_dir = zoo_dir;
    // Scripts are registered by path from their import directory; other files by their bytes.
    options.backbone_import_dir = scripts_->path();
    auto server = GraftServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    client_ = std::make_unique<client::GraftClient>("127.0.0.1:" + std::to_string(server_->port()),
                                                   graft::testing::AdminClientOptions(dir_.Join("data")));
  }

  absl::StatusOr<v1::Backbone> Register(const std::string& name, const std::string& path, int feature_dim) {
    v1::RegisterBackboneRequest r;
    r.set_name(name);
    if (path.rfind(scripts_->path(), 0) != 0 && std::filesystem::exists(path)) {
      r.set_torchscript(core::ReadFile(path).value());
    } else {
      r.set_torchscript_path(path);
    }
    r.set_feature_dim(feature_dim);
    return client_->RegisterBackbone(r);
  }

  std::vector<float> EmbedPhoto(const std::string& backbone, const std::string& photo) {
    v1::EmbedRequest r;
    r.set_backbone(backbone);
    r.add_images()->set_encoded(core::ReadFile(graft::testing::ImagesDir() + "/" + photo).value());
    auto e = client_->Embed(r);
    EXPECT_TRUE(e.ok()) << e.status();
    if (!e.ok()) return {};
    return {e->embeddings(0).values().begin(), e->embeddings(0).values().end()};
  }

  std::string PredictTop(const std::string& model, const std::string& file) {
    v1::PredictRequest r;
    r.add_models(model);
    r.set_top_k(1);
    r.add_images()->set_encoded(core::ReadFile(file).value());
    auto p = client_->Predict(r);
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? p->results(0).predictions(0).top(0).label() : "";
  }

  v1::Job WaitDone(const std::string& id) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(10);
    while (std::chrono::steady_clock::now() < deadline) {
      auto job = client_->GetJob(id);
      if (!job.ok() || job->state() >= v1::JOB_STATE_SUCCEEDED) return job.value_or(v1::Job());
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ADD_FAILURE() << "job " << id << " did not finish";
    return v1::Job();
  }

  size_t StoredFiles() {
    std::error_code ec;
    size_t n = 0;
    for (const auto& f : fs::directory_iterator(dir_.Join("data/backbones"), ec)) n += f.is_regular_file() ? 1 : 0;
    return n;
  }

  static graft::testing::TempDir* scripts_;
  graft::testing::TempDir dir_;
  std::unique_ptr<GraftServer> server_;
  std::unique_ptr<client::GraftClient> client_;
};

graft::testing::TempDir* CustomBackboneTest::scripts_ = nullptr;

TEST_F(CustomBackboneTest, BrokenFilesAndTakenNamesAreRefusedWithTheReason) {
  const std::string junk = dir_.Join("junk.pt");
  ASSERT_TRUE(core::WriteFileAtomic(junk, "this is not a TorchScript archive").ok());
  auto r = Register("junk", junk, 64);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("is not a TorchScript file"), std::string::npos) << r.status();

  r = Register("tiny", Script("tiny_pooled.pt"), 32);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("produces [2, 16] for a [2, 3, 224, 224] batch; feature_dim 32"),
            std::string::npos)
      << r.status();

  r = Register("pair", Script("returns_tuple.pt"), 3);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("not a tensor"), std::string::npos) << r.status();

  r = Register("gone", dir_.Join("missing.pt"), 16);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("does not exist on the server"), std::string::npos) << r.status();

  r = Register("ResNet18", Script("tiny_pooled.pt"), 16);  // a built-in alias
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAlreadyExists) << r.status();

  r = Register("../escape", Script("tiny_pooled.pt"), 16);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  r = Register("tiny", Script("tiny_pooled.pt"), 0);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_EQ(StoredFiles(), 0u) << "a refused registration stores nothing";

  ASSERT_TRUE(Register("tiny", Script("tiny_pooled.pt"), 16).ok());
  r = Register("TINY", Script("tiny_pooled.pt"), 16);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAlreadyExists) << r.status();
  EXPECT_EQ(StoredFiles(), 2u) << "the registered module and its manifest";
  // Its features are served; it has no ImageNet classes to predict.
  EXPECT_EQ(EmbedPhoto("tiny", "dog.jpg").size(), 16u);
  v1::PredictRequest p;
  p.set_backbone("tiny");
  p.add_images()->set_encoded(core::ReadFile(graft::testing::ImagesDir() + "/dog.jpg").value());
  const auto predicted = client_->Predict(p);
  EXPECT_EQ(predicted.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(predicted.status().message().find("no ImageNet classifier"), std::string::npos) << predicted.status();
  // Built-in backbones cannot be unregistered.
  EXPECT_EQ(client_->UnregisterBackbone("mobilenet_v2").code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(CustomBackboneTest, ATracedBackboneFineTunesFrozenServesAndSurvivesRestarts) {
  auto b = Register("mnv2_traced", Script("mnv2_features.pt"), 1280);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE(b->custom());
  EXPECT_EQ(b->family(), "torchscript");
  EXPECT_EQ(b->parameter_count(), 3504872 - 1281000) << "mobilenet_v2 without its classifier";
  EXPECT_EQ(b->feature_dim(), 1280);
  EXPECT_EQ(b->num_classes(), 0);
  ASSERT_EQ(b->blocks_size(), 1);
  EXPECT_EQ(b->preprocessing().height(), 224);
  EXPECT_EQ(b->preprocessing().resize_size(), 256);
  EXPECT_EQ(b->residency().device(), "cpu");
  EXPECT_GT(b->residency().bytes(), 2223872 * 4);

  // The traced module computes what graft's own MobileNetV2 does.
  const std::vector<float> mine = EmbedPhoto("mnv2_traced", "dog.jpg");
  const std::vector<float> native = EmbedPhoto("mobilenet_v2", "dog.jpg");
  ASSERT_EQ(mine.size(), 1280u);
  ASSERT_EQ(native.size(), 1280u);
  double diff = 0, scale = 0;
  for (size_t i = 0; i < mine.size(); ++i) {
    diff = std::max<double>(diff, std::abs(mine[i] - native[i]));
    scale = std::max<double>(scale, std::abs(native[i]));
  }
  EXPECT_LT(diff, 1e-4 * scale + 1e-5);

  // Fine-tuned frozen on hymenoptera; unfreezing is refused with the reason.
  ASSERT_TRUE(client_->UploadDataset(graft::testing::HymenopteraDir(), "hym").ok());
  v1::JobSpec spec;
  spec.set_backbone("mnv2_traced");
  spec.set_dataset("hym");
  spec.set_seed(1);
  auto* stage = spec.add_stages();
  stage->set_epochs(3);
  stage->set_train("top:1");
  auto refused = client_->CreateJob(spec);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("trains frozen only"), std::string::npos) << refused.status();
  stage->set_train("head");
  stage->mutable_optimizer()->set_kind(v1::OPTIMIZER_ADAM);
  auto job = client_->CreateJob(spec);
  ASSERT_TRUE(job.ok()) << job.status();
  const v1::Job done = WaitDone(job->id());
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
  EXPECT_GE(done.best().val_accuracy(), 0.9);
  const std::string ant = graft::testing::HymenopteraDir() + "/val/ants/10308379_1b6c72e180.jpg";
  const std::string bee = graft::testing::HymenopteraDir() + "/val/bees/10870992_eebeeb3a12.jpg";
  EXPECT_EQ(PredictTop(done.model_id(), ant), "ants");
  EXPECT_EQ(PredictTop(done.model_id(), bee), "bees");
  // Its frozen constants are float32: the job's auto precision trained it
  // in fp32, and serving it in bf16 is refused by name before any image runs.
  const auto trained = client_->GetModel(done.model_id());
  ASSERT_TRUE(trained.ok()) << trained.status();
  ASSERT_GT(trained->history_size(), 0);
  for (const auto& e : trained->history()) EXPECT_FALSE(e.frozen_part_bf16());
  if (core::CpuBf16Support(core::CpuFlags()).ok()) {
    v1::OptimizeModelRequest bf16;
    bf16.set_model(done.model_id());
    bf16.set_precision(v1::PRECISION_BF16);
    const auto no = client_->OptimizeModel(bf16);
    EXPECT_EQ(no.status().code(), absl::StatusCode::kFailedPrecondition) << no.status();
    EXPECT_NE(no.status().message().find("backbone 'mnv2_traced' cannot run in bf16: "), std::string::npos)
        << no.status();
    EXPECT_EQ(PredictTop(done.model_id(), ant), "ants");
  }

  // In use: not unregistered; the message names the model.
  absl::Status busy = client_->UnregisterBackbone("mnv2_traced");
  EXPECT_EQ(busy.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(busy.message().find(done.model_id()), std::string::npos) << busy;

  // A restart brings back the backbone and the model on it, even with the
  // user's original file gone.
  fs::copy_file(Script("mnv2_features.pt"), dir_.Join("copy.pt"));
  Restart();
  auto again = client_->GetBackbone("mnv2_traced");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->custom());
  EXPECT_EQ(PredictTop(done.model_id(), ant), "ants");
  EXPECT_EQ(PredictTop(done.model_id(), bee), "bees");

  // Unused: unregistered, its files deleted, its metric series gone, its name free again.
  EXPECT_EQ(PredictTop(done.model_id(), ant), "ants");
  EXPECT_NE(server_->metrics().Text().find("backbone=\"mnv2_traced\""), std::string::npos);
  ASSERT_TRUE(client_->DeleteModel(done.model_id()).ok());
  ASSERT_TRUE(client_->UnregisterBackbone("mnv2_traced").ok());
  EXPECT_EQ(server_->metrics().Text().find("mnv2_traced"), std::string::npos) << server_->metrics().Text();
  EXPECT_EQ(client_->GetBackbone("mnv2_traced").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(StoredFiles(), 0u);
  Restart();
  EXPECT_EQ(client_->GetBackbone("mnv2_traced").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Register("mnv2_traced", dir_.Join("copy.pt"), 1280).ok());
}

TEST_F(CustomBackboneTest, AManifestBesideTheFileInTheZooDirectoryRegistersAtStart) {
  graft::testing::TempDir zoo;
  fs::copy_file(Script("tiny_pooled.pt"), zoo.Join("tiny.pt"));
  ASSERT_TRUE(core::WriteFileAtomic(zoo.Join("tiny.backbone.json"),
                                    R"({"name": "tiny_zoo", "torchscript": "tiny.pt", "feature_dim": 16,
                                        "preprocessing": {"height": 96, "width": 96}})")
                  .ok());
  ASSERT_TRUE(core::WriteFileAtomic(zoo.Join("broken.backbone.json"),
                                    R"({"name": "broken", "torchscript": "tiny.pt", "feature_dim": 99})")
                  .ok());
  Restart(zoo.path());
  auto b = client_->GetBackbone("tiny_zoo");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->preprocessing().height(), 96);
  EXPECT_EQ(b->preprocessing().resize_size(), 109);  // 96 * 256 / 224
  EXPECT_EQ(EmbedPhoto("tiny_zoo", "dog.jpg").size(), 16u);
  EXPECT_EQ(client_->GetBackbone("broken").status().code(), absl::StatusCode::kNotFound)
      << "a manifest whose module does not match is skipped";
  const absl::Status s = client_->UnregisterBackbone("tiny_zoo");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("tiny.backbone.json"), std::string::npos) << s;
  EXPECT_TRUE(fs::exists(zoo.Join("tiny.pt"))) << "the user's files are never deleted";
}

}  // namespace
}  // namespace graft::server
