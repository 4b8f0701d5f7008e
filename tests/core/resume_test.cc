// Exact resume: a job stopped in the middle of an augmented epoch (a graceful
// stop that checkpoints where it is, or a kill that leaves the last periodic
// mid-epoch checkpoint) repeats the uninterrupted run to the last digit,
// because the draw of every image, view and dropout mask depends only on the
// seed, the epoch and the batch's place in it, never on how many batches ran
// in this process.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <set>

#include "core/train/trainer.h"
#include "core/zoo/zoo.h"
#include "tests/testing/hymenoptera.h"
#include "tests/testing/paths.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/weights_zoo.h"

namespace graft::core {
namespace {
namespace fs = std::filesystem;

struct Outcome {
  absl::StatusOr<TrainedModel> trained = absl::UnknownError("not run");
  std::vector<EpochMetrics> epochs;
};

// Keeps the epochs; copies the checkpoint aside right after the mid-epoch
// checkpoints named in `snapshots` ((epoch, batch) -> path) are written, and
// stops the run (as SIGTERM does) at `stop_at` (epoch, batch).
class Recorder : public TrainEvents {
 public:
  Recorder(Outcome& out, std::string checkpoint, std::map<std::pair<int, int>, std::string> snapshots,
           CancellationToken* cancel, std::pair<int, int> stop_at)
      : out_(out), checkpoint_(std::move(checkpoint)), snapshots_(std::move(snapshots)), cancel_(cancel),
        stop_at_(stop_at) {}
  void OnEpoch(const EpochMetrics& m) override { out_.epochs.push_back(m); }
  void OnCheckpoint(int epoch, int batch) override {
    const auto it = snapshots_.find({epoch, batch});
    if (it != snapshots_.end()) fs::copy_file(checkpoint_, it->second, fs::copy_options::overwrite_existing);
  }
  void OnProgress(int epoch, int batch, int) override {
    if (cancel_ != nullptr && std::make_pair(epoch, batch) == stop_at_) cancel_->Stop();
  }

 private:
  Outcome& out_;
  std::string checkpoint_;
  std::map<std::pair<int, int>, std::string> snapshots_;
  CancellationToken* cancel_;
  std::pair<int, int> stop_at_;
};

class ExactResumeTest : public ::testing::TestWithParam<int> {
 protected:
  static void SetUpTestSuite() {
    zoo_ = graft::testing::NewWeightsZoo();
    ASSERT_NE(zoo_, nullptr);
  }
  static void TearDownTestSuite() {
    delete zoo_;
    zoo_ = nullptr;
  }

  // squeezenet1_1 at 96 px under a head with dropout, every augmentation on;
  // GetParam() cached views (0: every batch decoded and augmented anew).
  TrainInput Input(const std::string& checkpoint) {
    TrainInput in;
    in.spec.backbone = "squeezenet1_1";
    in.spec.dataset = "hymenoptera";
    in.spec.input_size = 96;
    in.spec.batch_size = 8;
    in.spec.seed = 11;
    in.spec.head.hidden_units = {32};
    in.spec.head.dropout = 0.3;
    in.spec.augmentation.horizontal_flip = true;
    in.spec.augmentation.random_resized_crop = true;
    in.spec.augmentation.color_jitter = 0.2;
    in.spec.augmentation.cached_views = GetParam();
    in.spec.stages.push_back({});
    in.spec.stages[0].epochs = 3;
    in.spec.stages[0].optimizer.kind = OptimizerKind::kAdam;
    in.spec.stages[0].optimizer.learning_rate = 1e-3;
    auto resident = zoo_->Resident("squeezenet1_1");
    EXPECT_TRUE(resident.ok()) << resident.status();
    in.resident = *resident;
    EXPECT_TRUE(NormalizeJobSpec(in.spec, static_cast<int>(in.resident->module->blocks().size())).ok());
    in.images = graft::testing::HymenopteraImages(24, 8);
    in.num_classes = 2;
    in.checkpoint_path = checkpoint;
    in.checkpoint_interval_s = 1e-9;  // a mid-epoch checkpoint before every batch
    in.feature_cache.memory_bytes = 1LL << 30;
    return in;
  }

  Outcome Train(const std::string& checkpoint, std::map<std::pair<int, int>, std::string> snapshots = {},
                std::pair<int, int> stop_at = {0, 0}) {
    Outcome out;
    CancellationToken cancel;
    Recorder events(out, checkpoint, std::move(snapshots), &cancel, stop_at);
    out.trained = core::Train(Input(checkpoint), cancel, events);
    return out;
  }

  // Every figure of every epoch the resumed run ran, and its weights, are the
  // uninterrupted run's, bit for bit.
  static void ExpectSameRun(const Outcome& resumed, const Outcome& reference, int from_epoch) {
    ASSERT_TRUE(resumed.trained.ok()) << resumed.trained.status();
    ASSERT_EQ(resumed.epochs.size(), reference.epochs.size() - static_cast<size_t>(from_epoch - 1));
    for (const EpochMetrics& m : resumed.epochs) {
      const EpochMetrics& want = reference.epochs[static_cast<size_t>(m.epoch - 1)];
      SCOPED_TRACE(::testing::Message() << "epoch " << m.epoch);
      EXPECT_EQ(m.train_loss, want.train_loss);
      EXPECT_EQ(m.train_accuracy, want.train_accuracy);
      EXPECT_EQ(m.val_loss, want.val_loss);
      EXPECT_EQ(m.val_accuracy, want.val_accuracy);
      EXPECT_EQ(m.val_macro_f1, want.val_macro_f1);
    }
    const StateDict& a = resumed.trained->weights;
    const StateDict& b = reference.trained->weights;
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << a[i].first;
  }

  static Zoo* zoo_;
  graft::testing::TempDir dir_;
};

Zoo* ExactResumeTest::zoo_ = nullptr;

TEST_P(ExactResumeTest, AKillOrAStopInAnAugmentedEpochRepeatsTheUninterruptedRun) {
  // The uninterrupted run, keeping copies of three of epoch 2's mid-epoch
  // checkpoints: what a SIGKILL right after each would leave.
  const std::vector<int> batches = {1, 3, 5};
  std::map<std::pair<int, int>, std::string> snapshots;
  for (int b : batches) snapshots[{2, b}] = dir_.Join("killed-after-" + std::to_string(b) + ".ckpt");
  const Outcome reference = Train(dir_.Join("reference.ckpt"), snapshots);
  ASSERT_TRUE(reference.trained.ok()) << reference.trained.status();
  ASSERT_EQ(reference.epochs.size(), 3u);
  for (int b : batches) {
    SCOPED_TRACE(::testing::Message() << "killed after epoch 2, batch " << b);
    const std::string path = snapshots[{2, b}];
    ASSERT_TRUE(fs::exists(path));
    ExpectSameRun(Train(path), reference, 2);
  }
  // Stopped gracefully (SIGTERM) at epoch 2, batch 4: it checkpoints there.
  const std::string stopped_at = dir_.Join("stopped.ckpt");
  const Outcome stopped = Train(stopped_at, {}, {2, 4});
  ASSERT_EQ(stopped.trained.status().code(), absl::StatusCode::kUnavailable) << stopped.trained.status();
  ExpectSameRun(Train(stopped_at), reference, 2);
}

INSTANTIATE_TEST_SUITE_P(Views, ExactResumeTest, ::testing::Values(0, 3),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return info.param == 0 ? std::string("Streamed") : std::string("CachedViews");
                         });

}  // namespace
}  // namespace graft::core
