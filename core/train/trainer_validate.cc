// The validation pass after every epoch: loss, accuracy and macro F1 over the
// whole val split (in a data-parallel group, each rank's share, all-reduced).

#include "core/train/trainer_internal.h"
#include "core/util/collective.h"
#include "core/util/status_macros.h"

namespace graft::core::trainer_internal {

absl::StatusOr<Trainer::ValMetrics> Trainer::Evaluate() {
  torch::NoGradGuard no_grad;
  if (own_) own_->eval();
  head_->eval();
  double loss_sum = 0, correct = 0;
  // Per class: true positives, images predicted as it, images of it.
  torch::Tensor tp = torch::zeros({in_.num_classes}, torch::kLong), predicted = torch::zeros({in_.num_classes}, torch::kLong),
                support = torch::zeros({in_.num_classes}, torch::kLong);
  std::vector<std::vector<int64_t>> batches;
  const std::vector<int64_t> mine = Owned(val_items_);  // all of them alone
  for (size_t b = 0; b < mine.size(); b += static_cast<size_t>(spec_.batch_size)) {
    batches.emplace_back(mine.begin() + static_cast<long>(b),
                         mine.begin() + static_cast<long>(std::min(mine.size(), b + spec_.batch_size)));
  }
  Feed feed = PrefixCache::Start(batches, /*train=*/false, 0);
  for (size_t b = 0; b < batches.size(); ++b) {
    const std::vector<int64_t>& items = batches[b];
    const torch::Tensor labels = labels_.index_select(0, torch::tensor(items)).to(device_);
    ASSIGN_OR_RETURN(const torch::Tensor at_k, prefix_->AtK(feed, b));
    const torch::Tensor logits = Tail(at_k);
    loss_sum += Loss(logits, labels, false).item<double>() * static_cast<double>(items.size());
    const torch::Tensor guess = logits.argmax(1).cpu(), truth = labels.cpu();
    const torch::Tensor right = guess.eq(truth);
    correct += right.sum().item<double>();
    tp.index_add_(0, truth.masked_select(right), torch::ones({right.sum().item<int64_t>()}, torch::kLong));
    predicted.index_add_(0, guess, torch::ones({guess.size(0)}, torch::kLong));
    support.index_add_(0, truth, torch::ones({truth.size(0)}, torch::kLong));
  }
  if (group_ != nullptr) {  // every rank's counts: the whole split's
    torch::Tensor sums = torch::cat({torch::tensor({loss_sum, correct}, torch::kDouble), tp.to(torch::kDouble),
                                     predicted.to(torch::kDouble), support.to(torch::kDouble)});
    RETURN_IF_ERROR(group_->AllReduceSum(sums));
    loss_sum = sums[0].item<double>();
    correct = sums[1].item<double>();
    const int64_t c = in_.num_classes;
    tp = sums.slice(0, 2, 2 + c).round().to(torch::kLong);
    predicted = sums.slice(0, 2 + c, 2 + 2 * c).round().to(torch::kLong);
    support = sums.slice(0, 2 + 2 * c, 2 + 3 * c).round().to(torch::kLong);
  }
  const double n = static_cast<double>(val_items_.size());
  // Macro F1 as the report (and scikit-learn) define it: over the classes
  // with images or predictions; F1 = 2 tp / (support + predicted).
  double f1_sum = 0;
  int f1_classes = 0;
  const auto tp_a = tp.accessor<int64_t, 1>(), pred_a = predicted.accessor<int64_t, 1>(), sup_a = support.accessor<int64_t, 1>();
  for (int64_t c = 0; c < in_.num_classes; ++c) {
    if (sup_a[c] + pred_a[c] == 0) continue;
    f1_sum += 2.0 * static_cast<double>(tp_a[c]) / static_cast<double>(sup_a[c] + pred_a[c]);
    ++f1_classes;
  }
  return ValMetrics{loss_sum / n, correct / n, f1_classes > 0 ? f1_sum / f1_classes : 0.0};
}

}  // namespace graft::core::trainer_internal
