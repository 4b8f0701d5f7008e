// Data-parallel training (TrainInput::collective): two ranks in threads of
// this process, joined over loopback through c10d's TCPStore and Gloo,
// train the weights one trainer trains on the same global batches, each
// reading half of the images; a stop on one rank stops both at the same
// step, rank 0 keeps the batches done, and a new group resumes from its
// checkpoint to the same weights.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <thread>

#include "core/train/trainer.h"
#include "core/util/collective.h"
#include "core/zoo/zoo.h"
#include "tests/testing/paths.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/weights_zoo.h"

namespace graft::core {
namespace {
namespace fs = std::filesystem;

class DataParallelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    zoo_ = graft::testing::NewWeightsZoo();
    ASSERT_NE(zoo_, nullptr);
  }
  static void TearDownTestSuite() {
    delete zoo_;
    zoo_ = nullptr;
  }

  // hymenoptera (ants, bees): its train/ and val/ splits, the JPEGs (its GIF is not an image graft reads).
  static std::vector<DatasetImage> Hymenoptera() {
    std::vector<DatasetImage> images;
    const std::string root = graft::testing::SharedDir() + "/data/hymenoptera";
    for (const auto& [split, dir] : {std::pair{Split::kTrain, "train"}, std::pair{Split::kVal, "val"}}) {
      for (const auto& [label, cls] : {std::pair{0, "ants"}, std::pair{1, "bees"}}) {
        std::vector<std::string> files;
        for (const auto& f : fs::directory_iterator(root + "/" + dir + "/" + cls)) {
          if (f.path().extension() != ".gif") files.push_back(f.path().string());
        }
        std::sort(files.begin(), files.end());
        for (const auto& f : files) images.push_back(DatasetImage{split, label, f.substr(root.size() + 1), f});
      }
    }
    return images;
  }

  // A frozen squeezenet1_1 (112 px) under a linear head, no dropout, no
  // augmentation (features cached): SGD with momentum, weighted classes and
  // label smoothing, so the loss's normalisation over the global batch counts.
  TrainInput Input(const std::string& checkpoint) {
    TrainInput in;
    in.spec.backbone = "squeezenet1_1";
    in.spec.dataset = "hymenoptera";
    in.spec.input_size = 112;
    in.spec.batch_size = 16;
    in.spec.seed = 3;
    in.spec.class_weighting = true;
    in.spec.label_smoothing = 0.1;
    in.spec.stages.push_back({});
    in.spec.stages[0].epochs = 3;
    in.spec.stages[0].optimizer.kind = OptimizerKind::kSgd;
    in.spec.stages[0].optimizer.learning_rate = 0.001;
    in.spec.stages[0].optimizer.momentum = 0.9;
    auto resident = zoo_->Resident("squeezenet1_1");
    EXPECT_TRUE(resident.ok()) << resident.status();
    in.resident = *resident;
    EXPECT_TRUE(NormalizeJobSpec(in.spec, static_cast<int>(in.resident->module->blocks().size())).ok());
    in.images = images_;
    in.num_classes = 2;
    in.checkpoint_path = checkpoint;
    in.feature_cache.memory_bytes = 1LL << 30;
    return in;
  }

  struct RankResult {
    absl::StatusOr<TrainedModel> trained = absl::UnknownError("not run");
    std::vector<EpochMetrics> epochs;
  };
  class Events : public TrainEvents {
   public:
    Events(RankResult& r, std::function<void(int, int)> on_progress) : r_(r), on_progress_(std::move(on_progress)) {}
    void OnEpoch(const EpochMetrics& m) override { r_.epochs.push_back(m); }
    void OnProgress(int epoch, int batch, int) override {
      if (on_progress_) on_progress_(epoch, batch);
    }

   private:
    RankResult& r_;
    std::function<void(int, int)> on_progress_;
  };

  // Both ranks of a group of two, each on its own thread; `stop_rank1_at`
  // (epoch, batch) stops rank 1 there as a shutdown would.
  std::vector<RankResult> TrainInGroup(const std::string& checkpoint, std::pair<int, int> stop_rank1_at = {0, 0}) {
    auto rendezvous = Rendezvous::Serve("127.0.0.1", 0, 60);
    EXPECT_TRUE(rendezvous.ok()) << rendezvous.status();
    if (!rendezvous.ok()) return {};
    std::vector<RankResult> results(2);
    const std::string prefix = "test/" + std::to_string(++groups_) + "/";
    std::vector<std::thread> ranks;
    for (int rank = 0; rank < 2; ++rank) {
      ranks.emplace_back([&, rank] {
        GroupOptions g;
        g.store_host = "127.0.0.1";
        g.store_port = (*rendezvous)->port();
        g.own_host = "127.0.0.1";
        g.prefix = prefix;
        g.rank = rank;
        g.size = 2;
        g.timeout_s = 60;
        auto group = JoinGroup(g, rank == 0 ? rendezvous->get() : nullptr);
        if (!group.ok()) {
          results[rank].trained = group.status();
          return;
        }
        TrainInput in = Input(checkpoint);
        in.collective = group->get();
        in.write_checkpoints = rank == 0;
        CancellationToken cancel;
        Events events(results[rank], [&](int epoch, int batch) {
          if (rank == 1 && std::make_pair(epoch, batch) == stop_rank1_at) cancel.Stop();
        });
        results[rank].trained = Train(in, cancel, events);
      });
    }
    for (auto& t : ranks) t.join();
    return results;
  }

  // The same job on one trainer.
  RankResult TrainAlone() {
    CancellationToken cancel;
    RankResult alone;
    Events events(alone, nullptr);
    alone.trained = Train(Input(dir_.Join("alone.ckpt")), cancel, events);
    return alone;
  }

  static void ExpectSameWeights(const StateDict& a, const StateDict& b) {
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].first, b[i].first);
      EXPECT_TRUE(torch::allclose(a[i].second, b[i].second, 1e-4, 1e-5))
          << a[i].first << ": largest difference " << (a[i].second - b[i].second).abs().max().item<double>();
    }
  }

  static Zoo* zoo_;
  static std::atomic<int> groups_;
  std::vector<DatasetImage> images_ = Hymenoptera();
  graft::testing::TempDir dir_;
};

Zoo* DataParallelTest::zoo_ = nullptr;
std::atomic<int> DataParallelTest::groups_{0};

TEST_F(DataParallelTest, TwoRanksTrainTheWeightsOneTrainerTrainsEachReadingHalfTheImages) {
  const RankResult alone = TrainAlone();
  ASSERT_TRUE(alone.trained.ok()) << alone.trained.status();

  const std::vector<RankResult> group = TrainInGroup(dir_.Join("group.ckpt"));
  ASSERT_EQ(group.size(), 2u);
  for (int rank = 0; rank < 2; ++rank) {
    ASSERT_TRUE(group[rank].trained.ok()) << "rank " << rank << ": " << group[rank].trained.status();
    ExpectSameWeights(group[rank].trained->weights, alone.trained->weights);
    // The same epochs, the same early-stopping figures, on every rank.
    ASSERT_EQ(group[rank].epochs.size(), alone.epochs.size());
    for (size_t e = 0; e < alone.epochs.size(); ++e) {
      // Sums in another order: equal to 1e-5 of the value (float32 gradients).
      EXPECT_NEAR(group[rank].epochs[e].train_loss, alone.epochs[e].train_loss,
                  1e-5 * std::max(1.0, alone.epochs[e].train_loss));
      EXPECT_EQ(group[rank].epochs[e].train_accuracy, alone.epochs[e].train_accuracy);
      EXPECT_NEAR(group[rank].epochs[e].val_loss, alone.epochs[e].val_loss,
                  1e-5 * std::max(1.0, alone.epochs[e].val_loss));
      EXPECT_EQ(group[rank].epochs[e].val_accuracy, alone.epochs[e].val_accuracy);
      EXPECT_EQ(group[rank].epochs[e].val_macro_f1, alone.epochs[e].val_macro_f1);
    }
  }
  const int64_t n = static_cast<int64_t>(images_.size());
  EXPECT_EQ(alone.trained->images_read, n);
  EXPECT_EQ(group[0].trained->images_read, (n + 1) / 2);
  EXPECT_EQ(group[1].trained->images_read, n / 2);
  // Rank 0 alone wrote the checkpoint.
  EXPECT_TRUE(fs::exists(dir_.Join("group.ckpt")));
}

TEST_F(DataParallelTest, AStoppedRankStopsTheGroupAndANewGroupResumesToTheSameWeights) {
  const RankResult alone = TrainAlone();
  ASSERT_TRUE(alone.trained.ok()) << alone.trained.status();

  const std::string checkpoint = dir_.Join("group.ckpt");
  const std::vector<RankResult> stopped = TrainInGroup(checkpoint, {2, 4});
  ASSERT_EQ(stopped.size(), 2u);
  ASSERT_FALSE(stopped[1].trained.ok());
  EXPECT_TRUE(absl::IsUnavailable(stopped[1].trained.status())) << stopped[1].trained.status();
  EXPECT_NE(stopped[1].trained.status().message().find("stopped for a shutdown at epoch 2, batch 5"), std::string::npos)
      << stopped[1].trained.status();
  ASSERT_FALSE(stopped[0].trained.ok());
  EXPECT_NE(
      stopped[0].trained.status().message().find("a trainer of the data-parallel group stopped at epoch 2, batch 5"),
      std::string::npos)
      << stopped[0].trained.status();
  ASSERT_EQ(stopped[0].epochs.size(), 1u);  // epoch 1 finished; epoch 2 kept up to batch 4
  ASSERT_TRUE(fs::exists(checkpoint));

  const std::vector<RankResult> resumed = TrainInGroup(checkpoint);
  ASSERT_EQ(resumed.size(), 2u);
  for (int rank = 0; rank < 2; ++rank) {
    ASSERT_TRUE(resumed[rank].trained.ok()) << "rank " << rank << ": " << resumed[rank].trained.status();
    EXPECT_EQ(resumed[rank].epochs.front().epoch, 2);
    ExpectSameWeights(resumed[rank].trained->weights, alone.trained->weights);
  }
}

}  // namespace
}  // namespace graft::core
