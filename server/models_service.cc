#include "server/models_service.h"

#include "absl/strings/str_cat.h"
#include "core/eval/evaluator.h"
#include "core/util/status_macros.h"
#include "server/job_convert.h"
#include "server/paging.h"
#include "server/status_util.h"

namespace graft::server {

bool MayUseModel(const core::Principal& who, const std::string& owner) {
  return who.role == core::Role::kInference || Owns(who, owner);
}

grpc::Status ModelsService::ListModels(grpc::ServerContext* context, const v1::ListModelsRequest* request,
                                       v1::ListModelsResponse* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, core::Role::kInference, "ListModels");
  std::vector<core::ModelInfo> usable;
  for (auto& m : store_.List()) {
    if (!MayUseModel(who, m.owner)) continue;
    m.report.reset();  // GetModel has it; a page of reports could near the message limit
    usable.push_back(std::move(m));
  }
  const auto next = PageInto(*request, usable, response->mutable_models());
  if (!next.ok()) return ToGrpcStatus(next.status());
  response->set_next_page_token(*next);
  return grpc::Status::OK;
}

grpc::Status ModelsService::GetModel(grpc::ServerContext* context, const v1::GetModelRequest* request,
                                     v1::Model* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, core::Role::kInference, "GetModel");
  auto m = store_.Get(request->id());
  if (!m.ok()) return ToGrpcStatus(m.status());
  if (!MayUseModel(who, (*m)->info().owner)) {
    return ToGrpcStatus(CheckOwner(who, (*m)->info().owner, absl::StrCat("model '", request->id(), "'")));
  }
  ToProto((*m)->info(), response);
  return grpc::Status::OK;
}

grpc::Status ModelsService::DeleteModel(grpc::ServerContext* context, const v1::DeleteModelRequest* request,
                                        v1::DeleteModelResponse*) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, core::Role::kTrain, "DeleteModel");
  auto m = store_.Get(request->id());
  if (!m.ok()) return ToGrpcStatus(m.status());
  if (auto s = CheckOwner(who, (*m)->info().owner, absl::StrCat("model '", request->id(), "'")); !s.ok()) {
    return ToGrpcStatus(s);
  }
  if (auto s = store_.Delete(request->id()); !s.ok()) return ToGrpcStatus(s);
  metrics_.SetModels(static_cast<double>(store_.size()));
  return grpc::Status::OK;
}

grpc::Status ModelsService::ExportModel(grpc::ServerContext* context, const v1::ExportModelRequest* request,
                                        grpc::ServerWriter<v1::ExportModelChunk>* writer) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, core::Role::kTrain, "ExportModel");
  auto m = store_.Get(request->id());
  if (!m.ok()) return ToGrpcStatus(m.status());
  if (auto s = CheckOwner(who, (*m)->info().owner, absl::StrCat("model '", request->id(), "'")); !s.ok()) {
    return ToGrpcStatus(s);
  }
  auto bytes = store_.Export(request->id());
  if (!bytes.ok()) return ToGrpcStatus(bytes.status());
  constexpr size_t kChunk = 1 << 20;
  for (size_t offset = 0; offset < bytes->size(); offset += kChunk) {
    if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
    v1::ExportModelChunk chunk;
    if (offset == 0) chunk.set_total_bytes(static_cast<int64_t>(bytes->size()));
    chunk.set_data(bytes->substr(offset, kChunk));
    if (!writer->Write(chunk)) return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
  }
  return grpc::Status::OK;
}

grpc::Status ModelsService::Evaluate(grpc::ServerContext* context, const v1::EvaluateRequest* request,
                                     grpc::ServerWriter<v1::EvaluateProgress>* writer) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, core::Role::kTrain, "Evaluate");
  if (predictor_ == nullptr || datasets_ == nullptr) return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "no evaluator");
  if (evaluations_.fetch_add(1) >= max_evaluations_) {
    evaluations_.fetch_sub(1);
    return ToGrpcStatus(absl::ResourceExhaustedError(
        absl::StrCat(max_evaluations_, " evaluations are running, the most at once (--max_concurrent_evaluations); retry "
                                       "when one ends")));
  }
  const absl::Status s = RunEvaluation(who, context, *request, writer);
  evaluations_.fetch_sub(1);
  return ToGrpcStatus(s);
}

absl::Status ModelsService::RunEvaluation(const core::Principal& who, grpc::ServerContext* context,
                                          const v1::EvaluateRequest& request,
                                          grpc::ServerWriter<v1::EvaluateProgress>* writer) {
  ASSIGN_OR_RETURN(auto model, store_.Get(request.model()));
  RETURN_IF_ERROR(CheckOwner(who, model->info().owner, absl::StrCat("model '", request.model(), "'")));
  ASSIGN_OR_RETURN(const core::DatasetInfo dataset, datasets_->Resolve(request.dataset(), who.name, who.admin()));
  RETURN_IF_ERROR(CheckOwner(who, dataset.owner, absl::StrCat("dataset '", request.dataset(), "'")));
  ASSIGN_OR_RETURN(const std::vector<core::DatasetImage> images, datasets_->Images(dataset.id));
  std::string split = "val";
  if (request.split() == v1::DATASET_SPLIT_TRAIN) split = "train";
  if (request.split() == v1::DATASET_SPLIT_ALL) split = "all";
  if (!v1::DatasetSplit_IsValid(request.split())) {
    return absl::InvalidArgumentError(absl::StrCat("split ", request.split(), " is not one of val, train, all"));
  }
  core::DatasetPass pass;
  pass.model = model;
  for (const core::DatasetImage& image : images) {
    if (split == "all" || (split == "val") == (image.split == core::Split::kVal)) pass.images.push_back(image);
  }
  for (const auto& c : dataset.classes) pass.dataset_classes.push_back(c.name);
  bool gone = false;
  auto progress = [&](int64_t done, int64_t total) {
    v1::EvaluateProgress p;
    p.set_images_done(done);
    p.set_images_total(total);
    if (!writer->Write(p)) gone = true;
  };
  ASSIGN_OR_RETURN(const core::EvaluationReport report,
                   core::EvaluateModel(*predictor_, pass, dataset.name, split, progress,
                                       [&]() { return gone || context->IsCancelled(); }));
  v1::EvaluateProgress last;
  last.set_images_done(report.images);
  last.set_images_total(report.images);
  ToProto(report, last.mutable_report());
  if (!writer->Write(last)) return absl::CancelledError("the client went away");
  return absl::OkStatus();
}

}  // namespace graft::server
