// The trainer's data-parallel part (TrainInput::collective): which images a
// rank owns, one step of a global batch across the group, and batch-norm
// statistics averaged over the ranks. The rest of training is trainer.cc.

#include <torch/nn/functional/loss.h>

#include "core/train/trainer_internal.h"
#include "core/util/collective.h"
#include "core/util/status_macros.h"

namespace graft::core::trainer_internal {
namespace {

namespace F = torch::nn::functional;

}  // namespace

std::vector<int64_t> Trainer::Owned(const std::vector<int64_t>& items) const {
  if (group_ == nullptr) return items;
  std::vector<int64_t> mine;
  for (int64_t i : items) {
    if (Owns(i)) mine.push_back(i);
  }
  return mine;
}

absl::StatusOr<Trainer::GroupStep> Trainer::StepInGroup(const std::vector<int64_t>& items, Feed& feed,
                                                        size_t& next_feed, torch::optim::Optimizer& opt) {
  const std::vector<int64_t> mine = Owned(items);
  // The global batch's mean: each rank's sum over the global denominator
  // (the images, or their class weights' sum as cross_entropy's weighted
  // mean has it), so the all-reduced gradient is the one-trainer gradient.
  double denominator = static_cast<double>(items.size());
  if (class_weights_.defined()) {
    denominator =
        class_weights_.cpu().index_select(0, labels_.index_select(0, torch::tensor(items))).sum().item<double>();
  }
  opt.zero_grad();
  double loss_sum = 0, correct = 0;
  if (!mine.empty()) {
    const torch::Tensor labels = labels_.index_select(0, torch::tensor(mine)).to(device_);
    ASSIGN_OR_RETURN(const torch::Tensor at_k, prefix_->AtK(feed, next_feed++));
    const torch::Tensor logits = Tail(at_k);
    auto options = F::CrossEntropyFuncOptions().label_smoothing(spec_.label_smoothing).reduction(torch::kSum);
    if (class_weights_.defined()) options.weight(class_weights_);
    const torch::Tensor loss = F::cross_entropy(logits, labels, options);
    (loss / denominator).backward();
    loss_sum = loss.item<double>();
    correct = logits.argmax(1).eq(labels).sum().item<double>();
  }
  std::vector<torch::Tensor> params;
  for (auto& group : opt.param_groups()) {
    for (auto& p : group.params()) params.push_back(p);
  }
  std::vector<torch::Tensor> parts;
  for (auto& p : params) {
    parts.push_back(p.grad().defined() ? p.grad().detach().reshape({-1}).to(torch::kCPU, torch::kFloat)
                                       : torch::zeros({p.numel()}, torch::kFloat));
  }
  const bool stop = cancel_.stop_requested(), cancelled = cancel_.cancelled() && !stop;
  parts.push_back(torch::tensor(
      {static_cast<float>(loss_sum), static_cast<float>(correct), cancelled ? 1.0f : 0.0f, stop ? 1.0f : 0.0f}));
  torch::Tensor flat = torch::cat(parts);
  GroupStep step;
  if (absl::Status s = group_->AllReduceSum(flat); !s.ok()) {
    step.outcome = GroupStep::kFailed;
    step.failure = std::string(s.message());
    return step;
  }
  const int64_t n = flat.size(0);
  if (flat[n - 1].item<float>() > 0) {
    step.outcome = stop ? GroupStep::kStopped : GroupStep::kPeerStopped;
    return step;
  }
  if (flat[n - 2].item<float>() > 0) {
    step.outcome = GroupStep::kCancelled;
    return step;
  }
  int64_t at = 0;
  torch::NoGradGuard no_grad;
  for (auto& p : params) {
    const torch::Tensor g = flat.slice(0, at, at + p.numel()).view(p.sizes()).to(p.device(), p.scalar_type());
    at += p.numel();
    if (p.grad().defined()) {
      p.mutable_grad().copy_(g);
    } else {
      p.mutable_grad() = g.clone();
    }
  }
  opt.step();
  step.loss = flat[n - 4].item<double>() / denominator;
  step.correct = flat[n - 3].item<double>();
  return step;
}

absl::Status Trainer::AverageBuffers() {
  std::vector<torch::Tensor> buffers;
  for (auto& b : own_->buffers()) {
    if (b.is_floating_point()) buffers.push_back(b);
  }
  if (buffers.empty()) return absl::OkStatus();
  std::vector<torch::Tensor> parts;
  for (auto& b : buffers) parts.push_back(b.detach().reshape({-1}).to(torch::kCPU, torch::kDouble));
  torch::Tensor flat = torch::cat(parts);
  RETURN_IF_ERROR(group_->AllReduceSum(flat));
  flat.div_(world_);
  torch::NoGradGuard no_grad;
  int64_t at = 0;
  for (auto& b : buffers) {
    b.copy_(flat.slice(0, at, at + b.numel()).view(b.sizes()).to(b.device(), b.scalar_type()));
    at += b.numel();
  }
  return absl::OkStatus();
}

}  // namespace graft::core::trainer_internal
