#pragma once

#include <torch/types.h>

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/zoo/zoo.h"

namespace graft::core {

// What a batcher reports; called from its worker thread.
class BatcherObserver {
 public:
  virtual ~BatcherObserver() = default;
  // Images waiting for a batch after a batch was taken (or a request arrived).
  virtual void OnQueueDepth(const std::string& backbone, int64_t images) {}
  // One forward pass over `images` images gathered from `requests` requests.
  virtual void OnBatch(const std::string& backbone, const std::string& precision, int64_t images, int64_t requests) {}
  // A request waited `seconds` from its arrival to the start of its batch.
  virtual void OnQueueWait(const std::string& backbone, double seconds) {}
};

struct BatcherOptions {
  int64_t max_batch_size = 32;        // images per forward pass
  int64_t max_queue_delay_us = 500;   // how long the oldest request waits for company
  bool mixed_precision = true;        // CUDA only: the trunk runs under float16 autocast
  // Encoded pixels one batch may decode (0: no bound); a request above it
  // rides alone (--max_request_pixels).
  int64_t max_batch_pixels = 0;
};

// An input the batcher makes itself, on its compute threads, just before the
// batch it rides in runs: `images` rows of [images, 3, H, W] float on the CPU,
// or an error (naming the input) that fails its request alone.
struct DeferredInput {
  int64_t images = 1;
  int64_t pixels = 0;  // what decoding it costs, from the encoded header
  std::function<absl::StatusOr<torch::Tensor>()> make;
};

// One request to the shared trunk: a [N, 3, H, W] float batch on the CPU and
// the block boundaries whose activations it needs (ascending, 1..n). Instead
// of `images`, `deferred` inputs of `height` x `width` (concatenated in
// order) leave decoding to the batcher: on a CPU backbone that keeps every
// core's work in one place, where decoding on the callers' threads would
// preempt the forward's OpenMP team and stall it at each barrier.
struct TrunkRequest {
  torch::Tensor images;
  std::vector<int> stops;
  // Also the backbone's own classifier over the last block's output (which
  // `stops` must include), batched with the others' like the trunk.
  bool classify = false;
  std::vector<DeferredInput> deferred;
  int64_t height = 0;
  int64_t width = 0;
  // Whose request it is: batches are formed in fair turns between tenants.
  std::string tenant;
  // Work nobody waits for (a shadow version's): taken only when no request
  // a caller waits for has been queued or computing in any batcher of the
  // process for 2 ms, and never batched with one.
  bool background = false;
  // The number format its trunk runs in, and that trunk (Zoo::Trunk, which
  // the caller has called; null: the backbone's float32 `inference`).
  // Requests of different trunks never share a batch.
  Precision precision = Precision::kFp32;
  BackbonePtr trunk;

  int64_t Images() const;
  int64_t Pixels() const;  // of its deferred inputs
  // Whether the two may ride in one batch: same input size and trunk.
  bool Batchable(const TrunkRequest& other) const;
};

// The made parts of one request's inputs, in order, as one batch.
absl::StatusOr<torch::Tensor> JoinInputs(const std::vector<torch::Tensor>& parts);

struct TrunkResult {
  std::map<int, torch::Tensor> at;  // this request's rows at each of its stops
  torch::Tensor logits;             // classify: its rows of the classifier's output
  int64_t queue_us = 0;             // from arrival to the start of its batch
  int64_t prepare_us = 0;           // its batch's deferred inputs made (decoded)
  int64_t compute_us = 0;           // its batch's forward pass
  int64_t batch_images = 0;         // images in the batch it rode in
};

// The dynamic batcher of one resident backbone: concurrent requests are
// gathered until max_batch_size images or until the oldest has waited
// max_queue_delay_us (not waited when the previous batch held a single
// request: sequential callers get no added latency), the trunk runs once over all of them up to the deepest
// stop any of them needs, and each gets its own rows back. Requests of
// different input sizes or precisions are batched separately. A request whose caller has
// gone is dropped from the queue; one already in a batch finishes unseen.
//
// Fair turns: a batch starts with the oldest request of the tenant served
// least recently and is filled in the same order, and its deferred inputs
// hold at most max_batch_pixels to decode. So a tenant flooding the queue
// with large images delays another tenant's request by about one batch.
// Background requests come after all others, ride only with each other, and
// wait until no caller has waited for any batcher of the process for 2 ms.
class TrunkBatcher {
 public:
  TrunkBatcher(std::shared_ptr<ResidentBackbone> backbone, BatcherOptions options, BatcherObserver* observer);
  ~TrunkBatcher();  // queued requests are answered UNAVAILABLE
  TrunkBatcher(const TrunkBatcher&) = delete;
  TrunkBatcher& operator=(const TrunkBatcher&) = delete;

  // Blocks until the request's batch has run. `cancelled` is polled while
  // waiting; when it returns true the request is abandoned with CANCELLED.
  absl::StatusOr<TrunkResult> Run(TrunkRequest request, const std::function<bool()>& cancelled);
  // Whether this batcher runs `backbone` (and not an evicted copy).
  bool Serves(const std::shared_ptr<ResidentBackbone>& backbone) const { return backbone_.lock() == backbone; }

 private:
  using Clock = std::chrono::steady_clock;
  struct Pending {
    TrunkRequest request;
    Clock::time_point arrived;
    // Under the batcher's mu_ once queued (the worker writes the result
    // unlocked while the request is in its running batch, before `done`).
    bool done = false;
    absl::CondVar done_cv;  // its caller: done
    absl::StatusOr<TrunkResult> result = absl::UnknownError("not run");
  };

  void Loop();
  // Takes the oldest request of the tenant served least recently (always,
  // however large) and others of its input size in the same order, up to
  // max_batch_size images and max_batch_pixels to decode.
  std::vector<std::shared_ptr<Pending>> TakeBatch() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Images queued with the oldest request's input size.
  int64_t CompatibleImages() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t QueuedImages() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Waits until a request is queued or the batcher stops, at most until
  // `deadline` (absl::InfiniteFuture(): for ever); whether one is.
  bool AwaitWork(absl::Time deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Compute(const std::vector<std::shared_ptr<Pending>>& batch);
  // Makes the batch's deferred inputs, in parallel on this thread's intra-op
  // pool; a request with an input that fails gets that error and leaves the
  // batch. Returns those left to compute.
  std::vector<std::shared_ptr<Pending>> Prepare(const std::vector<std::shared_ptr<Pending>>& batch);

  // Not kept alive by the batcher: requests in flight hold it, and an idle
  // backbone may be evicted (its batcher is then replaced).
  const std::weak_ptr<ResidentBackbone> backbone_;
  const std::string name_;
  const BatcherOptions options_;
  BatcherObserver* const observer_;

  absl::Mutex mu_;
  absl::CondVar work_cv_;  // the worker: a request arrived, or stop
  std::deque<std::shared_ptr<Pending>> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  // Only the worker's: the first request waits for company when > 1.
  size_t last_batch_requests_ = 2;
  uint64_t batches_ ABSL_GUARDED_BY(mu_) = 0;  // batches taken so far
  // The batch in which each tenant last rode (pruned to tenants queued).
  std::map<std::string, uint64_t> served_ ABSL_GUARDED_BY(mu_);
  std::thread worker_;
};

}  // namespace graft::core
