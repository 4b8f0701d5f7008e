#include "core/util/thread_pool.h"

#include <algorithm>

#include "core/util/compute_threads.h"

namespace graft::core {

ThreadPool::ThreadPool(int threads) {
  for (int i = 0; i < std::max(1, threads); ++i) threads_.emplace_back([this] { Loop(); });
}

ThreadPool::~ThreadPool() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  cv_.SignalAll();
  for (auto& t : threads_) t.join();
}

void ThreadPool::Loop() {
  UseOneComputeThreadHere();
  while (true) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      while (!stop_ && tasks_.empty()) cv_.Wait(&mu_);
      if (tasks_.empty()) return;  // stopping, nothing left
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

int DefaultDecodeThreads() { return std::max(2, static_cast<int>(std::thread::hardware_concurrency())); }

}  // namespace graft::core
