#include "core/serve/predictor.h"

#include <c10/core/InferenceMode.h>

#include <chrono>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/data/image_codec.h"
#include "core/data/transforms.h"
#include "core/util/compute_threads.h"
#include "core/util/ids.h"
#include "core/util/log.h"
#include "core/util/limit_error.h"
#include "core/util/status_macros.h"
#include "core/util/torch_status.h"

namespace graft::core {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kDefaultTopK = 5;

int64_t MicrosSince(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
}

absl::Status CheckTensor(const torch::Tensor& t, size_t index, const Preprocessing& p) {
  const auto shape = absl::StrCat("[", absl::StrJoin(t.sizes(), ", "), "]");
  if (t.scalar_type() != torch::kFloat32) return absl::InvalidArgumentError(absl::StrCat("image ", index, ": tensor must be float32"));
  const bool ok_rank = t.dim() == 3 || t.dim() == 4;
  const int64_t c = ok_rank ? t.size(t.dim() - 3) : 0;
  if (!ok_rank || c != 3 || t.size(-2) != p.height || t.size(-1) != p.width || (t.dim() == 4 && t.size(0) == 0)) {
    return absl::InvalidArgumentError(absl::StrCat("image ", index, ": tensor shape ", shape, " is not [3, ", p.height, ", ",
                                                   p.width, "] or [N, 3, ", p.height, ", ", p.width, "]"));
  }
  if (!torch::isfinite(t).all().item<bool>()) {
    return absl::InvalidArgumentError(absl::StrCat("image ", index, ": tensor holds NaN or infinite values"));
  }
  return absl::OkStatus();
}

std::vector<std::vector<ClassScore>> TopK(const torch::Tensor& logits, int k, const std::vector<std::string>& labels) {
  return TopKOfProbabilities(torch::softmax(logits.to(torch::kCPU).to(torch::kFloat32), 1), k, labels);
}

}  // namespace

absl::StatusOr<int> ResolveTopK(std::optional<int> top_k, int64_t classes) {
  const int k = top_k.value_or(static_cast<int>(std::min<int64_t>(kDefaultTopK, classes)));
  if (k <= 0 || k > classes) {
    return absl::InvalidArgumentError(absl::StrCat("top_k must be between 1 and ", classes, ", got ", k));
  }
  return k;
}

std::vector<std::vector<ClassScore>> TopKOfProbabilities(const torch::Tensor& probs, int k,
                                                         const std::vector<std::string>& labels) {
  const auto [values, indices] = probs.topk(k, 1);
  std::vector<std::vector<ClassScore>> out;
  for (int64_t i = 0; i < values.size(0); ++i) {
    std::vector<ClassScore> top;
    for (int j = 0; j < k; ++j) {
      const int index = static_cast<int>(indices[i][j].item<int64_t>());
      top.push_back({index, index < static_cast<int>(labels.size()) ? labels[static_cast<size_t>(index)] : absl::StrCat("class ", index),
                     values[i][j].item<float>()});
    }
    out.push_back(std::move(top));
  }
  return out;
}

absl::StatusOr<TrunkRequest> Predictor::MakeRequest(const Preprocessing& p, const std::vector<ImageInput>& inputs,
                                                    bool defer, Timing& timing) const {
  if (inputs.empty()) return absl::InvalidArgumentError("no images in the request");
  TrunkRequest request;
  request.height = p.height;
  request.width = p.width;
  int64_t total = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const ImageInput& in = inputs[i];
    DeferredInput d;
    if (in.tensor.defined()) {
      RETURN_IF_ERROR(CheckTensor(in.tensor, i, p));
      const torch::Tensor t = in.tensor.dim() == 3 ? in.tensor.unsqueeze(0) : in.tensor;
      d.images = t.size(0);
      d.make = [t] { return t; };
    } else {
      // Decoding time follows pixels: the batcher keeps one batch's to a bound.
      if (const auto header = ProbeImage(in.encoded); header.ok()) d.pixels = header->width * header->height;
      // Owns its bytes: a caller that gives up may leave while its batch runs.
      d.make = [bytes = in.encoded, p, limits = options_.limits, i]() -> absl::StatusOr<torch::Tensor> {
        auto image = DecodeImage(bytes, limits);
        if (!image.ok()) {
          // The image's own fault is INVALID_ARGUMENT; a full decode budget keeps its code.
          return Rephrased(absl::IsResourceExhausted(image.status()) ? absl::StatusCode::kResourceExhausted
                                                                     : absl::StatusCode::kInvalidArgument,
                           absl::StrCat("image ", i, ": ", image.status().message()), image.status());
        }
        auto tensor = PreprocessImage(*image, p);
        if (!tensor.ok()) return absl::InvalidArgumentError(absl::StrCat("image ", i, ": ", tensor.status().message()));
        return tensor->unsqueeze(0);
      };
    }
    total += d.images;
    if (total > options_.max_images) {
      return absl::InvalidArgumentError(absl::StrCat("more than ", options_.max_images, " images in one request"));
    }
    request.deferred.push_back(std::move(d));
  }
  if (defer) return request;
  const auto start = Clock::now();
  std::vector<torch::Tensor> parts;
  for (const DeferredInput& d : request.deferred) {
    ASSIGN_OR_RETURN(torch::Tensor t, d.make());
    parts.push_back(std::move(t));
  }
  ASSIGN_OR_RETURN(request.images, JoinInputs(parts));
  request.deferred.clear();
  timing.decode_us = MicrosSince(start);
  return request;
}

absl::StatusOr<torch::Tensor> Predictor::Preprocess(const Preprocessing& p, const std::vector<ImageInput>& inputs) const {
  Timing timing;
  ASSIGN_OR_RETURN(TrunkRequest request, MakeRequest(p, inputs, /*defer=*/false, timing));
  return request.images;
}

Predictor::Predictor(const Zoo& zoo, ModelStore* models, PredictorOptions options, BatcherObserver* observer)
    : zoo_(zoo), models_(models), options_(options), observer_(observer) {
  if (options_.shadow_queue_images > 0 && models_ != nullptr) {
    shadow_lane_ = std::make_unique<ShadowLane>(options_.shadow_queue_images);
  }
}

Predictor::~Predictor() = default;

void Predictor::DrainShadows() const {
  if (shadow_lane_ != nullptr) shadow_lane_->Drain();
}

TrunkBatcher& Predictor::BatcherFor(const std::shared_ptr<ResidentBackbone>& backbone) const {
  std::unique_ptr<TrunkBatcher> replaced;  // of an evicted copy: idle, joined after unlocking
  absl::MutexLock lock(&batchers_mu_);
  auto& b = batchers_[backbone->spec];
  if (b != nullptr && !b->Serves(backbone)) replaced = std::move(b);
  if (b == nullptr) b = std::make_unique<TrunkBatcher>(backbone, options_.batching, observer_);
  return *b;
}

absl::StatusOr<TrunkResult> Predictor::RunTrunk(const std::shared_ptr<ResidentBackbone>& backbone,
                                                const Preprocessing& p, const std::vector<ImageInput>& inputs,
                                                const std::vector<int>& stops, bool classify, Timing& timing,
                                                const Caller& caller, Precision precision,
                                                const Int8Calibration* calibration) const {
  // The precision's trunk exists before the request queues (made here at its
  // first use): the batcher only runs it.
  ASSIGN_OR_RETURN(BackbonePtr trunk, zoo_.Trunk(*backbone, precision, calibration));
  const bool defer = options_.decode_on == PredictorOptions::DecodeOn::kBatcher ||
                     (options_.decode_on == PredictorOptions::DecodeOn::kAuto && backbone->device.is_cpu());
  ASSIGN_OR_RETURN(TrunkRequest request, MakeRequest(p, inputs, defer, timing));
  request.tenant = caller.tenant;
  request.background = caller.background;
  request.stops = stops;
  request.classify = classify;
  request.precision = precision;
  request.trunk = std::move(trunk);
  ASSIGN_OR_RETURN(TrunkResult r, BatcherFor(backbone).Run(std::move(request), caller.cancelled));
  timing.decode_us += r.prepare_us;
  timing.queue_us += r.queue_us;
  timing.compute_us += r.compute_us;
  timing.batch_images = std::max(timing.batch_images, r.batch_images);
  return r;
}

absl::StatusOr<PredictResult> Predictor::Predict(const std::string& name, const std::vector<ImageInput>& inputs,
                                                 std::optional<int> top_k, const Caller& caller) const {
  UseOneComputeThreadHere();  // the batcher thread runs the forward passes
  const auto start = Clock::now();
  ASSIGN_OR_RETURN(const std::shared_ptr<ResidentBackbone> backbone, zoo_.AwaitResident(name, caller.cancelled));
  if (backbone->spec->num_classes == 0) {
    return absl::FailedPreconditionError(absl::StrCat("backbone '", backbone->spec->name,
                                                      "' has no ImageNet classifier: predict with a model fine-tuned "
                                                      "on it, or call Embed"));
  }
  ASSIGN_OR_RETURN(const int k, ResolveTopK(top_k, backbone->spec->num_classes));
  PredictResult result;
  const int n = static_cast<int>(backbone->module->blocks().size());
  ASSIGN_OR_RETURN(const TrunkResult trunk, RunTrunk(backbone, backbone->spec->preprocessing, inputs, {n},
                                                     /*classify=*/true, result.timing, caller));
  result.images = TopK(trunk.logits, k, *zoo_.imagenet_labels());
  result.timing.total_us = MicrosSince(start);
  return result;
}

absl::StatusOr<MultiPredictResult> Predictor::PredictModels(const std::vector<std::string>& model_ids,
                                                            const std::vector<ImageInput>& inputs,
                                                            std::optional<int> top_k, const Caller& caller,
                                                            const ShadowMap& shadows) const {
  UseOneComputeThreadHere();  // the batcher thread runs the forward passes
  const auto start = Clock::now();
  if (models_ == nullptr) return absl::FailedPreconditionError("this predictor serves no models");
  std::vector<std::shared_ptr<const ServingModel>> models;
  for (const std::string& id : model_ids) {
    ASSIGN_OR_RETURN(auto m, models_->Get(id));
    if (!models.empty() && m->info().backbone != models[0]->info().backbone) {
      return absl::InvalidArgumentError(absl::StrCat("models of different backbones cannot share a request: ",
                                                     models[0]->info().id, " uses ", models[0]->info().backbone, ", ",
                                                     id, " uses ", m->info().backbone));
    }
    if (!models.empty() && (m->info().preprocessing.height != models[0]->info().preprocessing.height)) {
      return absl::InvalidArgumentError(absl::StrCat("models with different input sizes cannot share a request: ",
                                                     models[0]->info().id, " and ", id));
    }
    models.push_back(m);
  }
  // The block boundaries each trunk pass (TrunkKey: precision and
  // calibration) stops at, and a model that names the pass's trunk.
  std::map<std::string, std::vector<int>> ks;
  std::map<std::string, const ModelInfo*> pass_of;
  for (const auto& m : models) {
    ASSIGN_OR_RETURN(const int unused, ResolveTopK(top_k, static_cast<int64_t>(m->info().class_names.size())));
    (void)unused;
    ks[TrunkKey(m->info())].push_back(m->first_block());
    pass_of.emplace(TrunkKey(m->info()), &m->info());
  }
  // Each model's shadow, and whether it can take its activations from this
  // request's pass (same trunk, precision and inputs, no deeper than the
  // pass runs).
  struct ShadowPlan {
    std::shared_ptr<const ServingModel> shadow;
    bool same_pass = false;
  };
  std::map<std::string, ShadowPlan> mirrors;
  std::map<std::string, int> deepest;
  for (const auto& [key, stops] : ks) deepest[key] = *std::max_element(stops.begin(), stops.end());
  for (const auto& m : models) {
    const auto it = shadows.find(m->info().id);
    if (shadow_lane_ == nullptr || it == shadows.end()) continue;
    auto shadow = models_->Get(it->second);
    if (!shadow.ok()) continue;  // deleted meanwhile: nothing to mirror to
    const std::string key = TrunkKey(m->info());
    const bool same_pass = (*shadow)->info().backbone == m->info().backbone &&
                           (*shadow)->info().preprocessing == m->info().preprocessing &&
                           TrunkKey((*shadow)->info()) == key && (*shadow)->first_block() <= deepest[key];
    if (same_pass) ks[key].push_back((*shadow)->first_block());
    mirrors[m->info().id] = ShadowPlan{*shadow, same_pass};
  }
  MultiPredictResult result;
  ASSIGN_OR_RETURN(const std::shared_ptr<ResidentBackbone> backbone,
                   zoo_.AwaitResident(models[0]->info().backbone, caller.cancelled));
  std::map<std::string, std::map<int, torch::Tensor>> trunks;
  for (auto& [key, stops] : ks) {
    std::sort(stops.begin(), stops.end());
    stops.erase(std::unique(stops.begin(), stops.end()), stops.end());
    const ModelInfo& info = *pass_of.at(key);
    ASSIGN_OR_RETURN(TrunkResult pass,
                     RunTrunk(backbone, models[0]->info().preprocessing, inputs, stops, /*classify=*/false,
                              result.timing, caller, info.precision,
                              info.int8_calibration ? &*info.int8_calibration : nullptr));
    trunks[key] = std::move(pass.at);
  }
  const int n = static_cast<int>(backbone->module->blocks().size());
  const auto tails = Clock::now();
  for (const auto& m : models) {
    const auto& trunk = trunks.at(TrunkKey(m->info()));
    auto outputs = GuardInternal("model " + m->info().id, [&]() -> absl::StatusOr<ModelOutputs> {
      c10::InferenceMode guard;
      const torch::Tensor& at_k = trunk.at(m->first_block());
      const ServingModel::Outputs out = m->Classify(m->first_block() == n ? BackboneImpl::Pool(at_k) : at_k);
      return ModelOutputs{torch::softmax(out.logits.to(torch::kCPU).to(torch::kFloat32), 1).contiguous(),
                          out.features.to(torch::kCPU).to(torch::kFloat32).contiguous()};
    });
    if (!outputs.ok()) return outputs.status();
    // What the model serves, for its monitor (evaluations do not count).
    m->monitor()->ObserveBatch(outputs->embeddings, outputs->probabilities, NowSeconds());
    if (const auto mirror = mirrors.find(m->info().id); mirror != mirrors.end()) {
      Mirror(m, mirror->second.shadow, outputs->probabilities, inputs,
             mirror->second.same_pass ? trunk.at(mirror->second.shadow->first_block()) : torch::Tensor(), n);
    }
    const int k = ResolveTopK(top_k, static_cast<int64_t>(m->info().class_names.size())).value();
    result.models.push_back({m->info().id, m->info().backbone, m->info().precision,
                             TopKOfProbabilities(outputs->probabilities, k, m->info().class_names)});
  }
  result.timing.compute_us += MicrosSince(tails);
  result.timing.total_us = MicrosSince(start);
  return result;
}

void Predictor::Mirror(const std::shared_ptr<const ServingModel>& served,
                       const std::shared_ptr<const ServingModel>& shadow, const torch::Tensor& served_probabilities,
                       const std::vector<ImageInput>& inputs, const torch::Tensor& at_k, int num_blocks) const {
  const int64_t images = served_probabilities.size(0);
  std::shared_ptr<ShadowAgreement> agreement = shadow->AgreementWith(served->info());
  std::function<void()> work;
  if (at_k.defined()) {
    // Its own copy: the request's rows are views of the whole batch's activations.
    const int k = shadow->first_block();
    torch::Tensor at;
    {
      c10::InferenceMode guard;
      at = (k == num_blocks ? BackboneImpl::Pool(at_k) : at_k).clone();
    }
    work = [shadow, agreement, served_probabilities, at, images] {
      auto probs = GuardInternal("shadow " + shadow->info().id, [&]() -> absl::StatusOr<torch::Tensor> {
        c10::InferenceMode guard;
        return torch::softmax(shadow->Classify(at).logits.to(torch::kCPU).to(torch::kFloat32), 1);
      });
      if (probs.ok()) {
        agreement->Observe(served_probabilities, *probs);
      } else {
        ABSL_LOG(WARNING) << probs.status();
        agreement->Failed(images);
      }
    };
  } else {
    work = [this, shadow, agreement, served_probabilities, inputs, images] {
      Caller caller(nullptr, "graft-shadow");
      caller.background = true;
      auto out = Outputs(shadow, inputs, caller);
      if (out.ok()) {
        agreement->Observe(served_probabilities, out->probabilities);
      } else {
        ABSL_LOG(WARNING) << "shadow " << shadow->info().id << ": " << out.status();
        agreement->Failed(images);
      }
    };
  }
  if (!shadow_lane_->Offer(images, std::move(work))) agreement->Dropped(images);
}

absl::StatusOr<torch::Tensor> Predictor::Probabilities(const std::shared_ptr<const ServingModel>& model,
                                                       const std::vector<ImageInput>& inputs,
                                                       const Caller& caller) const {
  ASSIGN_OR_RETURN(ModelOutputs out, Outputs(model, inputs, caller));
  return out.probabilities;
}

absl::StatusOr<ModelOutputs> Predictor::Outputs(const std::shared_ptr<const ServingModel>& model,
                                                const std::vector<ImageInput>& inputs, const Caller& caller,
                                                std::optional<Precision> precision) const {
  UseOneComputeThreadHere();  // the batcher thread runs the forward passes
  Timing timing;
  ASSIGN_OR_RETURN(const std::shared_ptr<ResidentBackbone> backbone, zoo_.AwaitResident(model->info().backbone, caller.cancelled));
  const int k = model->first_block();
  const auto& calibration = model->info().int8_calibration;
  ASSIGN_OR_RETURN(const TrunkResult trunk, RunTrunk(backbone, model->info().preprocessing, inputs, {k},
                                                     /*classify=*/false, timing, caller,
                                                     precision.value_or(model->info().precision),
                                                     calibration ? &*calibration : nullptr));
  const int n = static_cast<int>(backbone->module->blocks().size());
  return GuardInternal("model " + model->info().id, [&]() -> absl::StatusOr<ModelOutputs> {
    c10::InferenceMode guard;
    const torch::Tensor& at_k = trunk.at.at(k);
    const ServingModel::Outputs out = model->Classify(k == n ? BackboneImpl::Pool(at_k) : at_k);
    return ModelOutputs{torch::softmax(out.logits.to(torch::kCPU).to(torch::kFloat32), 1).contiguous(),
                        out.features.to(torch::kCPU).to(torch::kFloat32).contiguous()};
  });
}

absl::StatusOr<EmbedResult> Predictor::Embed(const std::string& name, const std::vector<ImageInput>& inputs,
                                             const std::string& block, const Caller& caller) const {
  UseOneComputeThreadHere();  // the batcher thread runs the forward passes
  const auto start = Clock::now();
  ASSIGN_OR_RETURN(const std::shared_ptr<ResidentBackbone> backbone, zoo_.AwaitResident(name, caller.cancelled));
  const auto& blocks = backbone->module->blocks();
  int end = static_cast<int>(blocks.size());
  if (!block.empty()) {
    end = 0;
    for (size_t i = 0; i < blocks.size(); ++i) {
      if (blocks[i].name == block) end = static_cast<int>(i) + 1;
    }
    if (end == 0) {
      std::vector<std::string> names;
      for (const auto& b : blocks) names.push_back(b.name);
      return absl::InvalidArgumentError(absl::StrCat("backbone '", backbone->spec->name, "' has no block '", block,
                                                     "'; its blocks are ", absl::StrJoin(names, ", ")));
    }
  }
  EmbedResult result;
  ASSIGN_OR_RETURN(const TrunkResult trunk, RunTrunk(backbone, backbone->spec->preprocessing, inputs, {end},
                                                     /*classify=*/false, result.timing, caller));
  auto pooled = GuardInternal("pooling", [&]() -> absl::StatusOr<torch::Tensor> {
    c10::InferenceMode guard;
    return BackboneImpl::Pool(trunk.at.at(end)).to(torch::kCPU).contiguous();
  });
  if (!pooled.ok()) return pooled.status();
  result.embeddings = *pooled;
  result.timing.total_us = MicrosSince(start);
  return result;
}

absl::StatusOr<EmbedResult> Predictor::EmbedModel(const std::string& model_id,
                                                  const std::vector<ImageInput>& inputs,
                                                  const Caller& caller) const {
  UseOneComputeThreadHere();  // the batcher thread runs the forward passes
  const auto start = Clock::now();
  if (models_ == nullptr) return absl::FailedPreconditionError("this predictor serves no models");
  ASSIGN_OR_RETURN(auto model, models_->Get(model_id));
  EmbedResult result;
  ASSIGN_OR_RETURN(const std::shared_ptr<ResidentBackbone> backbone, zoo_.AwaitResident(model->info().backbone, caller.cancelled));
  const int k = model->first_block();
  const int n = static_cast<int>(backbone->module->blocks().size());
  const auto& calibration = model->info().int8_calibration;
  ASSIGN_OR_RETURN(const TrunkResult trunk, RunTrunk(backbone, model->info().preprocessing, inputs, {k},
                                                     /*classify=*/false, result.timing, caller,
                                                     model->info().precision, calibration ? &*calibration : nullptr));
  auto features = GuardInternal("embed " + model_id, [&]() -> absl::StatusOr<torch::Tensor> {
    c10::InferenceMode guard;
    const torch::Tensor& at_k = trunk.at.at(k);
    return model->Embed(k == n ? BackboneImpl::Pool(at_k) : at_k).to(torch::kCPU).contiguous();
  });
  if (!features.ok()) return features.status();
  result.embeddings = *features;
  result.timing.total_us = MicrosSince(start);
  return result;
}

}  // namespace graft::core
