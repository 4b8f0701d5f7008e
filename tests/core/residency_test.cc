// Lazy residency under a device memory budget, on three tiny backbones
// (tests/fakes, written here: no ../shared) and a manual clock: loads at
// first use, LRU eviction of idle unpinned backbones, pins and requests in
// flight that are never evicted, RESOURCE_EXHAUSTED with the numbers, and
// bytes that match the tensors.

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
#include "tests/fakes/manual_clock.h"
#include "tests/fakes/tiny_backbone.h"
#include "tests/testing/temp_dir.h"

namespace graft::core {
namespace {

// Three sizes, largest first (they stand where the real mobilenet_v2,
// squeezenet1_0 and squeezenet1_1 stood).
constexpr const char* kLarge = "tiny_large";
constexpr const char* kMiddle = "tiny_middle";
constexpr const char* kSmall = "tiny_small";

// Every parameter and buffer of a module, counted here rather than by graft.
int64_t TensorBytes(BackboneImpl& m) {
  int64_t n = 0;
  for (const auto& p : m.named_parameters(true))
    n += p.value().numel() * static_cast<int64_t>(p.value().element_size());
  for (const auto& b : m.named_buffers(true)) n += b.value().numel() * static_cast<int64_t>(b.value().element_size());
  return n;
}

ZooOptions Fakes(const std::string& dir) {
  auto options = fakes::TinyZooAt(dir, {fakes::TinySpec(kLarge, 12), fakes::TinySpec(kMiddle, 8),
                                        fakes::TinySpec(kSmall, 6)});
  EXPECT_TRUE(options.ok()) << options.status();
  return *options;
}

class ResidencyTest : public ::testing::Test {
 protected:
  // The resident bytes of the three, measured once in an unbounded zoo.
  static void SetUpTestSuite() {
    graft::testing::TempDir dir;
    auto zoo = Zoo::Create(Fakes(dir.path()));
    ASSERT_TRUE(zoo.ok()) << zoo.status();
    for (const char* name : {kLarge, kMiddle, kSmall}) {
      ASSERT_TRUE((*zoo)->Resident(name).ok());
      (*sizes_)[name] = (*zoo)->Get(name)->resident_bytes;
    }
  }

  static int64_t Size(const std::string& name) { return sizes_->at(name); }
  // Fits any two of the three, never all three.
  static int64_t TwoOfThree() {
    const int64_t all = Size(kLarge) + Size(kMiddle) + Size(kSmall);
    return all - std::min(Size(kMiddle), Size(kSmall)) / 2;
  }

  std::unique_ptr<Zoo> ZooWithBudget(int64_t budget, std::vector<std::string> preload = {}) {
    ZooOptions options = Fakes(dir_.path());
    options.memory_budget = absl::StrCat(budget);
    options.preload = std::move(preload);
    options.memory_wait = std::chrono::milliseconds(5000);
    options.clock = &clock_;
    auto zoo = Zoo::Create(options);
    EXPECT_TRUE(zoo.ok()) << zoo.status();
    return zoo.ok() ? std::move(*zoo) : nullptr;
  }

  static bool IsResident(const Zoo& zoo, const std::string& name) { return !zoo.Get(name)->device.empty(); }

  // Touches `name` (a request that came and went) a second after the last.
  void Use(const Zoo& zoo, const std::string& name) {
    clock_.Advance(std::chrono::seconds(1));
    ASSERT_TRUE(zoo.Resident(name).ok()) << name;
  }

  graft::testing::TempDir dir_;
  fakes::ManualClock clock_;
  static std::map<std::string, int64_t>* sizes_;
};

std::map<std::string, int64_t>* ResidencyTest::sizes_ = new std::map<std::string, int64_t>();

TEST_F(ResidencyTest, AccountedBytesMatchTheTensors) {
  auto zoo = ZooWithBudget(TwoOfThree());
  ASSERT_NE(zoo, nullptr);
  EXPECT_EQ(zoo->Memory().backbones, 0);  // nothing loads at start
  const auto resident = zoo->Resident(kLarge);
  ASSERT_TRUE(resident.ok()) << resident.status();
  const int64_t counted = TensorBytes(*(*resident)->module) + TensorBytes(*(*resident)->inference);
  EXPECT_EQ(zoo->Get(kLarge)->resident_bytes, counted);
  EXPECT_EQ(zoo->Memory().backbones, counted);
  EXPECT_EQ(zoo->Memory().budget, TwoOfThree());
  EXPECT_GT(counted, (*resident)->spec->parameter_count * 4);  // at least its float32 parameters
}

TEST_F(ResidencyTest, UsingTheThirdEvictsTheLeastRecentlyUsed) {
  auto zoo = ZooWithBudget(TwoOfThree());
  ASSERT_NE(zoo, nullptr);
  Use(*zoo, kMiddle);
  Use(*zoo, kSmall);
  Use(*zoo, kMiddle);  // the small one is now the least recently used
  Use(*zoo, kLarge);
  EXPECT_TRUE(IsResident(*zoo, kMiddle));
  EXPECT_FALSE(IsResident(*zoo, kSmall));
  EXPECT_TRUE(IsResident(*zoo, kLarge));
  EXPECT_EQ(zoo->Get(kSmall)->evictions, 1);
  EXPECT_EQ(zoo->Memory().backbones, Size(kMiddle) + Size(kLarge));
  EXPECT_LE(zoo->Memory().used(), TwoOfThree());
  // Used again, it loads again, evicting the middle one (now the oldest).
  Use(*zoo, kSmall);
  EXPECT_FALSE(IsResident(*zoo, kMiddle));
  EXPECT_TRUE(IsResident(*zoo, kSmall));
  EXPECT_TRUE(IsResident(*zoo, kLarge));
}

TEST_F(ResidencyTest, PinnedAndInUseBackbonesAreNeverEvicted) {
  // The middle one pinned at start, the small one held by a request.
  auto zoo = ZooWithBudget(TwoOfThree(), {kMiddle});
  ASSERT_NE(zoo, nullptr);
  EXPECT_TRUE(IsResident(*zoo, kMiddle));
  EXPECT_TRUE(zoo->Get(kMiddle)->pinned);
  auto held = zoo->Resident(kSmall);
  ASSERT_TRUE(held.ok());
  EXPECT_EQ(zoo->Get(kSmall)->users, 1);
  const auto refused = zoo->Resident(kLarge);
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
  const std::string why(refused.status().message());
  EXPECT_NE(why.find("loading tiny_large needs "), std::string::npos) << why;
  EXPECT_NE(why.find("--device_memory_budget"), std::string::npos) << why;
  EXPECT_NE(why.find(HumanBytes(TwoOfThree())), std::string::npos) << why;
  EXPECT_NE(why.find("backbones in use tiny_small " + HumanBytes(Size(kSmall))), std::string::npos) << why;
  EXPECT_NE(why.find("pinned tiny_middle " + HumanBytes(Size(kMiddle))), std::string::npos) << why;
  EXPECT_TRUE(IsResident(*zoo, kMiddle));
  EXPECT_TRUE(IsResident(*zoo, kSmall));
  EXPECT_FALSE(IsResident(*zoo, kLarge));
  // Unloading either is refused too: one is in use; unpinning is explicit.
  EXPECT_EQ(zoo->Unload(kSmall).status().code(), absl::StatusCode::kFailedPrecondition);

  // A caller that may wait gets it once the request ends.
  auto waiting = std::async(std::launch::async, [&] { return zoo->Resident(kLarge, [] { return false; }); });
  EXPECT_EQ(waiting.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout);
  held = absl::CancelledError("the request ended");  // drops its hold
  const auto loaded = waiting.get();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(IsResident(*zoo, kMiddle));  // pinned
  EXPECT_FALSE(IsResident(*zoo, kSmall));
  EXPECT_TRUE(IsResident(*zoo, kLarge));

  // Unpinned, the middle one is evictable like the others.
  ASSERT_TRUE(zoo->Pin(kMiddle, false).ok());
  const auto unloaded = zoo->Unload(kMiddle);
  ASSERT_TRUE(unloaded.ok()) << unloaded.status();
  EXPECT_EQ(unloaded->device, "");
  EXPECT_EQ(zoo->Memory().backbones, Size(kLarge));
}

TEST_F(ResidencyTest, ARequestInFlightKeepsItsBackbone) {
  auto zoo = ZooWithBudget(TwoOfThree());
  ASSERT_NE(zoo, nullptr);
  Predictor predictor(*zoo, nullptr, {});
  // A request on the small one that cannot finish yet: its forward pass
  // waits for the backbone's compute lock, held here.
  absl::Mutex* compute = nullptr;
  {
    auto held = zoo->Resident(kSmall);
    ASSERT_TRUE(held.ok());
    compute = &(*held)->compute_mu;
  }
  std::vector<ImageInput> many;
  many.push_back(ImageInput{"", torch::rand({4, 3, 32, 32})});
  // Declared before the lock so that a failed assertion below releases the
  // lock before the future's destructor waits for the request.
  std::future<absl::StatusOr<PredictResult>> busy;
  absl::ReleasableMutexLock lock(compute);
  busy = std::async(std::launch::async, [&] { return predictor.Predict(kSmall, many, 1); });
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (zoo->Get(kSmall)->users == 0 && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
  // The request and its batch each hold the backbone while it waits (one or
  // two holds, depending on how far the request got): in use either way.
  ASSERT_GE(zoo->Get(kSmall)->users, 1);
  Use(*zoo, kMiddle);  // the most recently used, but idle
  Use(*zoo, kLarge);   // evicts the middle one, never the one in flight
  EXPECT_TRUE(IsResident(*zoo, kSmall));
  EXPECT_FALSE(IsResident(*zoo, kMiddle));
  EXPECT_EQ(busy.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout);
  lock.Release();
  ASSERT_TRUE(busy.get().ok());
  // Served again after an eviction (its batcher replaced), with the same answer.
  const auto before = predictor.Predict(kSmall, {ImageInput{"", many[0].tensor.slice(0, 0, 1)}}, 1);
  ASSERT_TRUE(before.ok());
  ASSERT_TRUE(zoo->Unload(kSmall).ok());
  const auto after = predictor.Predict(kSmall, {ImageInput{"", many[0].tensor.slice(0, 0, 1)}}, 1);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->images[0][0].index, before->images[0][0].index);
  EXPECT_FLOAT_EQ(after->images[0][0].probability, before->images[0][0].probability);
}

TEST_F(ResidencyTest, ABudgetThatFitsNoneSaysSo) {
  const int64_t budget = std::min(Size(kMiddle), Size(kSmall)) / 2;
  auto zoo = ZooWithBudget(budget);
  ASSERT_NE(zoo, nullptr);
  const auto refused = zoo->Resident(kSmall, [] { return false; });  // would wait, but it can never fit
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  const std::string why(refused.status().message());
  EXPECT_NE(why.find("loading tiny_small needs"), std::string::npos) << why;
  EXPECT_NE(why.find("of its " + HumanBytes(budget) + " budget (--device_memory_budget)"), std::string::npos) << why;
  EXPECT_NE(why.find("cannot fit until the budget grows"), std::string::npos) << why;
  EXPECT_EQ(zoo->Memory().backbones, 0);
}

TEST_F(ResidencyTest, ModelsAndJobsAreChargedAndMakeRoom) {
  auto zoo = ZooWithBudget(TwoOfThree());
  ASSERT_NE(zoo, nullptr);
  Use(*zoo, kMiddle);
  Use(*zoo, kSmall);
  // A job whose estimate needs the room of one backbone evicts the older.
  {
    const auto job = zoo->Charge(DeviceLedger::Kind::kJob, Size(kLarge));
    EXPECT_EQ(zoo->Memory().jobs, Size(kLarge));
    EXPECT_FALSE(IsResident(*zoo, kMiddle));
    EXPECT_TRUE(IsResident(*zoo, kSmall));
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
  graft::testing::TempDir dir;
  ZooOptions options = Fakes(dir.path());
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
