#pragma once

#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <thread>
#include <type_traits>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace graft::core {

// A fixed set of worker threads running submitted tasks in order of arrival.
// Used for image decoding and preprocessing so they overlap with LibTorch
// compute on the caller's thread. Destruction finishes the queued tasks.
class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  template <typename F>
  auto Submit(F&& f) -> std::future<std::invoke_result_t<F>> {
    using R = std::invoke_result_t<F>;
    auto task = std::make_shared<std::packaged_task<R()>>(std::forward<F>(f));
    std::future<R> result = task->get_future();
    {
      absl::MutexLock lock(&mu_);
      tasks_.emplace_back([task] { (*task)(); });
    }
    cv_.Signal();
    return result;
  }

  int size() const { return static_cast<int>(threads_.size()); }

 private:
  void Loop();

  absl::Mutex mu_;
  absl::CondVar cv_;  // a worker: a task arrived, or stop
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

// Threads for decoding beside compute: the cores, at least 2.
int DefaultDecodeThreads();

}  // namespace graft::core
