// ModelStore on a full disk: a publish that does not fit fails with
// RESOURCE_EXHAUSTED naming the disk, keeps nothing of itself, leaves the
// models already there whole, and succeeds once space is freed. The models
// directory is a small tmpfs the test mounts (root only; skipped otherwise).

#include "core/serve/model_store.h"

#include <gtest/gtest.h>
#include <sys/mount.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/train/head.h"
#include "core/util/database.h"
#include "core/zoo/state_dict.h"
#include "core/zoo/zoo.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/paths.h"

namespace graft::core {
namespace {

namespace fs = std::filesystem;

// A model of mobilenet_v2 with a head of `hidden` units (0: linear); its
// weights are about 1280 * hidden * 4 bytes.
std::pair<ModelInfo, StateDict> HeadModel(const Zoo& zoo, const std::string& id, int hidden) {
  ModelInfo info;
  info.id = id;
  info.job_id = "job-" + id;
  info.backbone = "mobilenet_v2";
  info.class_names = {"ants", "bees"};
  if (hidden > 0) info.spec.head.hidden_units = {hidden};
  auto resident = zoo.Resident("mobilenet_v2");
  EXPECT_TRUE(resident.ok()) << resident.status();
  info.preprocessing = (*resident)->spec->preprocessing;
  torch::manual_seed(hidden);
  ClassifierHead head((*resident)->spec->feature_dim, info.spec.head, 2);
  StateDict weights;
  for (auto& [name, t] : ModuleStateDict(*head)) weights.emplace_back("head." + name, t);
  return {info, weights};
}

// Logits of the model for one fixed feature vector.
torch::Tensor Logits(ModelStore& store, const std::string& id) {
  auto model = store.Get(id);
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return {};
  torch::NoGradGuard no_grad;
  return (*model)->Forward(torch::ones({1, 1280}));
}

TEST(ModelStoreDiskFull, APublishThatDoesNotFitKeepsNothingAndFreedSpaceWorksAgain) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a small tmpfs under the models directory";
  graft::testing::TempDir dir;
  const std::string root = dir.Join("models");
  fs::create_directories(root);
  ASSERT_EQ(::mount("tmpfs", root.c_str(), "tmpfs", 0, "size=24m"), 0) << "mount tmpfs: " << std::strerror(errno);
  struct Unmount {
    std::string dir;
    ~Unmount() { ::umount2(dir.c_str(), MNT_DETACH); }
  } unmount{root};

  ZooOptions options;
  options.zoo_dir = fs::path(GRAFT_SHARED_DIR) / "weights";
  options.device = "cpu";
  auto zoo = Zoo::Create(options);
  ASSERT_TRUE(zoo.ok()) << zoo.status();
  auto db = Database::Open(dir.Join("graft.db"));
  ASSERT_TRUE(db.ok()) << db.status();
  auto store = ModelStore::Open(**db, root, **zoo);
  ASSERT_TRUE(store.ok()) << store.status();

  auto [small_info, small_weights] = HeadModel(**zoo, "model-small", 0);
  ASSERT_TRUE((*store)->Publish(small_info, small_weights).ok());
  const torch::Tensor before = Logits(**store, "model-small");

  // 16 MiB of other data; the 2048-unit head (10 MiB of weights) does not fit beside it.
  {
    std::ofstream filler(root + "/filler", std::ios::binary);
    const std::string mib(1 << 20, 'x');
    for (int i = 0; i < 16; ++i) filler << mib;
    ASSERT_TRUE(filler.good());
  }
  auto [big_info, big_weights] = HeadModel(**zoo, "model-big", 2048);
  auto refused = (*store)->Publish(big_info, big_weights);
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
  EXPECT_NE(refused.status().message().find("no space left on the disk holding '" + root), std::string::npos)
      << refused.status();
  // Nothing of it: no directory, no temporary, no record, not servable.
  for (const auto& entry : fs::directory_iterator(root)) {
    const std::string name = entry.path().filename().string();
    EXPECT_TRUE(name == "model-small" || name == "filler") << "left behind: " << name;
  }
  EXPECT_EQ((*store)->size(), 1u);
  EXPECT_EQ((*store)->List().size(), 1u);
  EXPECT_EQ((*store)->Get("model-big").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(torch::equal(Logits(**store, "model-small"), before));

  // Space freed: the same publish goes through and survives a reopen.
  fs::remove(root + "/filler");
  ASSERT_TRUE((*store)->Publish(big_info, big_weights).ok());
  const torch::Tensor big = Logits(**store, "model-big");
  store->reset();
  auto reopened = ModelStore::Open(**db, root, **zoo);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ((*reopened)->size(), 2u);
  EXPECT_TRUE(torch::equal(Logits(**reopened, "model-small"), before));
  EXPECT_TRUE(torch::equal(Logits(**reopened, "model-big"), big));
}

}  // namespace
}  // namespace graft::core
