#include "server/predictions_service.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/auth/policy.h"
#include "core/serve/records_dataset.h"
#include "core/util/status_macros.h"
#include "server/job_convert.h"
#include "server/request_check.h"
#include "server/status_util.h"

namespace graft::server {
namespace {

void PolicyToProto(const std::string& key, const core::RecordPolicy& p, v1::RecordPolicy* out) {
  out->set_model(key);
  out->set_sample_rate(p.sample_rate);
  out->set_below_confidence(p.below_confidence);
  out->set_below_margin(p.below_margin);
  out->set_quota_bytes(p.quota_bytes);
  out->set_max_per_minute(p.max_per_minute);
  out->set_allow_new_classes(p.allow_new_classes);
}

}  // namespace

void ToProto(const core::PredictionRecord& in, v1::PredictionRecord* out) {
  out->set_prediction_id(in.id);
  out->set_model(in.model_id);
  out->set_version(in.version);
  out->set_principal(in.principal);
  out->set_created_at(in.created_at);
  for (const core::ClassScore& s : in.top) {
    v1::ClassScore* c = out->add_top();
    c->set_index(s.index);
    c->set_label(s.label);
    c->set_probability(s.probability);
  }
  out->set_reason(in.reason);
  out->set_image_bytes(in.image_bytes);
  out->set_image_sha256(in.image_sha256);
  out->set_feedback_label(in.feedback_label);
  out->set_feedback_author(in.feedback_author);
  out->set_feedback_at(in.feedback_at);
  out->set_disagrees(in.disagrees());
}

absl::StatusOr<PredictionsService::Owned> PredictionsService::OwnedKey(const core::Principal& who,
                                                                       const std::string& ref) {
  if (ref.empty()) return absl::InvalidArgumentError("model is required");
  ASSIGN_OR_RETURN(const std::string id, models_.Resolve(ref, who.name, core::SeesEveryOwner(who)));
  ASSIGN_OR_RETURN(const auto model, models_.Get(id));
  RETURN_IF_ERROR(CheckOwner(who, model->info().owner, absl::StrCat("model '", ref, "'")));
  return Owned{core::PredictionRecords::KeyOf(model->info()), model->info().owner};
}

absl::StatusOr<core::PredictionRecord> PredictionsService::Visible(const core::Principal& who, const std::string& id) {
  auto r = records_.Get(id);
  if (!r.ok()) return r.status();
  if (!core::Owns(who, r->owner) && r->principal != who.name) {
    return absl::NotFoundError(absl::StrCat("prediction '", id, "' was not recorded, or is not yours to see"));
  }
  return r;
}

grpc::Status PredictionsService::SetRecordPolicy(grpc::ServerContext* context, const v1::SetRecordPolicyRequest* request,
                                                 v1::RecordPolicy* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Predictions/SetRecordPolicy");
  GRAFT_CHECK_STRINGS(*request);
  const auto owned = OwnedKey(who, request->model());
  if (!owned.ok()) return ToGrpcStatus(owned.status());
  const v1::RecordPolicy& in = request->policy();
  core::RecordPolicy p;
  p.sample_rate = in.sample_rate();
  p.below_confidence = in.below_confidence();
  p.below_margin = in.below_margin();
  p.quota_bytes = in.quota_bytes();
  p.max_per_minute = in.max_per_minute();
  p.allow_new_classes = in.allow_new_classes();
  if (auto s = records_.SetPolicy(owned->key, owned->owner, p); !s.ok()) return ToGrpcStatus(s);
  PolicyToProto(owned->key, p, response);
  if (auto used = records_.BytesOf(owned->key); used.ok()) response->set_used_bytes(*used);
  return grpc::Status::OK;
}

grpc::Status PredictionsService::GetRecordPolicy(grpc::ServerContext* context, const v1::GetRecordPolicyRequest* request,
                                                 v1::RecordPolicy* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Predictions/GetRecordPolicy");
  GRAFT_CHECK_STRINGS(*request);
  const auto owned = OwnedKey(who, request->model());
  if (!owned.ok()) return ToGrpcStatus(owned.status());
  PolicyToProto(owned->key, records_.Policy(owned->key).value_or(core::RecordPolicy{}), response);
  if (auto used = records_.BytesOf(owned->key); used.ok()) response->set_used_bytes(*used);
  return grpc::Status::OK;
}

grpc::Status PredictionsService::ListPredictions(grpc::ServerContext* context, const v1::ListPredictionsRequest* request,
                                                 v1::ListPredictionsResponse* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Predictions/ListPredictions");
  GRAFT_CHECK_STRINGS(*request);
  const auto owned = OwnedKey(who, request->model());
  if (!owned.ok()) return ToGrpcStatus(owned.status());
  core::RecordQuery q;
  q.model_key = owned->key;
  q.low_confidence_only = request->low_confidence_only();
  if (request->feedback() == v1::ListPredictionsRequest::WITH_FEEDBACK) q.with_feedback = true;
  if (request->feedback() == v1::ListPredictionsRequest::WITHOUT_FEEDBACK) q.with_feedback = false;
  if (!(request->since() >= 0)) return ToGrpcStatus(absl::InvalidArgumentError("since must be >= 0 (Unix seconds)"));
  q.since = request->since();
  if (request->page_size() < 0 || request->page_size() > 1000) {
    return ToGrpcStatus(absl::InvalidArgumentError("page_size must lie in [0, 1000] (0: 100)"));
  }
  q.limit = request->page_size() == 0 ? 100 : request->page_size();
  if (!request->page_token().empty() &&
      (!absl::SimpleAtoi(request->page_token(), &q.offset) || q.offset < 0)) {
    return ToGrpcStatus(absl::InvalidArgumentError("page_token is not one ListPredictions returned"));
  }
  const auto page = records_.List(q);
  if (!page.ok()) return ToGrpcStatus(page.status());
  for (const core::PredictionRecord& r : page->records) ToProto(r, response->add_records());
  if (page->next_offset > 0) response->set_next_page_token(absl::StrCat(page->next_offset));
  if (auto used = records_.BytesOf(owned->key); used.ok()) response->set_used_bytes(*used);
  return grpc::Status::OK;
}

grpc::Status PredictionsService::GetPrediction(grpc::ServerContext* context, const v1::GetPredictionRequest* request,
                                               v1::PredictionRecord* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Predictions/GetPrediction");
  GRAFT_CHECK_STRINGS(*request);
  const auto r = Visible(who, request->prediction_id());
  if (!r.ok()) return ToGrpcStatus(r.status());
  ToProto(*r, response);
  if (request->include_image()) {
    auto image = records_.Image(*r);
    if (!image.ok()) return ToGrpcStatus(image.status());
    response->set_image(std::move(*image));
  }
  return grpc::Status::OK;
}

grpc::Status PredictionsService::Feedback(grpc::ServerContext* context, const v1::FeedbackRequest* request,
                                          v1::PredictionRecord* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Predictions/Feedback");
  GRAFT_CHECK_STRINGS(*request);
  const auto r = Visible(who, request->prediction_id());
  if (!r.ok()) return ToGrpcStatus(r.status());
  std::vector<std::string> classes;  // none once the version is deleted: only new names, where allowed
  if (auto model = models_.Get(r->model_id); model.ok()) classes = (*model)->info().class_names;
  const auto updated = records_.SetFeedback(r->id, request->label(), who.name, classes);
  if (!updated.ok()) return ToGrpcStatus(updated.status());
  metrics_.OnFeedback(updated->model_key, !updated->disagrees());
  ToProto(*updated, response);
  return grpc::Status::OK;
}

grpc::Status PredictionsService::CreateDatasetFromPredictions(grpc::ServerContext* context,
                                                              const v1::CreateDatasetFromPredictionsRequest* request,
                                                              v1::CreateDatasetFromPredictionsResponse* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Predictions/CreateDatasetFromPredictions");
  GRAFT_CHECK_STRINGS(*request);
  const auto owned = OwnedKey(who, request->model());
  if (!owned.ok()) return ToGrpcStatus(owned.status());
  if (!(request->since() >= 0)) return ToGrpcStatus(absl::InvalidArgumentError("since must be >= 0 (Unix seconds)"));
  core::RecordsDatasetRequest r;
  r.model_key = owned->key;
  r.name = request->name();
  r.owner = who.name;
  r.labelled_only = request->labelled_only();
  r.since = request->since();
  r.split_fraction = request->split().fraction();
  r.split_seed = request->split().seed();
  const auto made = core::DatasetFromRecords(records_, datasets_, r);
  if (!made.ok()) return ToGrpcStatus(made.status());
  metrics_.SetDatasets(static_cast<double>(datasets_.List().size()));
  ToProto(made->ingest.dataset, response->mutable_dataset());
  for (const auto& rejected : made->ingest.rejected) {
    if (response->rejected_size() >= 1000) break;
    auto* out = response->add_rejected();
    out->set_path(rejected.path.substr(0, 512));
    out->set_reason(rejected.reason.substr(0, 512));
  }
  response->set_records(made->records);
  response->set_duplicates(made->duplicates);
  response->set_unlabelled(made->unlabelled);
  return grpc::Status::OK;
}

grpc::Status PredictionsService::PurgePredictions(grpc::ServerContext* context,
                                                  const v1::PurgePredictionsRequest* request,
                                                  v1::PurgePredictionsResponse* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Predictions/PurgePredictions");
  GRAFT_CHECK_STRINGS(*request);
  const auto owned = OwnedKey(who, request->model());
  if (!owned.ok()) return ToGrpcStatus(owned.status());
  const auto n = records_.Purge(owned->key);
  if (!n.ok()) return ToGrpcStatus(n.status());
  response->set_deleted(*n);
  return grpc::Status::OK;
}

}  // namespace graft::server
