#include "core/util/compute_threads.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <iterator>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

namespace graft::core {
namespace {

int ThreadsOfThisProcess() {
  return static_cast<int>(std::distance(std::filesystem::directory_iterator("/proc/self/task"),
                                        std::filesystem::directory_iterator()));
}

// The threads ParallelForEach ran `n` items on.
size_t ThreadsUsed(int n) {
  std::mutex mu;
  std::set<std::thread::id> threads;
  ParallelForEach(n, [&](int64_t) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    std::lock_guard<std::mutex> lock(mu);
    threads.insert(std::this_thread::get_id());
  });
  return threads.size();
}

TEST(ComputeThreadsTest, OnlyATeamScopeComputesWithATeamAndItsWorkersLeaveWithIt) {
  // What graftd sets up: a thread that did not ask for a team (an RPC handler
  // loading a backbone) computes alone and starts no OpenMP workers, which
  // would stay for its lifetime and make every team's idle workers sleep
  // after ~100 spins; a job's scope gets a team and its workers go with it.
  std::thread t([] {
    at::set_num_threads(2);  // what graftd set before: every thread's default
    SetComputeThreads(2);
    EXPECT_EQ(ComputeThreads(), 2);
    const int baseline = ThreadsOfThisProcess();
    std::thread plain([&] {
      EXPECT_EQ(at::get_num_threads(), 1);
      const torch::Tensor x = torch::rand({1 << 22});
      EXPECT_GT((x * 2).sum().item<float>(), 0);
      EXPECT_EQ(ThreadsUsed(16), 1u);
      EXPECT_EQ(ThreadsOfThisProcess(), baseline + 1) << "a thread without a team started workers";
    });
    plain.join();
    std::thread job([&] {
      {
        const ComputeTeam team;
        EXPECT_EQ(at::get_num_threads(), 2);
        EXPECT_EQ(ThreadsUsed(32), 2u) << "the scope's work did not reach a second thread";
        EXPECT_GE(ThreadsOfThisProcess(), baseline + 2);
      }
      EXPECT_EQ(at::get_num_threads(), 1);
      int now = ThreadsOfThisProcess();
      for (int i = 0; i < 200 && now > baseline + 1; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        now = ThreadsOfThisProcess();
      }
      EXPECT_EQ(now, baseline + 1) << "the team's worker outlived its scope";
      // A second scope on the same thread gets a team again.
      const ComputeTeam again;
      EXPECT_EQ(ThreadsUsed(32), 2u);
    });
    job.join();
    at::set_num_threads(2);  // LibTorch's global count as the other tests expect it
  });
  t.join();
}

TEST(ComputeThreadsTest, OpenBlasRunsProductsOnTheCallingThreadAndStaysCorrect) {
  using GetThreads = int (*)();
  auto get = reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  if (get == nullptr) GTEST_SKIP() << "the BLAS in use is not OpenBLAS";
  const torch::Tensor a = torch::randn({512, 768});
  const torch::Tensor b = torch::randn({768, 256});
  const torch::Tensor before = torch::mm(a, b);
  ASSERT_TRUE(UseSingleThreadedBlas());
  EXPECT_EQ(get(), 1);
  EXPECT_TRUE(torch::allclose(torch::mm(a, b), before, 1e-5, 1e-4));
  // A Linear layer (what heads run) gives the same answer as before.
  EXPECT_TRUE(torch::allclose(torch::nn::functional::linear(a, b.t()), before, 1e-5, 1e-4));
}

TEST(ComputeThreadsTest, OneComputeThreadHereLeavesOtherThreadsTheirTeams) {
  // On a fresh thread: UseOneComputeThreadHere acts once per thread, and other
  // tests in this process may already have called it on the main thread.
  std::thread here([] {
    at::set_num_threads(2);
    UseOneComputeThreadHere();
    EXPECT_EQ(at::get_num_threads(), 1);
    int other = 0;
    std::thread t([&] { other = at::get_num_threads(); });
    t.join();
    EXPECT_EQ(other, 2);
    // Ops on this thread still compute the same values.
    const torch::Tensor x = torch::arange(1000, torch::kFloat32);
    EXPECT_FLOAT_EQ(x.sum().item<float>(), 499500.0f);
  });
  here.join();
}

TEST(ComputeThreadsTest, ParallelForEachUsesTheTeamOnceEachAndNestsSerially) {
  std::thread t([] {  // a thread with a team of two, as the batcher's
    at::set_num_threads(2);
    std::vector<std::atomic<int>> calls(64);
    std::mutex mu;
    std::set<std::thread::id> threads;
    ParallelForEach(64, [&](int64_t i) {
      ++calls[static_cast<size_t>(i)];
      {
        std::lock_guard<std::mutex> lock(mu);
        threads.insert(std::this_thread::get_id());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    });
    for (const auto& c : calls) EXPECT_EQ(c.load(), 1);
    EXPECT_EQ(threads.size(), 2u) << "the work did not reach the second thread of the team";
    // Uneven items: the thread that draws the slow one leaves the rest to the
    // other (a fixed split would give each thread half of them).
    std::atomic<int> on_slow_thread{0};
    std::thread::id slow_thread;
    ParallelForEach(16, [&](int64_t i) {
      if (i == 0) {
        {
          std::lock_guard<std::mutex> lock(mu);
          slow_thread = std::this_thread::get_id();
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      std::lock_guard<std::mutex> lock(mu);
      if (std::this_thread::get_id() == slow_thread) ++on_slow_thread;
    });
    EXPECT_LE(on_slow_thread.load(), 2) << "the thread busy with the slow item was given a fixed share of the rest";
    // Nested: the inner calls run on the outer call's thread.
    std::atomic<int> mismatched{0}, inner{0};
    ParallelForEach(4, [&](int64_t) {
      const auto outer = std::this_thread::get_id();
      ParallelForEach(8, [&](int64_t) {
        ++inner;
        if (std::this_thread::get_id() != outer) ++mismatched;
      });
    });
    EXPECT_EQ(inner.load(), 32);
    EXPECT_EQ(mismatched.load(), 0);
    EXPECT_THROW(ParallelForEach(8, [](int64_t i) {
      if (i == 5) throw std::runtime_error("five");
    }), std::runtime_error);
  });
  t.join();
}

}  // namespace
}  // namespace graft::core
