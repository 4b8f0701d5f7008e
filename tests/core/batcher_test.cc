// The dynamic batcher: every request gets its own rows back however requests
// are grouped, the queue delay is honoured, and callers that leave while
// queued are dropped without disturbing anyone else.

#include "core/serve/batcher.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <future>
#include <thread>

#include "core/zoo/registry.h"
#include "core/zoo/zoo.h"

namespace graft::core {
namespace {

using Clock = std::chrono::steady_clock;

TrunkRequest Ready(torch::Tensor images, std::vector<int> stops) {
  TrunkRequest r;
  r.images = std::move(images);
  r.stops = std::move(stops);
  return r;
}

// Counts what the batcher reports, and lets a test wait for a queue depth
// (ordering without sleeps).
class CountingObserver : public BatcherObserver {
 public:
  void OnBatch(const std::string&, const std::string&, int64_t images, int64_t requests) override {
    std::lock_guard<std::mutex> lock(mu);
    batches.push_back({images, requests});
  }
  void OnQueueDepth(const std::string&, int64_t images) override {
    std::lock_guard<std::mutex> lock(mu);
    depth = images;
    changed.notify_all();
  }
  bool AwaitDepth(int64_t want) {
    std::unique_lock<std::mutex> lock(mu);
    return changed.wait_for(lock, std::chrono::seconds(10), [&] { return depth == want; });
  }
  int64_t MaxRequests() {
    std::lock_guard<std::mutex> lock(mu);
    int64_t m = 0;
    for (const auto& b : batches) m = std::max(m, b.second);
    return m;
  }
  int64_t TotalRequests() {
    std::lock_guard<std::mutex> lock(mu);
    int64_t n = 0;
    for (const auto& b : batches) n += b.second;
    return n;
  }
  std::mutex mu;
  std::condition_variable changed;
  int64_t depth = -1;
  std::vector<std::pair<int64_t, int64_t>> batches;
};

class BatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const BackboneSpec* spec = Registry::BuiltIn().Find("squeezenet1_1");
    ASSERT_NE(spec, nullptr);
    torch::manual_seed(3);
    resident_ = std::make_shared<ResidentBackbone>();
    resident_->spec = spec;
    resident_->module = spec->make();
    resident_->module->eval();
    auto inference = MakeInferenceBackbone(*spec, ModuleStateDict(*resident_->module), torch::kCPU);
    ASSERT_TRUE(inference.ok()) << inference.status();
    resident_->inference = *inference;
    n_ = static_cast<int>(resident_->module->blocks().size());
  }

  // What the trunk computes for `x` alone, at `stop`.
  torch::Tensor Expected(const torch::Tensor& x, int stop) {
    torch::NoGradGuard no_grad;
    return resident_->inference->ForwardTrunk(x.contiguous(torch::MemoryFormat::ChannelsLast), 0,
                                              static_cast<size_t>(stop));
  }

  static void ExpectClose(const torch::Tensor& got, const torch::Tensor& want) {
    ASSERT_EQ(got.sizes(), want.sizes());
    const double scale = std::max(want.abs().max().item<double>(), 1e-6);
    EXPECT_LE((got - want).abs().max().item<double>(), 1e-4 * scale);
  }

  std::shared_ptr<ResidentBackbone> resident_;
  int n_ = 0;
};

TEST_F(BatcherTest, ConcurrentRequestsEachGetTheirOwnRows) {
  CountingObserver observer;
  TrunkBatcher batcher(resident_, {/*max_batch_size=*/16, /*max_queue_delay_us=*/20000}, &observer);
  constexpr int kClients = 12;
  std::vector<torch::Tensor> inputs;
  for (int i = 0; i < kClients; ++i) {
    // Distinct images of 1 to 3 rows; two input sizes, batched apart.
    const int64_t side = i % 3 == 2 ? 80 : 64;
    inputs.push_back(torch::randn({1 + i % 3, 3, side, side}) + static_cast<double>(i));
  }
  const int mid = n_ / 2;
  std::vector<std::future<absl::StatusOr<TrunkResult>>> futures;
  for (int i = 0; i < kClients; ++i) {
    futures.push_back(std::async(std::launch::async, [&, i] {
      const std::vector<int> stops = i % 2 == 0 ? std::vector<int>{n_} : std::vector<int>{mid, n_};
      return batcher.Run(Ready(inputs[static_cast<size_t>(i)], stops), {});
    }));
  }
  for (int i = 0; i < kClients; ++i) {
    auto r = futures[static_cast<size_t>(i)].get();
    ASSERT_TRUE(r.ok()) << "client " << i << ": " << r.status();
    ExpectClose(r->at.at(n_), Expected(inputs[static_cast<size_t>(i)], n_));
    if (i % 2 == 1) {
      ExpectClose(r->at.at(mid), Expected(inputs[static_cast<size_t>(i)], mid));
    } else {
      EXPECT_EQ(r->at.count(mid), 0u) << "client " << i << " did not ask for block " << mid;
    }
    EXPECT_GE(r->batch_images, inputs[static_cast<size_t>(i)].size(0));
  }
  EXPECT_EQ(observer.TotalRequests(), kClients);
  EXPECT_GT(observer.MaxRequests(), 1) << "concurrent requests were never batched together";
  for (const auto& [images, requests] : observer.batches) EXPECT_LE(images, 16);
}

TEST_F(BatcherTest, DeferredInputsAreMadeByTheBatcherAndAFailureStaysWithItsRequest) {
  CountingObserver observer;
  TrunkBatcher batcher(resident_, {/*max_batch_size=*/16, /*max_queue_delay_us=*/50000}, &observer);
  constexpr int kClients = 8;
  std::vector<torch::Tensor> inputs;
  for (int i = 0; i < kClients; ++i) inputs.push_back(torch::randn({2, 3, 64, 64}) + static_cast<double>(i));
  std::vector<std::thread::id> callers(kClients);
  std::mutex made_mu;
  std::vector<std::thread::id> made_on;
  std::vector<std::future<absl::StatusOr<TrunkResult>>> futures;
  for (int i = 0; i < kClients; ++i) {
    futures.push_back(std::async(std::launch::async, [&, i] {
      callers[static_cast<size_t>(i)] = std::this_thread::get_id();
      TrunkRequest r;
      r.stops = {n_};
      r.height = r.width = 64;
      // Two one-image parts, made in order; client 3's second part fails.
      for (int64_t row = 0; row < 2; ++row) {
        DeferredInput d;
        d.make = [&, i, row]() -> absl::StatusOr<torch::Tensor> {
          {
            std::lock_guard<std::mutex> lock(made_mu);
            made_on.push_back(std::this_thread::get_id());
          }
          if (i == 3 && row == 1) return absl::InvalidArgumentError("image 1: corrupt JPEG");
          return inputs[static_cast<size_t>(i)].slice(0, row, row + 1);
        };
        r.deferred.push_back(std::move(d));
      }
      return batcher.Run(std::move(r), {});
    }));
  }
  for (int i = 0; i < kClients; ++i) {
    auto r = futures[static_cast<size_t>(i)].get();
    if (i == 3) {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
      EXPECT_EQ(r.status().message(), "image 1: corrupt JPEG");
      continue;
    }
    ASSERT_TRUE(r.ok()) << "client " << i << ": " << r.status();
    ExpectClose(r->at.at(n_), Expected(inputs[static_cast<size_t>(i)], n_));
    EXPECT_GE(r->prepare_us, 0);
  }
  EXPECT_EQ(made_on.size(), 2u * kClients);
  for (const auto& id : made_on) {
    EXPECT_EQ(std::count(callers.begin(), callers.end(), id), 0) << "an input was made on its caller's thread";
  }
  EXPECT_EQ(observer.TotalRequests(), kClients - 1) << "the failed request was computed";
  EXPECT_GT(observer.MaxRequests(), 1) << "deferred requests were never batched together";
}

TEST_F(BatcherTest, HonoursTheQueueDelayAndDoesNotWaitWhenFull) {
  constexpr int64_t kDelayUs = 150'000;
  TrunkBatcher batcher(resident_, {/*max_batch_size=*/4, kDelayUs}, nullptr);
  // Alone and short of a full batch: waits about the delay, not much longer.
  const auto start = Clock::now();
  auto lone = batcher.Run(Ready(torch::randn({1, 3, 64, 64}), {n_}), {});
  const auto waited = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
  ASSERT_TRUE(lone.ok()) << lone.status();
  EXPECT_GE(lone->queue_us, kDelayUs * 9 / 10);
  EXPECT_LE(lone->queue_us, kDelayUs + 100'000);
  EXPECT_GE(waited, lone->queue_us);
  // Alone again after a batch that was alone: a sequential caller is not kept
  // waiting for company.
  auto next = batcher.Run(Ready(torch::randn({1, 3, 64, 64}), {n_}), {});
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_LT(next->queue_us, kDelayUs / 2);
  // A full batch runs at once.
  auto full = batcher.Run(Ready(torch::randn({4, 3, 64, 64}), {n_}), {});
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_LT(full->queue_us, kDelayUs / 2);
  // A request larger than a batch is run in chunks, still as one answer.
  const torch::Tensor big = torch::randn({10, 3, 64, 64});
  auto chunked = batcher.Run(Ready(big, {n_}), {});
  ASSERT_TRUE(chunked.ok()) << chunked.status();
  ExpectClose(chunked->at.at(n_), Expected(big, n_));
}

TEST_F(BatcherTest, ACallerLeavingMidQueueIsDroppedAndOthersAreServed) {
  CountingObserver observer;
  TrunkBatcher batcher(resident_, {/*max_batch_size=*/1, /*max_queue_delay_us=*/0}, &observer);
  const torch::Tensor a = torch::randn({1, 3, 64, 64});
  const torch::Tensor b = torch::randn({1, 3, 64, 64}) + 1;
  const torch::Tensor c = torch::randn({1, 3, 64, 64}) - 1;
  // Hold the compute lock (as a training job would) so A's batch blocks and B
  // stays queued behind it.
  absl::ReleasableMutexLock busy(&resident_->compute_mu);
  auto fa = std::async(std::launch::async, [&] { return batcher.Run(Ready(a, {n_}), {}); });
  ASSERT_TRUE(observer.AwaitDepth(0)) << "A's batch was never taken";  // taken, and blocked on the lock
  std::atomic<bool> b_gone{false};
  auto fb = std::async(std::launch::async, [&] { return batcher.Run(Ready(b, {n_}), [&] { return b_gone.load(); }); });
  ASSERT_TRUE(observer.AwaitDepth(1)) << "B never queued";
  b_gone = true;
  ASSERT_EQ(fb.wait_for(std::chrono::seconds(2)), std::future_status::ready) << "a cancelled caller kept waiting";
  const auto rb = fb.get();
  EXPECT_EQ(rb.status().code(), absl::StatusCode::kCancelled) << rb.status();
  busy.Release();
  const auto ra = fa.get();
  ASSERT_TRUE(ra.ok()) << ra.status();
  ExpectClose(ra->at.at(n_), Expected(a, n_));
  const auto rc = batcher.Run(Ready(c, {n_}), {});
  ASSERT_TRUE(rc.ok()) << rc.status();
  ExpectClose(rc->at.at(n_), Expected(c, n_));
  EXPECT_EQ(observer.TotalRequests(), 2) << "the cancelled request was computed";
}

TEST_F(BatcherTest, ATenantFloodingTheQueueWithLargeImagesDelaysAnotherByOneBatchNotTheQueue) {
  // mallory sends 8 requests whose one image each costs the whole batch's
  // pixel bound to decode (simulated: 150 ms); alice's small request arrives
  // behind all of them. First come first served, alice would ride with (or
  // after) all of mallory's decodes; in fair turns she rides in the next batch.
  constexpr int64_t kBound = 1'000'000;
  constexpr auto kDecode = std::chrono::milliseconds(150);
  CountingObserver observer;
  BatcherOptions options{/*max_batch_size=*/32, /*max_queue_delay_us=*/0};
  options.max_batch_pixels = kBound;
  TrunkBatcher batcher(resident_, options, &observer);
  const auto request = [&](std::string tenant, int64_t pixels, std::chrono::milliseconds decode) {
    TrunkRequest r;
    r.stops = {n_};
    r.height = r.width = 64;
    r.tenant = std::move(tenant);
    DeferredInput d;
    d.pixels = pixels;
    d.make = [decode]() -> absl::StatusOr<torch::Tensor> {
      std::this_thread::sleep_for(decode);
      return torch::randn({1, 3, 64, 64});
    };
    r.deferred.push_back(std::move(d));
    return r;
  };
  // Held like a training job would hold it: mallory's first batch decodes
  // and then waits, so the rest of the queue builds up behind it.
  absl::ReleasableMutexLock busy(&resident_->compute_mu);
  std::vector<std::future<Clock::time_point>> mallory;
  for (int i = 0; i < 8; ++i) {
    mallory.push_back(std::async(std::launch::async, [&] {
      const auto r = batcher.Run(request("mallory", kBound, kDecode), {});
      EXPECT_TRUE(r.ok()) << r.status();
      return Clock::now();
    }));
    // One at a time, so that their order in the queue is known.
    ASSERT_TRUE(observer.AwaitDepth(i)) << "mallory's request " << i << " never queued";
  }
  auto alice = std::async(std::launch::async, [&] {
    auto r = batcher.Run(request("alice", 100 * 100, std::chrono::milliseconds(1)), {});
    return std::make_pair(std::move(r), Clock::now());
  });
  ASSERT_TRUE(observer.AwaitDepth(8)) << "alice's request never queued";
  busy.Release();
  auto [a, alice_done] = alice.get();
  ASSERT_TRUE(a.ok()) << a.status();
  std::vector<Clock::time_point> done;
  for (auto& m : mallory) done.push_back(m.get());
  std::sort(done.begin(), done.end());
  // Only mallory's first batch (taken before alice came) ran ahead of her.
  EXPECT_LT(alice_done, done[1]) << "alice waited for more than one of mallory's batches";
  EXPECT_EQ(a->batch_images, 1) << "alice's small image rode with a decode at the pixel bound";
  EXPECT_LT(a->prepare_us, 100'000) << "alice's batch decoded mallory's images too";
}

TEST_F(BatcherTest, BackgroundRequestsWaitForEveryOtherAndNeverRideWithOne) {
  // A shadow version's work queues ahead of a caller's request; the caller's
  // rides first and alone, the background ones together after it.
  CountingObserver observer;
  TrunkBatcher batcher(resident_, BatcherOptions{/*max_batch_size=*/32, /*max_queue_delay_us=*/0}, &observer);
  const auto request = [&](bool background) {
    TrunkRequest r = Ready(torch::randn({1, 3, 64, 64}), {n_});
    r.background = background;
    r.tenant = background ? "graft-shadow" : "alice";
    return r;
  };
  absl::ReleasableMutexLock busy(&resident_->compute_mu);
  auto first = std::async(std::launch::async, [&] { return batcher.Run(request(false), {}); });
  ASSERT_TRUE(observer.AwaitDepth(0)) << "the first request was never taken";
  std::vector<std::future<absl::StatusOr<TrunkResult>>> background;
  for (int i = 0; i < 3; ++i) {
    background.push_back(std::async(std::launch::async, [&] { return batcher.Run(request(true), {}); }));
    ASSERT_TRUE(observer.AwaitDepth(i + 1)) << "background request " << i << " never queued";
  }
  auto caller = std::async(std::launch::async, [&] { return batcher.Run(request(false), {}); });
  ASSERT_TRUE(observer.AwaitDepth(4)) << "the caller's request never queued";
  busy.Release();
  ASSERT_TRUE(first.get().ok());
  const auto c = caller.get();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->batch_images, 1) << "the caller's request rode with background work";
  for (auto& b : background) {
    const auto r = b.get();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->batch_images, 3) << "background requests ride together";
  }
  // In order: the first request, the caller's alone, then the background ones.
  std::lock_guard<std::mutex> lock(observer.mu);
  EXPECT_EQ(observer.batches, (std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {1, 1}, {3, 3}}));
}

}  // namespace
}  // namespace graft::core
