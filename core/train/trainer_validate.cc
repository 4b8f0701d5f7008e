// The validation pass after every epoch: loss, accuracy and macro F1 over the
// whole val split (in a data-parallel group, each rank's share, all-reduced).

#include "core/train/trainer_internal.h"
#include "core/util/collective.h"
#include "core/util/status_macros.h"

namespace graft::core::trainer_internal {

ValTally::ValTally(int64_t classes)
    : classes_(classes),
      tp_(torch::zeros({classes}, torch::kLong)),
      predicted_(torch::zeros({classes}, torch::kLong)),
      support_(torch::zeros({classes}, torch::kLong)) {}

void ValTally::Add(const torch::Tensor& logits, const torch::Tensor& labels, double mean_loss) {
  loss_sum_ += mean_loss * static_cast<double>(labels.size(0));
  const torch::Tensor guess = logits.argmax(1).cpu(), truth = labels.cpu();
  const torch::Tensor right = guess.eq(truth);
  const int64_t hits = right.sum().item<int64_t>();
  correct_ += static_cast<double>(hits);
  tp_.index_add_(0, truth.masked_select(right), torch::ones({hits}, torch::kLong));
  predicted_.index_add_(0, guess, torch::ones({guess.size(0)}, torch::kLong));
  support_.index_add_(0, truth, torch::ones({truth.size(0)}, torch::kLong));
}

absl::Status ValTally::AllReduce(Collective& group) {
  torch::Tensor sums = torch::cat({torch::tensor({loss_sum_, correct_}, torch::kDouble), tp_.to(torch::kDouble),
                                   predicted_.to(torch::kDouble), support_.to(torch::kDouble)});
  RETURN_IF_ERROR(group.AllReduceSum(sums));
  loss_sum_ = sums[0].item<double>();
  correct_ = sums[1].item<double>();
  const int64_t c = classes_;
  tp_ = sums.slice(0, 2, 2 + c).round().to(torch::kLong);
  predicted_ = sums.slice(0, 2 + c, 2 + 2 * c).round().to(torch::kLong);
  support_ = sums.slice(0, 2 + 2 * c, 2 + 3 * c).round().to(torch::kLong);
  return absl::OkStatus();
}

ValMetrics ValTally::Finish(double images) const {
  // Macro F1 as the report (and scikit-learn) define it: over the classes
  // with images or predictions; F1 = 2 tp / (support + predicted).
  double f1_sum = 0;
  int f1_classes = 0;
  const auto tp = tp_.accessor<int64_t, 1>(), predicted = predicted_.accessor<int64_t, 1>(),
             support = support_.accessor<int64_t, 1>();
  for (int64_t c = 0; c < classes_; ++c) {
    if (support[c] + predicted[c] == 0) continue;
    f1_sum += 2.0 * static_cast<double>(tp[c]) / static_cast<double>(support[c] + predicted[c]);
    ++f1_classes;
  }
  return ValMetrics{loss_sum_ / images, correct_ / images, f1_classes > 0 ? f1_sum / f1_classes : 0.0};
}

std::vector<std::vector<int64_t>> Trainer::ValBatches() const {
  std::vector<std::vector<int64_t>> batches;
  const std::vector<int64_t> mine = Owned(val_items_);  // all of them alone
  const size_t bs = static_cast<size_t>(spec_.batch_size);
  for (size_t b = 0; b < mine.size(); b += bs) {
    batches.emplace_back(mine.begin() + static_cast<long>(b), mine.begin() + static_cast<long>(std::min(mine.size(), b + bs)));
  }
  return batches;
}

absl::StatusOr<ValMetrics> Trainer::Evaluate() {
  torch::NoGradGuard no_grad;
  if (own_) own_->eval();
  head_->eval();
  ValTally tally(in_.num_classes);
  const std::vector<std::vector<int64_t>> batches = ValBatches();
  Feed feed = PrefixCache::Start(batches, /*train=*/false, 0);
  for (size_t b = 0; b < batches.size(); ++b) {
    const torch::Tensor labels = labels_.index_select(0, torch::tensor(batches[b])).to(device_);
    ASSIGN_OR_RETURN(const torch::Tensor at_k, prefix_->AtK(feed, b));
    const torch::Tensor logits = Tail(at_k);
    tally.Add(logits, labels, Loss(logits, labels, false).item<double>());
  }
  if (group_ != nullptr) RETURN_IF_ERROR(tally.AllReduce(*group_));  // every rank's counts: the whole split's
  return tally.Finish(static_cast<double>(val_items_.size()));
}

}  // namespace graft::core::trainer_internal
