// Fused trials: a search's head-only runs on shared features trained in
// lockstep, their heads stacked (HeadStack) so that one computation per
// batch trains them all. Each member is an ordinary Trainer on its own
// thread: RunStages drives its epochs, early stopping and best weights as
// for any run; only its RunEpoch comes here, where the member waits until
// every member still running has arrived at the same epoch, and the last to
// arrive runs that epoch for all of them.

#include <cmath>
#include <map>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/train/schedule.h"
#include "core/train/trainer_internal.h"
#include "core/util/device.h"
#include "core/util/log.h"
#include "core/util/torch_status.h"

namespace graft::core {

using trainer_internal::Trainer;

class HeadFusion {
 public:
  explicit HeadFusion(int members) : running_members_(members) {}

  // Whether `t` trains here: the first member to join sets what the others
  // must share with it.
  bool Join(const Trainer& t) {
    absl::MutexLock lock(&mu_);
    if (!first_) {
      first_ = First{t.spec_, t.in_.features, t.device_, t.in_.mixed_precision, t.in_.num_classes,
                     t.in_.images.size()};
      return true;
    }
    return Matches(t);
  }

  // A member ended (or never trained here): no round waits for it again.
  void Leave() {
    absl::MutexLock lock(&mu_);
    --running_members_;
    changed_.SignalAll();
  }

  absl::StatusOr<EpochMetrics> Epoch(Trainer& t, size_t stage, int epoch_in_stage, int epoch) {
    mu_.Lock();
    if (arrived_.empty()) at_ = At{stage, epoch_in_stage, epoch};
    if (at_.stage != stage || at_.epoch != epoch) {
      const int others = at_.epoch;
      mu_.Unlock();
      return absl::InternalError(
          absl::StrCat("fused trials out of step: epoch ", epoch, " while others run epoch ", others));
    }
    arrived_.push_back(&t);
    changed_.SignalAll();
    while (true) {
      if (auto it = results_.find(&t); it != results_.end()) {
        absl::StatusOr<EpochMetrics> mine = std::move(it->second);
        results_.erase(it);
        mu_.Unlock();
        return mine;
      }
      if (running_ || static_cast<int>(arrived_.size()) < running_members_) {
        changed_.Wait(&mu_);
        continue;
      }
      // Everyone still running is here: this thread runs the round.
      running_ = true;
      std::vector<Trainer*> members;
      members.swap(arrived_);
      const At at = at_;
      mu_.Unlock();
      std::vector<absl::StatusOr<EpochMetrics>> out = RunRound(members, at);
      mu_.Lock();
      for (size_t i = 0; i < members.size(); ++i) results_.emplace(members[i], std::move(out[i]));
      running_ = false;
      changed_.SignalAll();
    }
  }

 private:
  // What the first member to join brought.
  struct First {
    JobSpec spec;
    std::shared_ptr<const SharedFeatures> features;
    torch::Device device;
    bool mixed_precision;
    int num_classes;
    size_t images;
  };
  struct At {
    size_t stage = 0;
    int epoch_in_stage = 0;
    int epoch = 0;
  };

  // What fused members share: the features, the head's shape, and whatever
  // decides the batches, their order and the dropout draws.
  bool Matches(const Trainer& t) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const JobSpec& a = first_->spec;
    const JobSpec& b = t.spec_;
    if (t.in_.features != first_->features || t.device_ != first_->device ||
        t.in_.mixed_precision != first_->mixed_precision || t.in_.num_classes != first_->num_classes ||
        t.in_.images.size() != first_->images) {
      return false;
    }
    if (!(a.head == b.head) || a.batch_size != b.batch_size || a.seed != b.seed ||
        a.balanced_sampling != b.balanced_sampling || a.class_weighting != b.class_weighting ||
        a.stages.size() != b.stages.size()) {
      return false;
    }
    for (size_t s = 0; s < a.stages.size(); ++s) {
      if (a.stages[s].epochs != b.stages[s].epochs) return false;
    }
    return true;
  }

  std::vector<absl::StatusOr<EpochMetrics>> RunRound(const std::vector<Trainer*>& members, const At& at) {
    try {
      // Members that left keep the storage they had; the stack holds these.
      std::vector<ClassifierHead> heads;
      for (Trainer* m : members) heads.push_back(m->head_);
      bool same = heads.size() == stack_.heads().size();
      for (size_t i = 0; same && i < heads.size(); ++i) same = heads[i].get() == stack_.heads()[i].get();
      if (!same) stack_.Rebuild(heads);
      return Trainer::FusedEpoch(members, stack_, at.stage, at.epoch_in_stage, at.epoch);
    } catch (const std::exception& e) {
      return std::vector<absl::StatusOr<EpochMetrics>>(
          members.size(), absl::InternalError(absl::StrCat("fused trials at epoch ", at.epoch, ": ", e.what())));
    }
  }

  absl::Mutex mu_;
  absl::CondVar changed_;  // an arrival, a departure, a round's results
  int running_members_ ABSL_GUARDED_BY(mu_);  // members that have not left
  std::optional<First> first_ ABSL_GUARDED_BY(mu_);
  std::vector<Trainer*> arrived_ ABSL_GUARDED_BY(mu_);  // waiting for the next round
  At at_ ABSL_GUARDED_BY(mu_);                           // the epoch they wait for
  bool running_ ABSL_GUARDED_BY(mu_) = false;
  std::map<const Trainer*, absl::StatusOr<EpochMetrics>> results_ ABSL_GUARDED_BY(mu_);
  HeadStack stack_;  // only the thread running a round touches it
};

std::shared_ptr<HeadFusion> NewHeadFusion(int members) { return std::make_shared<HeadFusion>(members); }

void WithdrawFromFusion(HeadFusion& fusion) { fusion.Leave(); }

namespace trainer_internal {

void Trainer::JoinFusion() {
  if (in_.fusion == nullptr || left_fusion_) return;
  const bool can = k_ == n_ && group_ == nullptr && prefix_ != nullptr && prefix_->cached() &&
                   in_.features != nullptr && in_.checkpoint_path.empty() && !spec_.auto_learning_rate;
  fused_ = can && in_.fusion->Join(*this);
  if (!fused_) LeaveFusion();
}

absl::StatusOr<EpochMetrics> Trainer::FusedRunEpoch(size_t stage, int epoch_in_stage, int epoch) {
  return in_.fusion->Epoch(*this, stage, epoch_in_stage, epoch);
}

void Trainer::LeaveFusion() {
  if (in_.fusion == nullptr || left_fusion_) return;
  left_fusion_ = true;
  fused_ = false;
  in_.fusion->Leave();
}

std::vector<absl::StatusOr<EpochMetrics>> Trainer::FusedEpoch(const std::vector<Trainer*>& members, HeadStack& stack,
                                                              size_t stage, int epoch_in_stage, int epoch) {
  const size_t n = members.size();
  const Trainer& lead = *members.front();
  const torch::Device device = lead.device_;
  std::vector<absl::StatusOr<EpochMetrics>> out(n, absl::UnknownError("not run"));
  const auto start = Clock::now();
  torch::manual_seed(lead.EpochSeed(epoch));
  const std::vector<std::vector<int64_t>> batches = lead.EpochBatches(epoch, /*drop_lone_last=*/false);
  const int count = static_cast<int>(batches.size());
  for (Trainer* m : members) {
    m->head_->train();
    if (epoch_in_stage == 0) m->fused_trials_ = static_cast<int>(n);
  }
  Feed feed = PrefixCache::Start(batches, /*train=*/true, lead.FeedSeed(epoch));
  struct Running {
    double loss_sum = 0, correct = 0, seen = 0, lr = 0;
    std::optional<absl::Status> failed;  // diverged: no more steps, the error at the epoch's end
  };
  std::vector<Running> run(n);
  for (size_t i = 0; i < n; ++i) run[i].lr = members[i]->spec_.stages[stage].optimizer.learning_rate;
  const auto all = [&](const absl::Status& s) { return std::vector<absl::StatusOr<EpochMetrics>>(n, s); };
  for (int b = 0; b < count; ++b) {
    if (lead.cancel_.cancelled()) {
      return all(lead.cancel_.stop_requested()
                     ? absl::UnavailableError(absl::StrCat("stopped for a shutdown at epoch ", epoch, ", batch ", b + 1))
                     : absl::CancelledError(absl::StrCat("cancelled at epoch ", epoch, ", batch ", b + 1)));
    }
    const std::vector<int64_t>& items = batches[static_cast<size_t>(b)];
    torch::manual_seed(lead.StepSeed(epoch, b));
    const uint64_t dropout_seed = lead.DropoutSeed(epoch, b);
    const torch::Tensor labels = lead.labels_.index_select(0, torch::tensor(items)).to(device);
    auto at_k = lead.prefix_->AtK(feed, static_cast<size_t>(b));
    if (!at_k.ok()) return all(at_k.status());
    torch::Tensor logits;
    {
      const AutocastScope autocast(device, lead.in_.mixed_precision, torch::kBFloat16);
      logits = stack.Forward(ToDevice(*at_k, device), /*train=*/true, dropout_seed);
      if (autocast.active()) logits = logits.to(torch::kFloat32);  // the loss in float32
    }
    std::vector<size_t> live;
    std::vector<torch::Tensor> losses;
    for (size_t i = 0; i < n; ++i) {
      if (run[i].failed) continue;
      live.push_back(i);
      losses.push_back(members[i]->Loss(logits[static_cast<int64_t>(i)], labels, true));
    }
    if (live.empty()) break;
    const torch::Tensor values = torch::stack(losses).detach().to(torch::kCPU, torch::kDouble);
    const torch::Tensor hits = logits.detach().argmax(2).eq(labels.unsqueeze(0)).sum(1).to(torch::kCPU, torch::kDouble);
    torch::Tensor total;
    std::vector<size_t> stepping;
    for (size_t j = 0; j < live.size(); ++j) {
      const size_t i = live[j];
      // The loss as a float32 scalar, read as Loss(...).item<double>() reads it alone.
      const double value = values[static_cast<int64_t>(j)].item<double>();
      if (!std::isfinite(value)) {
        run[i].failed = Diverged(value, epoch, b);
        continue;
      }
      stepping.push_back(i);
      total = total.defined() ? total + losses[j] : losses[j];
      run[i].loss_sum += value * static_cast<double>(items.size());
      run[i].correct += hits[static_cast<int64_t>(i)].item<double>();
      run[i].seen += static_cast<double>(items.size());
    }
    if (stepping.empty()) continue;
    stack.ClearGradients();
    total.backward();  // each member's loss reaches its own slice of the stacked weights only
    stack.ShareGradients();
    for (size_t i : stepping) {
      Trainer& m = *members[i];
      const OptimizerSpec& o = m.spec_.stages[stage].optimizer;
      run[i].lr = LearningRate(m.spec_.stages[stage], epoch_in_stage, static_cast<double>(b) / count);
      if (m.one_pass_stage_ != static_cast<int>(stage)) {
        const std::vector<torch::Tensor> params = m.head_->parameters();
        m.one_pass_ = OnePassAdam::Handles(o, params) ? std::make_unique<OnePassAdam>(params, o) : nullptr;
        m.one_pass_stage_ = static_cast<int>(stage);
      }
      if (m.one_pass_ != nullptr) {
        m.one_pass_->Step(run[i].lr);
      } else {
        for (auto& group : m.opt_->param_groups()) group.options().set_lr(run[i].lr);
        m.opt_->step();
      }
      m.events_.OnProgress(epoch, b + 1, count);
    }
  }
  stack.ClearGradients();
  const double train_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const std::vector<ValMetrics> val = FusedEvaluate(members, stack);
  const double epoch_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  for (size_t i = 0; i < n; ++i) {
    Trainer& m = *members[i];
    if (run[i].failed) {
      out[i] = *run[i].failed;
      continue;
    }
    EpochMetrics e;
    e.stage = static_cast<int>(stage) + 1;
    e.epoch = epoch;
    e.train_loss = run[i].seen > 0 ? run[i].loss_sum / run[i].seen : 0;
    e.train_accuracy = run[i].seen > 0 ? run[i].correct / run[i].seen : 0;
    e.val_loss = val[i].loss;
    e.val_accuracy = val[i].accuracy;
    e.val_macro_f1 = val[i].macro_f1;
    e.learning_rate = run[i].lr;
    e.images_per_second = run[i].seen / std::max(train_seconds + m.setup_seconds_, 1e-9);
    e.epoch_seconds = epoch_seconds + m.setup_seconds_;
    e.frozen_part_cached = m.prefix_->cached();
    e.frozen_part_bf16 = m.prefix_->bf16();
    m.setup_seconds_ = 0;
    out[i] = e;
  }
  return out;
}

std::vector<ValMetrics> Trainer::FusedEvaluate(const std::vector<Trainer*>& members, HeadStack& stack) {
  torch::NoGradGuard no_grad;
  const Trainer& lead = *members.front();
  for (Trainer* m : members) m->head_->eval();
  std::vector<ValTally> tallies;  // each its own counts (a copy would share the tensors)
  for (size_t i = 0; i < members.size(); ++i) tallies.emplace_back(lead.in_.num_classes);
  const std::vector<std::vector<int64_t>> batches = lead.ValBatches();
  Feed feed = PrefixCache::Start(batches, /*train=*/false, 0);
  for (size_t b = 0; b < batches.size(); ++b) {
    const torch::Tensor labels = lead.labels_.index_select(0, torch::tensor(batches[b])).to(lead.device_);
    auto at_k = lead.prefix_->AtK(feed, b);
    if (!at_k.ok()) throw std::runtime_error(std::string(at_k.status().message()));
    torch::Tensor logits;
    {
      const AutocastScope autocast(lead.device_, lead.in_.mixed_precision, torch::kBFloat16);
      logits = stack.Forward(ToDevice(*at_k, lead.device_), /*train=*/false, 0);
      if (autocast.active()) logits = logits.to(torch::kFloat32);
    }
    for (size_t i = 0; i < members.size(); ++i) {
      const torch::Tensor mine = logits[static_cast<int64_t>(i)];
      tallies[i].Add(mine, labels, members[i]->Loss(mine, labels, false).item<double>());
    }
  }
  std::vector<ValMetrics> out;
  for (const ValTally& t : tallies) out.push_back(t.Finish(static_cast<double>(lead.val_items_.size())));
  return out;
}

}  // namespace trainer_internal
}  // namespace graft::core
