#include "core/serve/batcher.h"

#include "core/util/device.h"

#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <atomic>
#include <numeric>
#include <set>

#include "absl/strings/str_cat.h"
#include "core/util/compute_threads.h"
#include "core/util/torch_status.h"

namespace graft::core {
namespace {

// How often a waiting caller checks whether its client has gone. Each check
// wakes a thread that may preempt the forward's OpenMP team, so not often.
const absl::Duration kCancelPoll = absl::Milliseconds(50);
constexpr int kLogits = -1;  // the classifier's output among a batch's stops

int64_t Micros(std::chrono::steady_clock::duration d) {
  return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}

// Requests a caller waits for, queued or computing, in every batcher of the
// process, and when the last one ended: background work starts only when
// there have been none for kBackgroundIdle (the cores are shared by all
// backbones' batchers, and a caller whose next request follows at once,
// a closed loop, would find the cores taken by a batch begun in between).
std::atomic<int64_t> foreground_in_flight{0};
std::atomic<int64_t> foreground_ended_ns{0};
const absl::Duration kBackgroundIdle = absl::Milliseconds(2);
// How often a batcher holding only background work looks again.
const absl::Duration kBackgroundPoll = absl::Milliseconds(1);

int64_t SteadyNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool CallersIdle() {
  return foreground_in_flight.load(std::memory_order_relaxed) == 0 &&
         SteadyNanos() - foreground_ended_ns.load(std::memory_order_relaxed) >=
             absl::ToInt64Nanoseconds(kBackgroundIdle);
}

struct ForegroundScope {
  explicit ForegroundScope(bool background) : counted(!background) {
    if (counted) foreground_in_flight.fetch_add(1, std::memory_order_relaxed);
  }
  ~ForegroundScope() {
    if (!counted) return;
    foreground_ended_ns.store(SteadyNanos(), std::memory_order_relaxed);
    foreground_in_flight.fetch_sub(1, std::memory_order_relaxed);
  }
  const bool counted;
};

}  // namespace

int64_t TrunkRequest::Images() const {
  if (images.defined()) return images.size(0);
  int64_t n = 0;
  for (const DeferredInput& d : deferred) n += d.images;
  return n;
}

int64_t TrunkRequest::Pixels() const {
  int64_t n = 0;
  for (const DeferredInput& d : deferred) n += d.pixels;
  return n;
}

bool TrunkRequest::Batchable(const TrunkRequest& other) const {
  if (precision != other.precision || trunk != other.trunk) return false;
  const auto size = [](const TrunkRequest& r) {
    return r.images.defined() ? std::make_pair(r.images.size(-2), r.images.size(-1)) : std::make_pair(r.height, r.width);
  };
  return size(*this) == size(other);
}

absl::StatusOr<torch::Tensor> JoinInputs(const std::vector<torch::Tensor>& parts) {
  return GuardInternal("batching", [&]() -> absl::StatusOr<torch::Tensor> {
    return parts.size() == 1 ? parts[0] : torch::cat(parts, 0);
  });
}

TrunkBatcher::TrunkBatcher(std::shared_ptr<ResidentBackbone> backbone, BatcherOptions options,
                           BatcherObserver* observer)
    : backbone_(backbone), name_(backbone->spec->name), options_(options), observer_(observer) {
  worker_ = std::thread([this] { Loop(); });
}

TrunkBatcher::~TrunkBatcher() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    for (auto& p : queue_) {
      p->result = absl::UnavailableError("the server is shutting down");
      p->done = true;
      p->done_cv.Signal();
    }
    queue_.clear();
  }
  work_cv_.SignalAll();
  worker_.join();
}

absl::StatusOr<TrunkResult> TrunkBatcher::Run(TrunkRequest request, const std::function<bool()>& cancelled) {
  const ForegroundScope in_flight(request.background);
  auto pending = std::make_shared<Pending>();
  pending->request = std::move(request);
  pending->arrived = Clock::now();
  absl::MutexLock lock(&mu_);
  if (stop_) return absl::UnavailableError("the server is shutting down");
  queue_.push_back(pending);
  if (observer_ != nullptr) observer_->OnQueueDepth(name_, QueuedImages());
  work_cv_.Signal();
  while (!pending->done) {
    pending->done_cv.WaitWithTimeout(&mu_, kCancelPoll);
    if (pending->done || !cancelled || !cancelled()) continue;
    // The caller has gone: leave the queue if still in it; a request already
    // in a running batch is simply not waited for.
    for (auto it = queue_.begin(); it != queue_.end(); ++it) {
      if (*it == pending) {
        queue_.erase(it);
        break;
      }
    }
    return absl::CancelledError("the request was cancelled while waiting for a batch");
  }
  return std::move(pending->result);
}

int64_t TrunkBatcher::QueuedImages() const {
  int64_t n = 0;
  for (const auto& p : queue_) n += p->request.Images();
  return n;
}

int64_t TrunkBatcher::CompatibleImages() const {
  int64_t n = 0;
  for (const auto& p : queue_) {
    if (p->request.Batchable(queue_.front()->request)) n += p->request.Images();
  }
  return n;
}

std::vector<std::shared_ptr<TrunkBatcher::Pending>> TrunkBatcher::TakeBatch() {
  // Queue positions in turn order: tenants served least recently first (one
  // never served, or not since its stamp was pruned, counts as 0), each
  // tenant's requests oldest first.
  const auto stamp = [&](const std::string& tenant) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const auto it = served_.find(tenant);
    return it == served_.end() ? uint64_t{0} : it->second;
  };
  std::vector<size_t> order(queue_.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const TrunkRequest& ra = queue_[a]->request;
    const TrunkRequest& rb = queue_[b]->request;
    if (ra.background != rb.background) return rb.background;
    return stamp(ra.tenant) < stamp(rb.tenant);
  });
  const TrunkRequest& head = queue_[order[0]]->request;
  std::vector<bool> taken(queue_.size(), false);
  taken[order[0]] = true;
  int64_t images = head.Images();
  int64_t pixels = head.Pixels();
  for (size_t k = 1; k < order.size() && images < options_.max_batch_size; ++k) {
    const TrunkRequest& r = queue_[order[k]]->request;
    const int64_t n = r.Images();
    const int64_t px = r.Pixels();
    if (r.background != head.background || !r.Batchable(head) || images + n > options_.max_batch_size) continue;
    if (options_.max_batch_pixels > 0 && pixels + px > options_.max_batch_pixels) continue;
    images += n;
    pixels += px;
    taken[order[k]] = true;
  }
  std::vector<std::shared_ptr<Pending>> batch;
  std::deque<std::shared_ptr<Pending>> rest;
  for (size_t k : order) {
    if (taken[k]) batch.push_back(queue_[k]);
  }
  for (size_t i = 0; i < queue_.size(); ++i) {
    if (!taken[i]) rest.push_back(std::move(queue_[i]));
  }
  queue_ = std::move(rest);
  ++batches_;
  for (const auto& p : batch) served_[p->request.tenant] = batches_;
  // Stamps matter only between tenants with requests waiting: forget the rest
  // now and then, so the map stays the size of the queue.
  if (served_.size() > 64 + queue_.size()) {
    std::set<std::string> queued;
    for (const auto& p : queue_) queued.insert(p->request.tenant);
    for (auto it = served_.begin(); it != served_.end();) {
      it = queued.count(it->first) > 0 ? std::next(it) : served_.erase(it);
    }
  }
  return batch;
}

bool TrunkBatcher::AwaitWork(absl::Time deadline) {
  while (!stop_ && queue_.empty()) {
    if (work_cv_.WaitWithDeadline(&mu_, deadline)) break;  // timed out
  }
  return stop_ || !queue_.empty();
}

void TrunkBatcher::Loop() {
  UseComputeTeamHere();
  absl::MutexLock lock(&mu_);
  while (true) {
    // Idle for a second: the team's workers go (a job's feature pass then
    // runs with the only team in the process), and come back with the next batch.
    if (!AwaitWork(absl::Now() + absl::Seconds(1))) {
      ReleaseComputeTeam();
      AwaitWork(absl::InfiniteFuture());
    }
    if (stop_) return;
    // Only background work here while callers wait somewhere, or did just
    // now: not yet (a caller's request arriving here wakes this at once).
    if (!CallersIdle() &&
        std::all_of(queue_.begin(), queue_.end(), [](const auto& p) { return p->request.background; })) {
      work_cv_.WaitWithTimeout(&mu_, kBackgroundPoll);
      continue;
    }
    // Wait for company until the batch is full or the oldest request's delay
    // is spent; a lone caller whose last batch was also alone (one client,
    // sequential requests) is not kept waiting for company that never comes.
    // Background requests wait for nobody and are nobody's company.
    size_t foreground = 0;
    for (const auto& p : queue_) foreground += p->request.background ? 0 : 1;
    const bool expect_company = foreground > 0 && (last_batch_requests_ > 1 || foreground > 1);
    const auto deadline = queue_.front()->arrived +
                          std::chrono::microseconds(expect_company ? options_.max_queue_delay_us : 0);
    const absl::Time until = absl::Now() + absl::FromChrono(deadline - Clock::now());
    while (!stop_ && !queue_.empty() && CompatibleImages() < options_.max_batch_size && Clock::now() < deadline) {
      work_cv_.WaitWithDeadline(&mu_, until);
    }
    if (stop_) return;
    if (queue_.empty()) continue;  // everyone waiting gave up
    auto batch = TakeBatch();
    if (!batch.front()->request.background) last_batch_requests_ = batch.size();
    if (observer_ != nullptr) observer_->OnQueueDepth(name_, QueuedImages());
    mu_.Unlock();
    Compute(batch);
    mu_.Lock();
    // Wakes this batch's callers only; those queued for the next sleep on.
    for (auto& p : batch) {
      p->done = true;
      p->done_cv.Signal();
    }
  }
}

std::vector<std::shared_ptr<TrunkBatcher::Pending>> TrunkBatcher::Prepare(
    const std::vector<std::shared_ptr<Pending>>& batch) {
  struct Job {
    Pending* owner;
    const DeferredInput* input;
    absl::StatusOr<torch::Tensor> made = absl::UnknownError("not made");
  };
  std::vector<Job> jobs;
  for (const auto& p : batch) {
    for (const DeferredInput& d : p->request.deferred) jobs.push_back({p.get(), &d});
  }
  if (jobs.empty()) return batch;
  ParallelForEach(static_cast<int64_t>(jobs.size()), [&](int64_t i) {
    Job& job = jobs[static_cast<size_t>(i)];
    job.made = GuardInternal("preparing inputs", [&] { return job.input->make(); });
  });
  std::vector<std::shared_ptr<Pending>> ready;
  size_t j = 0;
  for (const auto& p : batch) {
    if (p->request.deferred.empty()) {
      ready.push_back(p);
      continue;
    }
    std::vector<torch::Tensor> parts;
    absl::Status failed;
    for (; j < jobs.size() && jobs[j].owner == p.get(); ++j) {
      if (!failed.ok()) continue;
      if (jobs[j].made.ok()) {
        parts.push_back(*jobs[j].made);
      } else {
        failed = jobs[j].made.status();
      }
    }
    if (!failed.ok()) {
      p->result = failed;
      continue;
    }
    auto joined = JoinInputs(parts);
    if (!joined.ok()) {
      p->result = joined.status();
      continue;
    }
    p->request.images = *std::move(joined);
    ready.push_back(p);
  }
  return ready;
}

void TrunkBatcher::Compute(const std::vector<std::shared_ptr<Pending>>& taken) {
  const auto prepare_start = Clock::now();
  const std::vector<std::shared_ptr<Pending>> batch = Prepare(taken);
  const auto prepare_us = Micros(Clock::now() - prepare_start);
  if (batch.empty()) return;
  const auto start = Clock::now();
  std::set<int> stop_set;
  std::vector<torch::Tensor> inputs;
  bool classify = false;
  for (const auto& p : batch) {
    stop_set.insert(p->request.stops.begin(), p->request.stops.end());
    inputs.push_back(p->request.images);
    classify = classify || p->request.classify;
  }
  const std::vector<int> stops(stop_set.begin(), stop_set.end());
  const std::shared_ptr<ResidentBackbone> held = backbone_.lock();
  if (held == nullptr) {  // not reached: every request in the batch holds it
    for (const auto& p : batch) p->result = absl::UnavailableError(absl::StrCat("backbone '", name_, "' was evicted; retry"));
    return;
  }
  ResidentBackbone& bb = *held;
  const Precision precision = batch.front()->request.precision;
  const BackbonePtr trunk = batch.front()->request.trunk != nullptr ? batch.front()->request.trunk : bb.inference;
  int64_t images = 0;
  auto joined = GuardInternal("forward " + bb.spec->name, [&]() -> absl::StatusOr<std::map<int, torch::Tensor>> {
    if (precision == Precision::kBf16 && bb.device.is_cpu() && trunk == bb.inference) {
      return absl::InternalError("no bfloat16 trunk was made before the request was queued");
    }
    c10::InferenceMode guard;
    const torch::Tensor all = inputs.size() == 1 ? inputs[0] : torch::cat(inputs, 0);
    images = all.size(0);
    absl::MutexLock compute(&bb.compute_mu);
    std::map<int, torch::Tensor> out;
    {
      // On CUDA: float16 autocast for fp32 requests (--mixed_precision),
      // bfloat16 for bf16 ones. On CPU a bf16 request runs the bfloat16 copy.
      const bool cuda_bf16 = precision == Precision::kBf16 && !bb.device.is_cpu();
      const AutocastScope autocast(bb.device, options_.mixed_precision || cuda_bf16,
                                   cuda_bf16 ? torch::kBFloat16 : torch::kHalf);
      const bool cpu_bf16 = precision == Precision::kBf16 && bb.device.is_cpu();
      std::map<int, std::vector<torch::Tensor>> parts;
      for (int64_t b = 0; b < images; b += options_.max_batch_size) {
        torch::Tensor x = ToDevice(all.slice(0, b, b + options_.max_batch_size), bb.device);
        if (cpu_bf16) x = x.to(torch::kBFloat16);
        int prev = 0;
        for (int stop : stops) {
          x = trunk->ForwardTrunk(x, static_cast<size_t>(prev), static_cast<size_t>(stop));
          // The models' tails and Embed read float32 (an int8 trunk's
          // quantized output stays quantized for its next segment).
          parts[stop].push_back(x.is_quantized() ? x.dequantize()
                                : autocast.active() || cpu_bf16 ? x.to(torch::kFloat32) : x);
          prev = stop;
        }
      }
      for (auto& [stop, p] : parts) out[stop] = p.size() == 1 ? p[0] : torch::cat(p, 0);
    }
    if (classify) {  // in float32, like the models' tails
      const int last = static_cast<int>(bb.module->blocks().size());
      if (out.count(last) == 0) return absl::InternalError("classify without the last block among the stops");
      out[kLogits] = bb.inference->ForwardHead(out.at(last));
    }
    return out;
  });
  const auto compute_us = Micros(Clock::now() - start);
  if (observer_ != nullptr) observer_->OnBatch(bb.spec->name, PrecisionName(precision), images, static_cast<int64_t>(batch.size()));
  if (observer_ != nullptr) {
    for (const auto& p : batch) observer_->OnQueueWait(bb.spec->name, Micros(prepare_start - p->arrived) * 1e-6);
  }
  int64_t offset = 0;
  for (const auto& p : batch) {
    const int64_t n = p->request.images.size(0);
    if (!joined.ok()) {
      p->result = joined.status();
      continue;
    }
    TrunkResult r;
    for (int stop : p->request.stops) r.at[stop] = joined->at(stop).slice(0, offset, offset + n);
    if (p->request.classify) r.logits = joined->at(kLogits).slice(0, offset, offset + n);
    r.queue_us = Micros(prepare_start - p->arrived);
    r.prepare_us = p->request.deferred.empty() ? 0 : prepare_us;
    r.compute_us = compute_us;
    r.batch_images = images;
    p->result = std::move(r);
    offset += n;
  }
}

}  // namespace graft::core
