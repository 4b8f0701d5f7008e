#include "core/train/trainer.h"

#include <torch/nn/functional/loss.h>
#include <opencv2/imgproc.hpp>
#include <torch/optim.h>
#include <torch/serialize.h>

#include <chrono>
#include <deque>
#include <future>
#include <cmath>
#include <filesystem>
#include <map>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"
#include "core/data/augment.h"
#include "core/data/image_codec.h"
#include "core/data/resize.h"
#include "core/data/transforms.h"
#include "core/train/early_stopping.h"
#include "core/train/head.h"
#include "core/train/schedule.h"
#include "core/train/trainer_checkpoint.h"
#include "core/util/files.h"
#include "core/util/log.h"
#include "core/util/status_macros.h"
#include "core/util/thread_pool.h"
#include "core/util/torch_status.h"

namespace graft::core {
namespace {

using Clock = std::chrono::steady_clock;
namespace F = torch::nn::functional;

constexpr size_t kPrefetchBatches = 2;   // prepared ahead of the compute
constexpr int64_t kMaxForwardRows = 64;  // rows per frozen-prefix forward while caching

// A deterministic stream per (seed, a, b): augmentations do not depend on
// which thread prepares a batch or in which order.
uint64_t Mix(uint64_t seed, uint64_t a, uint64_t b) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ULL ^ (a + 0x632BE59BD9B4E019ULL) * 0xBF58476D1CE4E5B9ULL;
  x ^= (b + 1) * 0x94D049BB133111EBULL;
  x ^= x >> 31;
  return x;
}

std::unique_ptr<torch::optim::Optimizer> MakeOptimizer(const OptimizerSpec& o, std::vector<torch::Tensor> params) {
  switch (o.kind) {
    case OptimizerKind::kSgd:
      return std::make_unique<torch::optim::SGD>(
          params, torch::optim::SGDOptions(o.learning_rate).momentum(o.momentum).nesterov(o.nesterov).weight_decay(o.weight_decay));
    case OptimizerKind::kAdamW:
      return std::make_unique<torch::optim::AdamW>(
          params, torch::optim::AdamWOptions(o.learning_rate).betas({o.beta1, o.beta2}).weight_decay(o.weight_decay));
    case OptimizerKind::kRmsprop:
      return std::make_unique<torch::optim::RMSprop>(
          params, torch::optim::RMSpropOptions(o.learning_rate).momentum(o.momentum).weight_decay(o.weight_decay));
    case OptimizerKind::kAdam:
      break;
  }
  return std::make_unique<torch::optim::Adam>(
      params, torch::optim::AdamOptions(o.learning_rate).betas({o.beta1, o.beta2}).weight_decay(o.weight_decay));
}

class Trainer {
 public:
  Trainer(const TrainInput& in, const CancellationToken& cancel, TrainEvents& events)
      : in_(in), spec_(in.spec), cancel_(cancel), events_(events), device_(in.resident->device) {}

  absl::StatusOr<TrainedModel> Run();

 private:
  // Batches of one pass over the data, with preprocessing submitted ahead.
  struct Feed {
    std::vector<std::vector<int64_t>> batches;
    bool train = false;
    uint64_t seed = 0;
    size_t submitted = 0;
    std::deque<std::future<torch::Tensor>> ahead;
  };

  absl::Status Setup();
  absl::StatusOr<cv::Mat> LoadImage(size_t i) const;
  absl::Status DecodeAll();
  absl::Status BuildCache();
  // [rows, 3, H, W]: each item preprocessed, or augmented with its own stream
  // when `train` (one row per view when `views` > 1).
  torch::Tensor PrepareImages(const std::vector<int64_t>& items, bool train, uint64_t seed, int views,
                              const std::vector<cv::Mat>* images) const;
  Feed StartFeed(std::vector<std::vector<int64_t>> batches, bool train, uint64_t seed);
  // Batch b (in order) at block k: gathered from the cache (one random view
  // per training image), or prepared on the pool and run through the prefix.
  torch::Tensor AtK(Feed& feed, size_t b, std::mt19937_64& rng);
  torch::Tensor Prefix(const torch::Tensor& images);
  torch::Tensor Tail(const torch::Tensor& at_k);
  void SetStageTrainable(int trainable_blocks);
  // The head and every parameter SetStageTrainable left trainable.
  std::vector<torch::Tensor> StageParameters();
  absl::StatusOr<EpochMetrics> RunEpoch(size_t stage, int epoch_in_stage, int epoch, torch::optim::Optimizer& opt);
  std::pair<double, double> Evaluate();
  torch::Tensor Loss(const torch::Tensor& logits, const torch::Tensor& labels, bool weighted);
  StateDict TrainedState();
  absl::Status LoadTrainedState(const StateDict& state);

  const TrainInput& in_;
  const JobSpec& spec_;
  const CancellationToken& cancel_;
  TrainEvents& events_;
  torch::Device device_;

  Preprocessing pre_;
  int n_ = 0;      // blocks
  int k_ = 0;      // first block the model owns
  BackbonePtr own_;  // trainable copy (blocks >= k_), null when only the head trains
  ClassifierHead head_{nullptr};
  std::vector<int64_t> train_items_, val_items_;
  torch::Tensor labels_;         // [N] all images
  std::vector<cv::Mat> decoded_; // per image, shorter side = pre_.resize_size (uncached runs)
  std::unique_ptr<FeatureCache> cache_;  // activations at block k, when cached
  std::vector<int64_t> first_row_;       // per image: its first cache row
  int views_ = 1;                        // cached rows per training image
  torch::Tensor class_weights_;
  double setup_seconds_ = 0;  // decoding and caching, charged to the first epoch run
  std::string cache_desc_ = "none";
  std::unique_ptr<ThreadPool> pool_;  // last: its pending tasks finish before the rest goes
};

absl::StatusOr<cv::Mat> Trainer::LoadImage(size_t i) const {
  ASSIGN_OR_RETURN(const std::string bytes, ReadFile(in_.images[i].blob_path));
  auto image = DecodeImage(bytes, DecodeLimits{});
  if (!image.ok()) return absl::DataLossError(absl::StrCat(in_.images[i].path, ": ", image.status().message()));
  // Keep what Resize(resize_size) makes of it (smaller, and the exact input
  // PreprocessImage would crop); augmentation crops from it too.
  if (std::min(image->cols, image->rows) <= pre_.resize_size) return *image;
  return ResizeLikePil(*image, ResizeTarget(image->cols, image->rows, pre_.resize_size));
}

absl::Status Trainer::DecodeAll() {
  decoded_.resize(in_.images.size());
  std::vector<std::future<absl::Status>> parts;
  const size_t chunk = 16;
  for (size_t first = 0; first < in_.images.size(); first += chunk) {
    parts.push_back(pool_->Submit([this, first, chunk]() -> absl::Status {
      for (size_t i = first; i < std::min(first + chunk, in_.images.size()); ++i) {
        if (cancel_.cancelled()) return absl::CancelledError("cancelled while loading images");
        ASSIGN_OR_RETURN(decoded_[i], LoadImage(i));
      }
      return absl::OkStatus();
    }));
  }
  absl::Status status;
  for (auto& p : parts) status.Update(p.get());
  return status;
}

torch::Tensor Trainer::PrepareImages(const std::vector<int64_t>& items, bool train, uint64_t seed, int views,
                                     const std::vector<cv::Mat>* images) const {
  std::vector<torch::Tensor> rows;
  for (size_t j = 0; j < items.size(); ++j) {
    const cv::Mat& image = images != nullptr ? (*images)[j] : decoded_[static_cast<size_t>(items[j])];
    for (int v = 0; v < (train ? views : 1); ++v) {
      std::mt19937_64 rng(Mix(seed, static_cast<uint64_t>(items[j]), static_cast<uint64_t>(v)));
      auto t = train && spec_.augmentation.any() ? AugmentImage(image, spec_.augmentation, pre_, rng)
                                                 : PreprocessImage(image, pre_);
      rows.push_back(t.ok() ? *t : torch::zeros({3, pre_.height, pre_.width}));
    }
  }
  return torch::stack(rows);
}

torch::Tensor Trainer::Prefix(const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  std::lock_guard<std::mutex> lock(in_.resident->compute_mu);
  const torch::Tensor x = images.to(device_).contiguous(device_.is_cpu() ? torch::MemoryFormat::ChannelsLast
                                                                        : torch::MemoryFormat::Contiguous);
  torch::Tensor y = in_.resident->inference->ForwardTrunk(x, 0, static_cast<size_t>(k_));
  if (k_ == n_) y = BackboneImpl::Pool(y);
  return y.contiguous();
}

absl::Status Trainer::BuildCache() {
  const AugmentationSpec& aug = spec_.augmentation;
  if (aug.any() && aug.cached_views == 0) return absl::OkStatus();  // fresh augmentations every epoch
  views_ = aug.any() ? aug.cached_views : 1;
  first_row_.resize(in_.images.size());
  int64_t rows = 0;
  for (size_t i = 0; i < in_.images.size(); ++i) {
    first_row_[i] = rows;
    rows += in_.images[i].split == Split::kTrain ? views_ : 1;
  }
  const torch::Tensor probe = Prefix(torch::zeros({1, 3, pre_.height, pre_.width}));
  const std::vector<int64_t> row_shape(probe.sizes().begin() + 1, probe.sizes().end());
  FeatureCacheOptions options = in_.feature_cache;
  options.device = device_;
  const int64_t bytes = rows * (probe.numel() * (options.half ? 2 : 4));
  if (PlaceCache(bytes, options) == CachePlacement::kNone) {
    ABSL_LOG(INFO) << "frozen features (" << bytes << " bytes) fit neither the cache budget nor a spill file; "
                   << "running the frozen part every batch";
    views_ = 1;
    return absl::OkStatus();
  }
  auto created = FeatureCache::Create(row_shape, rows, options);
  if (!created.ok()) {  // e.g. the spill file could not be sized: train without a cache
    ABSL_LOG(WARNING) << "no feature cache: " << created.status().message();
    views_ = 1;
    return absl::OkStatus();
  }
  cache_ = std::move(*created);
  // Decode and augment on the pool, batches ahead, while the prefix runs here.
  std::vector<std::vector<int64_t>> batches;
  for (size_t b = 0; b < in_.images.size(); b += static_cast<size_t>(spec_.batch_size)) {
    std::vector<int64_t> items(static_cast<size_t>(std::min<size_t>(spec_.batch_size, in_.images.size() - b)));
    std::iota(items.begin(), items.end(), static_cast<int64_t>(b));
    batches.push_back(std::move(items));
  }
  using Prepared = absl::StatusOr<std::vector<torch::Tensor>>;  // per image: its rows
  auto prepare = [this](std::vector<int64_t> items) -> Prepared {
    std::vector<torch::Tensor> out;
    for (int64_t i : items) {
      if (cancel_.cancelled()) return absl::CancelledError("cancelled while caching features");
      ASSIGN_OR_RETURN(cv::Mat image, LoadImage(static_cast<size_t>(i)));
      const bool train = in_.images[static_cast<size_t>(i)].split == Split::kTrain;
      const std::vector<cv::Mat> one{image};
      out.push_back(PrepareImages({i}, train && spec_.augmentation.any(), spec_.seed, views_, &one));
    }
    return out;
  };
  std::deque<std::future<Prepared>> ahead;
  size_t submitted = 0;
  for (size_t b = 0; b < batches.size(); ++b) {
    while (submitted < batches.size() && submitted <= b + kPrefetchBatches) {
      ahead.push_back(pool_->Submit([prepare, items = batches[submitted]] { return prepare(items); }));
      ++submitted;
    }
    Prepared prepared = ahead.front().get();
    ahead.pop_front();
    if (!prepared.ok()) {
      cache_.reset();
      return prepared.status();
    }
    const torch::Tensor images = torch::cat(*prepared, 0);
    const int64_t first = first_row_[static_cast<size_t>(batches[b].front())];
    for (int64_t r = 0; r < images.size(0); r += kMaxForwardRows) {
      cache_->Write(first + r, Prefix(images.slice(0, r, r + kMaxForwardRows)));
    }
  }
  cache_desc_ = absl::StrCat(cache_->spilled() ? "spill" : "memory", " ",
                             cache_->dtype() == torch::kHalf ? "fp16" : "fp32", " ", rows, " rows ", cache_->bytes(),
                             " bytes");
  ABSL_LOG(INFO) << "cached frozen features at block " << k_ << ": " << cache_desc_;
  return absl::OkStatus();
}

Trainer::Feed Trainer::StartFeed(std::vector<std::vector<int64_t>> batches, bool train, uint64_t seed) {
  Feed feed;
  feed.batches = std::move(batches);
  feed.train = train;
  feed.seed = seed;
  return feed;
}

torch::Tensor Trainer::AtK(Feed& feed, size_t b, std::mt19937_64& rng) {
  const std::vector<int64_t>& items = feed.batches[b];
  if (cache_ != nullptr) {
    std::vector<int64_t> rows;
    for (int64_t i : items) {
      const bool many = feed.train && views_ > 1 && in_.images[static_cast<size_t>(i)].split == Split::kTrain;
      rows.push_back(first_row_[static_cast<size_t>(i)] +
                     (many ? static_cast<int64_t>(rng() % static_cast<uint64_t>(views_)) : 0));
    }
    return cache_->Gather(rows, device_);
  }
  while (feed.submitted < feed.batches.size() && feed.submitted <= b + kPrefetchBatches) {
    const size_t next = feed.submitted++;
    feed.ahead.push_back(pool_->Submit([this, items = feed.batches[next], train = feed.train,
                                        seed = Mix(feed.seed, next, 0)] {
      return PrepareImages(items, train, seed, 1, nullptr);
    }));
  }
  torch::Tensor images = feed.ahead.front().get();
  feed.ahead.pop_front();
  return Prefix(images);
}

torch::Tensor Trainer::Tail(const torch::Tensor& at_k) {
  torch::Tensor y = at_k.to(device_);
  if (k_ < n_) y = BackboneImpl::Pool(own_->ForwardTrunk(y, static_cast<size_t>(k_), static_cast<size_t>(n_)));
  return head_->forward(y);
}

torch::Tensor Trainer::Loss(const torch::Tensor& logits, const torch::Tensor& labels, bool weighted) {
  auto options = F::CrossEntropyFuncOptions().label_smoothing(spec_.label_smoothing);
  if (weighted && class_weights_.defined()) options.weight(class_weights_);
  return F::cross_entropy(logits, labels, options);
}

void Trainer::SetStageTrainable(int trainable_blocks) {
  if (own_ != nullptr) own_->SetTrainableBlocks(trainable_blocks);
}

std::vector<torch::Tensor> Trainer::StageParameters() {
  std::vector<torch::Tensor> params = head_->parameters();
  if (own_ == nullptr) return params;
  for (auto& p : own_->parameters()) {
    if (p.requires_grad()) params.push_back(p);
  }
  return params;
}

StateDict Trainer::TrainedState() {
  StateDict out;
  for (const auto& [name, t] : ModuleStateDict(*head_)) out.emplace_back("head." + name, t.detach().clone());
  if (own_ == nullptr) return out;
  const auto& blocks = own_->blocks();
  for (const auto& [name, t] : ModuleStateDict(*own_)) {
    for (size_t b = static_cast<size_t>(k_); b < blocks.size(); ++b) {
      bool match = false;
      for (const auto& prefix : blocks[b].param_prefixes) match = match || name.rfind(prefix, 0) == 0;
      if (match) {
        out.emplace_back(name, t.detach().clone());
        break;
      }
    }
  }
  return out;
}

absl::Status Trainer::LoadTrainedState(const StateDict& state) {
  std::map<std::string, torch::Tensor> by_name(state.begin(), state.end());
  torch::NoGradGuard no_grad;
  const StateDict current = TrainedState();  // the names that must be present
  auto targets = ModuleStateDict(*head_);
  std::map<std::string, torch::Tensor> live;
  for (auto& [n, t] : targets) live["head." + n] = t;
  if (own_) {
    for (auto& [n, t] : ModuleStateDict(*own_)) live[n] = t;
  }
  for (const auto& [name, unused] : current) {
    const auto it = by_name.find(name);
    if (it == by_name.end()) return absl::DataLossError(absl::StrCat("checkpoint lacks '", name, "'"));
    live[name].copy_(it->second);
  }
  return absl::OkStatus();
}

absl::Status Trainer::Setup() {
  const auto& resident = *in_.resident;
  pre_ = ForInputSize(resident.spec->preprocessing, spec_.input_size);
  n_ = static_cast<int>(resident.module->blocks().size());
  int max_trainable = 0;
  for (const auto& st : spec_.stages) max_trainable = std::max(max_trainable, TrainableBlocks(st.train, n_));
  k_ = n_ - max_trainable;
  torch::manual_seed(spec_.seed);
  if (k_ < n_) {
    own_ = resident.spec->make();
    RETURN_IF_ERROR(LoadStateDict(*own_, ModuleStateDict(*resident.module)));
    own_->to(device_);
    for (auto& p : own_->parameters()) p.set_data(p.contiguous());
  }
  head_ = ClassifierHead(resident.spec->feature_dim, spec_.head, in_.num_classes);
  head_->to(device_);

  std::vector<int64_t> labels;
  std::vector<double> counts(static_cast<size_t>(in_.num_classes), 0);
  for (size_t i = 0; i < in_.images.size(); ++i) {
    labels.push_back(in_.images[i].label);
    if (in_.images[i].split == Split::kTrain) {
      train_items_.push_back(static_cast<int64_t>(i));
      counts[static_cast<size_t>(in_.images[i].label)] += 1;
    } else {
      val_items_.push_back(static_cast<int64_t>(i));
    }
  }
  if (train_items_.empty()) return absl::FailedPreconditionError("the dataset has no training images");
  if (val_items_.empty()) return absl::FailedPreconditionError("the dataset has no validation images");
  labels_ = torch::tensor(labels, torch::kInt64);
  if (spec_.class_weighting) {
    std::vector<float> w;
    for (double c : counts) w.push_back(static_cast<float>(c > 0 ? train_items_.size() / (in_.num_classes * c) : 0));
    class_weights_ = torch::tensor(w).to(device_);
  }
  pool_ = std::make_unique<ThreadPool>(in_.decode_threads > 0 ? in_.decode_threads : DefaultDecodeThreads());
  RETURN_IF_ERROR(BuildCache());
  if (cache_ == nullptr) RETURN_IF_ERROR(DecodeAll());
  return absl::OkStatus();
}

std::pair<double, double> Trainer::Evaluate() {
  torch::NoGradGuard no_grad;
  if (own_) own_->eval();
  head_->eval();
  double loss_sum = 0, correct = 0;
  std::mt19937_64 rng(0);
  std::vector<std::vector<int64_t>> batches;
  for (size_t b = 0; b < val_items_.size(); b += static_cast<size_t>(spec_.batch_size)) {
    batches.emplace_back(val_items_.begin() + static_cast<long>(b),
                         val_items_.begin() + static_cast<long>(std::min(val_items_.size(), b + spec_.batch_size)));
  }
  Feed feed = StartFeed(batches, /*train=*/false, 0);
  for (size_t b = 0; b < batches.size(); ++b) {
    const std::vector<int64_t>& items = batches[b];
    const torch::Tensor labels = labels_.index_select(0, torch::tensor(items)).to(device_);
    const torch::Tensor logits = Tail(AtK(feed, b, rng));
    loss_sum += Loss(logits, labels, false).item<double>() * static_cast<double>(items.size());
    correct += logits.argmax(1).eq(labels).sum().item<double>();
  }
  const double n = static_cast<double>(val_items_.size());
  return {loss_sum / n, correct / n};
}

absl::StatusOr<EpochMetrics> Trainer::RunEpoch(size_t stage, int epoch_in_stage, int epoch,
                                              torch::optim::Optimizer& opt) {
  const StageSpec& st = spec_.stages[stage];
  const auto start = Clock::now();
  torch::manual_seed(spec_.seed * 7919 + static_cast<uint64_t>(epoch));
  std::mt19937_64 rng(spec_.seed * 104729 + static_cast<uint64_t>(epoch));
  std::vector<int64_t> order = train_items_;
  std::shuffle(order.begin(), order.end(), rng);
  const int trainable = TrainableBlocks(st.train, n_);
  SetStageTrainable(trainable);
  head_->train();
  const bool bn_trains = own_ != nullptr && trainable > 0;
  const size_t bs = static_cast<size_t>(spec_.batch_size);
  std::vector<std::vector<int64_t>> all_batches;
  for (size_t first = 0; first < order.size(); first += bs) {
    all_batches.emplace_back(order.begin() + static_cast<long>(first),
                             order.begin() + static_cast<long>(std::min(order.size(), first + bs)));
  }
  // Batch norm cannot train on one image: a lone last image sits this epoch out.
  if (bn_trains && all_batches.back().size() == 1) all_batches.pop_back();
  const int batches = static_cast<int>(all_batches.size());
  Feed feed = StartFeed(all_batches, /*train=*/true, Mix(spec_.seed, static_cast<uint64_t>(epoch), 1));
  double loss_sum = 0, correct = 0, seen = 0, lr = st.optimizer.learning_rate;
  for (int b = 0; b < batches; ++b) {
    if (cancel_.cancelled()) return absl::CancelledError(absl::StrCat("cancelled at epoch ", epoch, ", batch ", b + 1));
    const std::vector<int64_t>& items = all_batches[static_cast<size_t>(b)];
    lr = LearningRate(st, epoch_in_stage, static_cast<double>(b) / batches);
    for (auto& group : opt.param_groups()) group.options().set_lr(lr);
    const torch::Tensor labels = labels_.index_select(0, torch::tensor(items)).to(device_);
    const torch::Tensor logits = Tail(AtK(feed, static_cast<size_t>(b), rng));
    const torch::Tensor loss = Loss(logits, labels, true);
    const double value = loss.item<double>();
    if (!std::isfinite(value)) {
      return absl::InvalidArgumentError(absl::StrCat("training diverged: the loss is ", value, " at epoch ", epoch,
                                                     ", batch ", b + 1, "; try a lower learning rate"));
    }
    opt.zero_grad();
    loss.backward();
    opt.step();
    loss_sum += value * static_cast<double>(items.size());
    correct += logits.argmax(1).eq(labels).sum().item<double>();
    seen += static_cast<double>(items.size());
    events_.OnProgress(epoch, b + 1, batches);
  }
  const double train_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const auto [val_loss, val_acc] = Evaluate();
  EpochMetrics m;
  m.stage = static_cast<int>(stage) + 1;
  m.epoch = epoch;
  m.train_loss = seen > 0 ? loss_sum / seen : 0;
  m.train_accuracy = seen > 0 ? correct / seen : 0;
  m.val_loss = val_loss;
  m.val_accuracy = val_acc;
  m.learning_rate = lr;
  m.images_per_second = seen / std::max(train_seconds + setup_seconds_, 1e-9);
  m.epoch_seconds = std::chrono::duration<double>(Clock::now() - start).count() + setup_seconds_;
  setup_seconds_ = 0;
  return m;
}

absl::StatusOr<TrainedModel> Trainer::Run() {
  const auto setup_start = Clock::now();
  RETURN_IF_ERROR(Setup());
  setup_seconds_ = std::chrono::duration<double>(Clock::now() - setup_start).count();
  TrainedModel out;
  out.first_trained_block = k_;
  for (int b = k_; b < n_; ++b) out.trained_blocks.push_back(in_.resident->module->blocks()[static_cast<size_t>(b)].name);

  TrainerCheckpoint ckpt;
  bool resuming = std::filesystem::exists(in_.checkpoint_path);
  if (resuming) {
    ASSIGN_OR_RETURN(ckpt, LoadTrainerCheckpoint(in_.checkpoint_path));
    RETURN_IF_ERROR(LoadTrainedState(ckpt.weights));
    ABSL_LOG(INFO) << "resuming after epoch " << ckpt.epoch << " from " << in_.checkpoint_path;
  }
  int epoch = 0;
  for (size_t stage = 0; stage < spec_.stages.size(); ++stage) {
    const StageSpec& st = spec_.stages[stage];
    const int first_epoch_of_stage = epoch + 1;
    epoch += st.epochs;
    if (resuming && stage < ckpt.stage) continue;  // finished before the restart
    SetStageTrainable(TrainableBlocks(st.train, n_));
    auto opt = MakeOptimizer(st.optimizer, StageParameters());
    EarlyStopping stopper(spec_.early_stopping);
    StateDict best_state;
    EpochMetrics best_metrics, last_metrics;
    int start_in_stage = 0;
    if (resuming && stage == ckpt.stage) {
      RETURN_IF_ERROR(GuardInternal("restoring optimizer", [&]() -> absl::Status {
        torch::serialize::InputArchive archive;
        archive.load_from(in_.checkpoint_path);
        torch::serialize::InputArchive optimizer_archive;
        archive.read("optimizer", optimizer_archive);
        opt->load(optimizer_archive);
        return absl::OkStatus();
      }));
      stopper.Restore(ckpt.stopper);
      best_state = ckpt.best_weights;
      best_metrics = ckpt.best_metrics;
      last_metrics = ckpt.last_metrics;
      start_in_stage = ckpt.stopped ? st.epochs : ckpt.epoch - first_epoch_of_stage + 1;
      out.final_metrics = ckpt.last_metrics;
      resuming = false;
    }
    int last_epoch = first_epoch_of_stage - 1 + start_in_stage;
    bool stopped = false;
    for (int e = start_in_stage; e < st.epochs && !stopped; ++e) {
      const int global = first_epoch_of_stage + e;
      ASSIGN_OR_RETURN(last_metrics, RunEpoch(stage, e, global, *opt));
      last_epoch = global;
      events_.OnEpoch(last_metrics);
      const double monitored = spec_.early_stopping.monitor == Monitor::kValAccuracy ? last_metrics.val_accuracy
                                                                                      : last_metrics.val_loss;
      const auto decision = stopper.Update(global, monitored);
      if (decision.improved) {
        best_state = TrainedState();
        best_metrics = last_metrics;
      }
      if (decision.stop) {
        events_.OnEarlyStop(global, stopper.state().best_epoch, stopper.state().best);
        stopped = true;
      }
      TrainerCheckpoint save;
      save.stage = stage;
      save.epoch = global;
      save.weights = TrainedState();
      save.best_weights = best_state;
      save.stopper = stopper.state();
      save.best_metrics = best_metrics;
      save.last_metrics = last_metrics;
      save.stopped = stopped;
      RETURN_IF_ERROR(SaveTrainerCheckpoint(in_.checkpoint_path, save, *opt));
      events_.OnCheckpoint(global);
    }
    out.final_metrics = last_metrics;
    out.best_metrics = best_metrics;
    const int restore = EpochToRestore(spec_.early_stopping.restore_best, stopper.state().best_epoch, last_epoch);
    out.restored_best = spec_.early_stopping.restore_best;
    if (restore > 0) {
      RETURN_IF_ERROR(LoadTrainedState(best_state));
      events_.OnBestRestored(restore);
    }
  }
  out.weights = TrainedState();
  out.feature_cache = cache_desc_;
  return out;
}

}  // namespace

int EpochToRestore(bool restore_best, int best_epoch, int last_epoch) {
  return (restore_best && best_epoch > 0 && best_epoch != last_epoch) ? best_epoch : 0;
}

absl::StatusOr<TrainedModel> Train(const TrainInput& input, const CancellationToken& cancel, TrainEvents& events) {
  return GuardInternal("training", [&]() -> absl::StatusOr<TrainedModel> {
    Trainer trainer(input, cancel, events);
    return trainer.Run();
  });
}

}  // namespace graft::core
