// Lazy residency under a device memory budget, with the three real
// backbones in ../shared/weights: loads at first use, LRU eviction of idle
// unpinned backbones, pins and requests in flight that are never evicted,
// RESOURCE_EXHAUSTED with the numbers, and bytes that match the tensors.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <future>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "core/serve/predictor.h"
#include "core/util/files.h"
#include "core/zoo/zoo.h"
#include "tests/testing/paths.h"

namespace graft::core {
namespace {

using graft::testing::WeightsDir;

constexpr const char* kMobileNet = "mobilenet_v2";
constexpr const char* kSqueeze0 = "squeezenet1_0";
constexpr const char* kSqueeze1 = "squeezenet1_1";

// Every parameter and buffer of a module, counted here rather than by graft.
int64_t TensorBytes(BackboneImpl& m) {
  int64_t n = 0;
  for (const auto& p : m.named_parameters(true))
    n += p.value().numel() * static_cast<int64_t>(p.value().element_size());
  for (const auto& b : m.named_buffers(true)) n += b.value().numel() * static_cast<int64_t>(b.value().element_size());
  return n;
}

class ResidencyTest : public ::testing::Test {
 protected:
  // The resident bytes of the three, measured once in an unbounded zoo.
  static void SetUpTestSuite() {
    auto zoo = Zoo::Create(ZooAt(WeightsDir(), "cpu"));
    ASSERT_TRUE(zoo.ok()) << zoo.status();
    for (const char* name : {kMobileNet, kSqueeze0, kSqueeze1}) {
      ASSERT_TRUE((*zoo)->Resident(name).ok());
      (*sizes_)[name] = (*zoo)->Get(name)->resident_bytes;
    }
  }

  static int64_t Size(const std::string& name) { return sizes_->at(name); }
  // Fits any two of the three, never all three.
  static int64_t TwoOfThree() {
    const int64_t all = Size(kMobileNet) + Size(kSqueeze0) + Size(kSqueeze1);
    return all - std::min(Size(kSqueeze0), Size(kSqueeze1)) / 2;
  }

  static std::unique_ptr<Zoo> ZooWithBudget(int64_t budget, std::vector<std::string> preload = {}) {
    ZooOptions options = ZooAt(WeightsDir(), "cpu");
    options.memory_budget = absl::StrCat(budget);
    options.preload = std::move(preload);
    options.memory_wait = std::chrono::milliseconds(5000);
    auto zoo = Zoo::Create(options);
    EXPECT_TRUE(zoo.ok()) << zoo.status();
    return zoo.ok() ? std::move(*zoo) : nullptr;
  }

  static bool IsResident(const Zoo& zoo, const std::string& name) { return !zoo.Get(name)->device.empty(); }

  // Touches `name` (a request that came and went) a moment after the last.
  static void Use(const Zoo& zoo, const std::string& name) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ASSERT_TRUE(zoo.Resident(name).ok()) << name;
  }

  static std::map<std::string, int64_t>* sizes_;
};

std::map<std::string, int64_t>* ResidencyTest::sizes_ = new std::map<std::string, int64_t>();

TEST_F(ResidencyTest, AccountedBytesMatchTheTensors) {
  auto zoo = ZooWithBudget(TwoOfThree());
  ASSERT_NE(zoo, nullptr);
  EXPECT_EQ(zoo->Memory().backbones, 0);  // nothing loads at start
  const auto resident = zoo->Resident(kMobileNet);
  ASSERT_TRUE(resident.ok()) << resident.status();
  const int64_t counted = TensorBytes(*(*resident)->module) + TensorBytes(*(*resident)->inference);
  EXPECT_EQ(zoo->Get(kMobileNet)->resident_bytes, counted);
  EXPECT_EQ(zoo->Memory().backbones, counted);
  EXPECT_EQ(zoo->Memory().budget, TwoOfThree());
  EXPECT_GT(counted, 3504872 * 4);  // at least its float32 parameters
}

TEST_F(ResidencyTest, UsingTheThirdEvictsTheLeastRecentlyUsed) {
  auto zoo = ZooWithBudget(TwoOfThree());
  ASSERT_NE(zoo, nullptr);
  Use(*zoo, kSqueeze0);
  Use(*zoo, kSqueeze1);
  Use(*zoo, kSqueeze0);  // squeezenet1_1 is now the least recently used
  Use(*zoo, kMobileNet);
  EXPECT_TRUE(IsResident(*zoo, kSqueeze0));
  EXPECT_FALSE(IsResident(*zoo, kSqueeze1));
  EXPECT_TRUE(IsResident(*zoo, kMobileNet));
  EXPECT_EQ(zoo->Get(kSqueeze1)->evictions, 1);
  EXPECT_EQ(zoo->Memory().backbones, Size(kSqueeze0) + Size(kMobileNet));
  EXPECT_LE(zoo->Memory().used(), TwoOfThree());
  // Used again, it loads again, evicting squeezenet1_0 (now the oldest).
  Use(*zoo, kSqueeze1);
  EXPECT_FALSE(IsResident(*zoo, kSqueeze0));
  EXPECT_TRUE(IsResident(*zoo, kSqueeze1));
  EXPECT_TRUE(IsResident(*zoo, kMobileNet));
}

TEST_F(ResidencyTest, PinnedAndInUseBackbonesAreNeverEvicted) {
  // squeezenet1_0 pinned at start, squeezenet1_1 held by a request.
  auto zoo = ZooWithBudget(TwoOfThree(), {kSqueeze0});
  ASSERT_NE(zoo, nullptr);
  EXPECT_TRUE(IsResident(*zoo, kSqueeze0));
  EXPECT_TRUE(zoo->Get(kSqueeze0)->pinned);
  auto held = zoo->Resident(kSqueeze1);
  ASSERT_TRUE(held.ok());
  EXPECT_EQ(zoo->Get(kSqueeze1)->users, 1);
  const auto refused = zoo->Resident(kMobileNet);
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
  const std::string why(refused.status().message());
  EXPECT_NE(why.find("loading mobilenet_v2 needs "), std::string::npos) << why;
  EXPECT_NE(why.find("--device_memory_budget"), std::string::npos) << why;
  EXPECT_NE(why.find(HumanBytes(TwoOfThree())), std::string::npos) << why;
  EXPECT_NE(why.find("backbones in use squeezenet1_1 " + HumanBytes(Size(kSqueeze1))), std::string::npos) << why;
  EXPECT_NE(why.find("pinned squeezenet1_0 " + HumanBytes(Size(kSqueeze0))), std::string::npos) << why;
  EXPECT_TRUE(IsResident(*zoo, kSqueeze0));
  EXPECT_TRUE(IsResident(*zoo, kSqueeze1));
  EXPECT_FALSE(IsResident(*zoo, kMobileNet));
  // Unloading either is refused too: one is in use; unpinning is explicit.
  EXPECT_EQ(zoo->Unload(kSqueeze1).status().code(), absl::StatusCode::kFailedPrecondition);

  // A caller that may wait gets it once the request ends.
  auto waiting = std::async(std::launch::async, [&] { return zoo->Resident(kMobileNet, [] { return false; }); });
  EXPECT_EQ(waiting.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout);
  held = absl::CancelledError("the request ended");  // drops its hold
  const auto loaded = waiting.get();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(IsResident(*zoo, kSqueeze0));  // pinned
  EXPECT_FALSE(IsResident(*zoo, kSqueeze1));
  EXPECT_TRUE(IsResident(*zoo, kMobileNet));

  // Unpinned, squeezenet1_0 is evictable like the others.
  ASSERT_TRUE(zoo->Pin(kSqueeze0, false).ok());
  const auto unloaded = zoo->Unload(kSqueeze0);
  ASSERT_TRUE(unloaded.ok()) << unloaded.status();
  EXPECT_EQ(unloaded->device, "");
  EXPECT_EQ(zoo->Memory().backbones, Size(kMobileNet));
}

TEST_F(ResidencyTest, ARequestInFlightKeepsItsBackbone) {
  auto zoo = ZooWithBudget(TwoOfThree());
  ASSERT_NE(zoo, nullptr);
  Predictor predictor(*zoo, nullptr, {});
  // A long request on squeezenet1_1 (ready tensors: a few seconds of forward passes).
  std::vector<ImageInput> many;
  many.push_back(ImageInput{"", torch::rand({256, 3, 224, 224})});
  auto busy = std::async(std::launch::async, [&] { return predictor.Predict(kSqueeze1, many, 1); });
  while (zoo->Get(kSqueeze1)->users == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  Use(*zoo, kSqueeze0);   // the most recently used, but idle
  Use(*zoo, kMobileNet);  // evicts squeezenet1_0, never the one in flight
  EXPECT_TRUE(IsResident(*zoo, kSqueeze1));
  EXPECT_FALSE(IsResident(*zoo, kSqueeze0));
  ASSERT_TRUE(busy.get().ok());
  // Served again after an eviction (its batcher replaced), with the same answer.
  const auto before = predictor.Predict(kSqueeze1, {ImageInput{"", many[0].tensor.slice(0, 0, 1)}}, 1);
  ASSERT_TRUE(before.ok());
  ASSERT_TRUE(zoo->Unload(kSqueeze1).ok());
  const auto after = predictor.Predict(kSqueeze1, {ImageInput{"", many[0].tensor.slice(0, 0, 1)}}, 1);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->images[0][0].index, before->images[0][0].index);
  EXPECT_FLOAT_EQ(after->images[0][0].probability, before->images[0][0].probability);
}

TEST_F(ResidencyTest, ABudgetThatFitsNoneSaysSo) {
  const int64_t budget = std::min(Size(kSqueeze0), Size(kSqueeze1)) / 2;
  auto zoo = ZooWithBudget(budget);
  ASSERT_NE(zoo, nullptr);
  const auto refused = zoo->Resident(kSqueeze1, [] { return false; });  // would wait, but it can never fit
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  const std::string why(refused.status().message());
  EXPECT_NE(why.find("loading squeezenet1_1 needs"), std::string::npos) << why;
  EXPECT_NE(why.find("of its " + HumanBytes(budget) + " budget (--device_memory_budget)"), std::string::npos) << why;
  EXPECT_NE(why.find("cannot fit until the budget grows"), std::string::npos) << why;
  EXPECT_EQ(zoo->Memory().backbones, 0);
}

TEST_F(ResidencyTest, ModelsAndJobsAreChargedAndMakeRoom) {
  auto zoo = ZooWithBudget(TwoOfThree());
  ASSERT_NE(zoo, nullptr);
  Use(*zoo, kSqueeze0);
  Use(*zoo, kSqueeze1);
  // A job whose estimate needs the room of one backbone evicts the older.
  {
    const auto job = zoo->Charge(DeviceLedger::Kind::kJob, Size(kMobileNet));
    EXPECT_EQ(zoo->Memory().jobs, Size(kMobileNet));
    EXPECT_FALSE(IsResident(*zoo, kSqueeze0));
    EXPECT_TRUE(IsResident(*zoo, kSqueeze1));
    const auto model = zoo->Charge(DeviceLedger::Kind::kModel, 1000);
    EXPECT_EQ(zoo->Memory().models, 1000);
  }
  EXPECT_EQ(zoo->Memory().jobs, 0);
  EXPECT_EQ(zoo->Memory().models, 0);
}

TEST(DeviceMemoryBudgetTest, ParsesSharesSizesAndBytes) {
  const torch::Device cpu(torch::kCPU);
  const int64_t ram = DeviceTotalBytes(cpu);
  ASSERT_GT(ram, 0);
  EXPECT_EQ(ParseDeviceMemoryBudget("auto", cpu).value(), ram / 2);
  EXPECT_EQ(ParseDeviceMemoryBudget("", cpu).value(), ram / 2);
  EXPECT_EQ(ParseDeviceMemoryBudget("none", cpu).value(), 0);
  EXPECT_EQ(ParseDeviceMemoryBudget("25%", cpu).value(), static_cast<int64_t>(static_cast<double>(ram) * 0.25));
  EXPECT_EQ(ParseDeviceMemoryBudget("6GiB", cpu).value(), 6LL << 30);
  EXPECT_EQ(ParseDeviceMemoryBudget("512 MiB", cpu).value(), 512LL << 20);
  EXPECT_EQ(ParseDeviceMemoryBudget("2GB", cpu).value(), 2'000'000'000);
  EXPECT_EQ(ParseDeviceMemoryBudget("123456", cpu).value(), 123456);
  for (const char* bad : {"lots", "-5GiB", "0%", "101%", "5 parsecs", "1e30", "nan"}) {
    const auto parsed = ParseDeviceMemoryBudget(bad, cpu);
    ASSERT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(parsed.status().message().find("--device_memory_budget"), std::string::npos);
  }
}

TEST(PreloadTest, UnknownNamesAreRefusedAndAllPinsEveryBackboneWithWeights) {
  ZooOptions options = ZooAt(WeightsDir(), "cpu");
  options.preload = {"resnet_9000"};
  EXPECT_EQ(Zoo::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.preload = {"all"};
  auto zoo = Zoo::Create(options);
  ASSERT_TRUE(zoo.ok()) << zoo.status();
  int pinned = 0;
  for (const BackboneStatus& b : (*zoo)->List()) {
    EXPECT_EQ(b.pinned, b.weights_present) << b.spec->name;
    EXPECT_EQ(!b.device.empty(), b.weights_present) << b.spec->name;
    pinned += b.pinned ? 1 : 0;
  }
  EXPECT_EQ(pinned, 3);
}

}  // namespace
}  // namespace graft::core
