#include "server/inference_service.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "core/data/image_codec.h"
#include "core/util/ids.h"
#include "core/util/limit_error.h"
#include "server/model_convert.h"
#include "server/models_service.h"
#include "server/prediction_recording.h"
#include "server/proto_convert.h"
#include "server/status_util.h"
#include "server/request_check.h"

namespace graft::server {
namespace {

void AddPredictions(const std::vector<std::vector<core::ClassScore>>& images, v1::ModelPredictions* out) {
  for (size_t i = 0; i < images.size(); ++i) {
    v1::ImagePrediction* p = out->add_predictions();
    p->set_image_index(static_cast<int32_t>(i));
    for (const core::ClassScore& s : images[i]) {
      v1::ClassScore* c = p->add_top();
      c->set_index(s.index);
      c->set_label(s.label);
      c->set_probability(s.probability);
    }
  }
}

// Lets a request waiting in a batcher queue leave when its client has gone;
// the principal takes fair turns with others in the batcher.
core::Caller CallerOf(grpc::ServerContext* context, const core::Principal& who) {
  return core::Caller([context] { return context->IsCancelled(); }, who.name);
}

}  // namespace

absl::StatusOr<Admission> InferenceService::Admit(const core::Principal& who,
                                                  const google::protobuf::RepeatedPtrField<v1::ImageInput>& images,
                                                  const std::vector<std::string>& model_ids) const {
  RequestSize size;
  for (const v1::ImageInput& image : images) {
    if (image.has_tensor()) {
      const v1::FloatTensor& t = image.tensor();
      size.AddTensor(t.shape_size() == 4 ? t.shape(0) : 1, t.values_size() + static_cast<int64_t>(t.raw_values().size() / 4));
    } else if (image.has_encoded()) {
      size.AddEncoded(image.encoded(), limits_);
    }
  }
  auto admission = Admission::Admit(size, limits_, budget_);
  if (!admission.ok()) return admission.status();
  for (const std::string& id : model_ids) {
    if (models_ == nullptr) break;
    auto m = models_->Get(id);
    if (!m.ok()) continue;  // the predictor names unknown models
    if (!MayUseModel(who, (*m)->info().owner)) {
      return CheckOwner(who, (*m)->info().owner, absl::StrCat("model '", id, "'"));
    }
  }
  return admission;
}

absl::StatusOr<std::string> InferenceService::ResolveModel(const core::Principal& who, const std::string& ref) const {
  if (models_ == nullptr) return ref;
  return models_->Resolve(ref, who.name, core::UsesAnyOwnersModels(who));
}

absl::StatusOr<core::ServingRoute> InferenceService::ResolveForServing(const core::Principal& who,
                                                                       const std::string& ref,
                                                                       const std::string& routing_key) const {
  if (models_ == nullptr) return core::ServingRoute{ref, {}};
  return models_->ResolveForServing(ref, who.name, core::UsesAnyOwnersModels(who), routing_key);
}

grpc::Status InferenceService::Predict(grpc::ServerContext* context, const v1::PredictRequest* request,
                                       v1::PredictResponse* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Inference/Predict");
  GRAFT_CHECK_STRINGS(*request);
  // Counted before any name is resolved; a model named twice (by any of its
  // names) is run and answered once, where it is first named.
  if (request->models_size() > limits_.max_models) {
    return ToGrpcStatus(core::LimitError(absl::StatusCode::kResourceExhausted,
                                         absl::StrCat("the request names ", request->models_size(), " models; at most ",
                                                      limits_.max_models, " (--max_models_per_predict)"),
                                         "max_models_per_predict"));
  }
  const std::string routing_key =
      request->routing_key().empty() ? RoutingKeyOf(*context) : request->routing_key();
  std::vector<std::string> ids;
  core::ShadowMap shadows;
  for (const std::string& ref : request->models()) {
    auto route = ResolveForServing(who, ref, routing_key);
    if (!route.ok()) return ToGrpcStatus(route.status());
    if (std::find(ids.begin(), ids.end(), route->id) == ids.end()) ids.push_back(route->id);
    if (!route->shadow.empty()) shadows.emplace(route->id, route->shadow);
  }
  const auto admitted = Admit(who, request->images(), ids);
  if (!admitted.ok()) return ToGrpcStatus(admitted.status());
  if (request->models_size() > 0 && !request->backbone().empty()) {
    return ToGrpcStatus(absl::InvalidArgumentError("set either backbone or models, not both"));
  }
  if (request->models_size() == 0 && request->backbone().empty()) {
    return ToGrpcStatus(absl::InvalidArgumentError("a backbone or at least one model is required"));
  }
  const auto inputs = FromProto(request->images());
  if (!inputs.ok()) return ToGrpcStatus(inputs.status());
  std::optional<int> top_k = request->has_top_k() ? std::optional<int>(request->top_k()) : std::nullopt;
  if (request->models_size() > 0) {
    // A margin needs the second answer: asked for, then trimmed.
    const bool store = !request->has_store() || request->store();
    bool needs_margin = false;
    for (const std::string& id : ids) {
      if (records_ == nullptr || !store || top_k != 1) break;
      auto m = models_->Get(id);
      if (!m.ok()) continue;
      const auto policy = records_->Policy(core::PredictionRecords::KeyOf((*m)->info()));
      needs_margin = needs_margin || (policy && policy->below_margin > 0);
    }
    const bool trim_to_one = needs_margin && top_k == 1;
    if (trim_to_one) top_k = 2;
    const auto result = predictor_.PredictModels(ids, *inputs, top_k, CallerOf(context, who), shadows);
    if (!result.ok()) return ToGrpcStatus(result.status());
    // The bytes each answered image came from (null: a tensor input).
    std::vector<const std::string*> encoded_of;
    for (const v1::ImageInput& image : request->images()) {
      if (image.has_encoded()) {
        encoded_of.push_back(&image.encoded());
      } else {
        const v1::FloatTensor& t = image.tensor();
        const int64_t n = t.shape_size() == 4 ? t.shape(0) : 1;
        for (int64_t i = 0; i < n; ++i) encoded_of.push_back(nullptr);
      }
    }
    for (const core::ModelPredictions& m : result->models) {
      v1::ModelPredictions* out = response->add_results();
      out->set_model(m.model);
      out->set_backbone(m.backbone);
      out->set_precision(ToProto(m.precision));
      AddPredictions(m.images, out);
      std::vector<RecordedAnswer> recorded;
      if (auto model = models_ != nullptr ? models_->Get(m.model) : absl::NotFoundError(m.model); model.ok()) {
        recorded = RecordAnswers(records_, metrics_, (*model)->info(), who.name, encoded_of, m.images, store);
      }
      for (size_t i = 0; i < m.images.size(); ++i) {
        v1::ImagePrediction* p = out->mutable_predictions(static_cast<int>(i));
        if (i < recorded.size()) {
          p->set_prediction_id(recorded[i].prediction_id);
          p->set_recorded(recorded[i].recorded);
        }
        if (trim_to_one && p->top_size() > 1) p->mutable_top()->DeleteSubrange(1, p->top_size() - 1);
      }
      metrics_.AddImagesPredicted(m.backbone, core::PrecisionName(m.precision), static_cast<double>(m.images.size()));
    }
    ToProto(result->timing, response->mutable_timing());
    return grpc::Status::OK;
  }
  if (auto s = MayStartWeightsFetch(who, predictor_.zoo(), request->backbone()); !s.ok()) return ToGrpcStatus(s);
  const auto result = predictor_.Predict(request->backbone(), *inputs, top_k, CallerOf(context, who));
  if (!result.ok()) return ToGrpcStatus(result.status());

  v1::ModelPredictions* out = response->add_results();
  const auto resident = core::Registry::BuiltIn().Find(request->backbone());
  out->set_backbone(resident ? resident->name : request->backbone());
  out->set_precision(v1::PRECISION_FP32);
  AddPredictions(result->images, out);
  ToProto(result->timing, response->mutable_timing());
  metrics_.AddImagesPredicted(out->backbone(), "fp32", static_cast<double>(result->images.size()));
  return grpc::Status::OK;
}

grpc::Status InferenceService::Embed(grpc::ServerContext* context, const v1::EmbedRequest* request,
                                     v1::EmbedResponse* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Inference/Embed");
  GRAFT_CHECK_STRINGS(*request);
  std::vector<std::string> ids;
  if (!request->model().empty()) {
    auto id = ResolveModel(who, request->model());
    if (!id.ok()) return ToGrpcStatus(id.status());
    ids.push_back(*id);
  }
  const auto admitted = Admit(who, request->images(), ids);
  if (!admitted.ok()) return ToGrpcStatus(admitted.status());
  if (!request->model().empty() && !request->backbone().empty()) {
    return ToGrpcStatus(absl::InvalidArgumentError("set either backbone or model, not both"));
  }
  if (request->model().empty() && request->backbone().empty()) {
    return ToGrpcStatus(absl::InvalidArgumentError("a backbone or a model is required"));
  }
  if (!request->model().empty() && !request->block().empty()) {
    return ToGrpcStatus(absl::InvalidArgumentError("block applies to backbones; a model embeds with its last block"));
  }
  const auto inputs = FromProto(request->images());
  if (!inputs.ok()) return ToGrpcStatus(inputs.status());
  if (request->model().empty()) {
    if (auto s = MayStartWeightsFetch(who, predictor_.zoo(), request->backbone()); !s.ok()) return ToGrpcStatus(s);
  }
  const auto result = request->model().empty() ? predictor_.Embed(request->backbone(), *inputs, request->block(), CallerOf(context, who))
                                               : predictor_.EmbedModel(ids[0], *inputs, CallerOf(context, who));
  if (!result.ok()) return ToGrpcStatus(result.status());
  const torch::Tensor& e = result->embeddings;
  const int64_t dim = e.size(1);
  response->set_dim(static_cast<int32_t>(dim));
  const float* data = e.data_ptr<float>();
  for (int64_t i = 0; i < e.size(0); ++i) {
    v1::Embedding* out = response->add_embeddings();
    out->set_image_index(static_cast<int32_t>(i));
    out->mutable_values()->Add(data + i * dim, data + (i + 1) * dim);
  }
  ToProto(result->timing, response->mutable_timing());
  return grpc::Status::OK;
}

}  // namespace graft::server
