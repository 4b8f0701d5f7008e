#include "server/models_service.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "core/eval/evaluator.h"
#include "core/util/ids.h"
#include "core/util/log.h"
#include "core/util/status_macros.h"
#include "server/job_convert.h"
#include "server/model_convert.h"
#include "server/model_monitoring.h"
#include "server/paging.h"
#include "server/status_util.h"
#include "server/request_check.h"

namespace graft::server {

absl::Status MayStartWeightsFetch(const core::Principal& who, const core::Zoo& zoo, const std::string& backbone) {
  if (who.role != core::Role::kInference) return absl::OkStatus();
  const absl::StatusOr<bool> present = zoo.WeightsPresent(backbone);
  if (!present.ok() || *present) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "backbone '", backbone,
      "' has no ImageNet weights here yet, and inference tokens start no downloads; an admin or train token's first "
      "use, or 'graft backbones pull ", backbone, "', fetches them"));
}

bool MayUseModel(const core::Principal& who, const std::string& owner) {
  return core::UsesAnyOwnersModels(who) || core::Owns(who, owner);
}

// What an inference principal sees of a model it does not own: what it needs
// to predict, not the training data (dataset, job, the hardest images' file
// names and thumbnails) or who trained it.
void RedactFor(const core::Principal& who, core::ModelInfo& m) {
  if (core::Owns(who, m.owner)) return;
  m.owner.clear();
  m.job_id.clear();
  m.spec.dataset.clear();
  if (m.report) {
    m.report->dataset.clear();
    m.report->highest_loss.clear();
  }
}

grpc::Status ModelsService::ListModels(grpc::ServerContext* context, const v1::ListModelsRequest* request,
                                       v1::ListModelsResponse* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Models/ListModels");
  GRAFT_CHECK_STRINGS(*request);
  std::vector<core::ModelInfo> usable;
  for (auto& m : store_.List()) {
    if (!MayUseModel(who, m.owner)) continue;
    RedactFor(who, m);
    m.report.reset();  // GetModel has these; a page of reports could near the message limit
    m.history.clear();
    m.restored_epochs.clear();
    usable.push_back(std::move(m));
  }
  const auto next = PageInto(*request, usable, response->mutable_models());
  if (!next.ok()) return ToGrpcStatus(next.status());
  response->set_next_page_token(*next);
  return grpc::Status::OK;
}

grpc::Status ModelsService::GetModel(grpc::ServerContext* context, const v1::GetModelRequest* request,
                                     v1::Model* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Models/GetModel");
  GRAFT_CHECK_STRINGS(*request);
  auto id = ResolveFor(who, request->id());
  if (!id.ok()) return ToGrpcStatus(id.status());
  auto m = store_.Get(*id);
  if (!m.ok()) return ToGrpcStatus(m.status());
  if (!MayUseModel(who, (*m)->info().owner)) {
    return ToGrpcStatus(CheckOwner(who, (*m)->info().owner, absl::StrCat("model '", request->id(), "'")));
  }
  core::ModelInfo info = (*m)->info();
  const auto aliases = store_.Aliases(info);
  const auto canary_of = store_.CanaryOf(info);
  const auto shadow_of = store_.ShadowOf(info);
  RedactFor(who, info);
  ToProto(info, response);
  for (const std::string& alias : aliases) response->add_aliases(alias);
  for (const auto& [alias, percent] : canary_of) {
    v1::CanaryShare* share = response->add_canary_of();
    share->set_alias(alias);
    share->set_percent(percent);
  }
  for (const std::string& alias : shadow_of) response->add_shadow_of(alias);
  // What everyone's traffic to the model looks like is its owner's (and
  // admins') to see, not every application's that may predict with it.
  if (core::Owns(who, (*m)->info().owner)) {
    ToProto(*(*m)->monitor(), info.class_names, core::NowSeconds(), response->mutable_monitoring());
    for (const auto& shadowed : (*m)->Agreements()) ToProto(shadowed, response->add_shadow_agreements());
  }
  return grpc::Status::OK;
}

grpc::Status ModelsService::DeleteModel(grpc::ServerContext* context, const v1::DeleteModelRequest* request,
                                        v1::DeleteModelResponse*) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Models/DeleteModel");
  GRAFT_CHECK_STRINGS(*request);
  auto id = ResolveFor(who, request->id());
  if (!id.ok()) return ToGrpcStatus(id.status());
  auto m = store_.Get(*id);
  if (!m.ok()) return ToGrpcStatus(m.status());
  if (auto s = CheckOwner(who, (*m)->info().owner, absl::StrCat("model '", request->id(), "'")); !s.ok()) {
    return ToGrpcStatus(s);
  }
  if (auto s = store_.Delete(*id); !s.ok()) return ToGrpcStatus(s);
  if (records_ != nullptr) {
    if (auto n = records_->DeleteForModel(*id); !n.ok()) {
      ABSL_LOG(WARNING) << "deleting the prediction records of model " << *id << ": " << n.status().message();
    }
  }
  metrics_.SetModels(static_cast<double>(store_.size()));
  return grpc::Status::OK;
}

grpc::Status ModelsService::ExportModel(grpc::ServerContext* context, const v1::ExportModelRequest* request,
                                        grpc::ServerWriter<v1::ExportModelChunk>* writer) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Models/ExportModel");
  GRAFT_CHECK_STRINGS(*request);
  auto id = ResolveFor(who, request->id());
  if (!id.ok()) return ToGrpcStatus(id.status());
  auto m = store_.Get(*id);
  if (!m.ok()) return ToGrpcStatus(m.status());
  if (auto s = CheckOwner(who, (*m)->info().owner, absl::StrCat("model '", request->id(), "'")); !s.ok()) {
    return ToGrpcStatus(s);
  }
  auto bytes = store_.Export(*id);
  if (!bytes.ok()) return ToGrpcStatus(bytes.status());
  constexpr size_t kChunk = 1 << 20;
  const auto writes = deadlines_.ForWrites(context);
  for (size_t offset = 0; offset < bytes->size(); offset += kChunk) {
    if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
    v1::ExportModelChunk chunk;
    if (offset == 0) chunk.set_total_bytes(static_cast<int64_t>(bytes->size()));
    chunk.set_data(bytes->substr(offset, kChunk));
    if (!StreamWatchdog::Write(*writes, writer, chunk)) {
      return writes->expired() ? ToGrpcStatus(writes->Expired("read of the export"))
                               : grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
    }
  }
  return grpc::Status::OK;
}

absl::StatusOr<std::string> ModelsService::ResolveFor(const core::Principal& who, const std::string& ref) {
  return store_.Resolve(ref, who.name, core::UsesAnyOwnersModels(who));
}

namespace {

// "OWNER/NAME" (admins) or "NAME" (the caller's) as owner and name.
absl::StatusOr<std::pair<std::string, std::string>> OwnedName(const core::Principal& who, const std::string& text) {
  const size_t slash = text.find('/');
  if (slash == std::string::npos) return std::make_pair(who.name, text);
  const std::string owner = text.substr(0, slash);
  if (!core::Owns(who, owner)) {
    return absl::PermissionDeniedError(absl::StrCat("model name '", text, "' belongs to another principal"));
  }
  return std::make_pair(owner, text.substr(slash + 1));
}

}  // namespace

grpc::Status ModelsService::SetModelAlias(grpc::ServerContext* context, const v1::SetModelAliasRequest* request,
                                          v1::Model* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Models/SetModelAlias");
  GRAFT_CHECK_STRINGS(*request);
  const auto owned = OwnedName(who, request->name());
  if (!owned.ok()) return ToGrpcStatus(owned.status());
  std::vector<core::CanaryRoute> canaries;
  for (const v1::CanaryVersion& c : request->canaries()) canaries.push_back({c.version(), c.percent()});
  const auto info =
      store_.SetAlias(owned->first, owned->second, request->alias(), request->version(), canaries, request->shadow());
  if (!info.ok()) return ToGrpcStatus(info.status());
  ToProto(*info, response);
  for (const std::string& alias : store_.Aliases(*info)) response->add_aliases(alias);
  return grpc::Status::OK;
}

grpc::Status ModelsService::DeleteModelAlias(grpc::ServerContext* context, const v1::DeleteModelAliasRequest* request,
                                             v1::DeleteModelAliasResponse*) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Models/DeleteModelAlias");
  GRAFT_CHECK_STRINGS(*request);
  const auto owned = OwnedName(who, request->name());
  if (!owned.ok()) return ToGrpcStatus(owned.status());
  return ToGrpcStatus(store_.DeleteAlias(owned->first, owned->second, request->alias()));
}

absl::StatusOr<ModelsService::Pass> ModelsService::PreparePass(const core::Principal& who, const std::string& model_ref,
                                                               const std::string& dataset_ref, v1::DatasetSplit split) {
  if (predictor_ == nullptr || datasets_ == nullptr) return absl::UnimplementedError("no dataset passes here");
  if (!v1::DatasetSplit_IsValid(split)) {
    return absl::InvalidArgumentError(absl::StrCat("split ", split, " is not one of val, train, all"));
  }
  Pass pass;
  ASSIGN_OR_RETURN(const std::string id, ResolveFor(who, model_ref));
  ASSIGN_OR_RETURN(pass.run.model, store_.Get(id));
  RETURN_IF_ERROR(CheckOwner(who, pass.run.model->info().owner, absl::StrCat("model '", model_ref, "'")));
  ASSIGN_OR_RETURN(pass.dataset, datasets_->Resolve(dataset_ref, who.name, core::SeesEveryOwner(who)));
  RETURN_IF_ERROR(CheckOwner(who, pass.dataset.owner, absl::StrCat("dataset '", dataset_ref, "'")));
  ASSIGN_OR_RETURN(const std::vector<core::DatasetImage> images, datasets_->Images(pass.dataset.id));
  pass.split = split == v1::DATASET_SPLIT_TRAIN ? "train" : split == v1::DATASET_SPLIT_ALL ? "all" : "val";
  for (const core::DatasetImage& image : images) {
    if (pass.split == "all" || (pass.split == "val") == (image.split == core::Split::kVal)) {
      pass.run.images.push_back(image);
    }
  }
  for (const auto& c : pass.dataset.classes) pass.run.dataset_classes.push_back(c.name);
  return pass;
}

grpc::Status ModelsService::Evaluate(grpc::ServerContext* context, const v1::EvaluateRequest* request,
                                     grpc::ServerWriter<v1::EvaluateProgress>* writer) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Models/Evaluate");
  GRAFT_CHECK_STRINGS(*request);
  auto slot = passes_.Acquire(who.name);
  if (!slot.ok()) return ToGrpcStatus(slot.status());
  return ToGrpcStatus([&]() -> absl::Status {
    ASSIGN_OR_RETURN(const Pass pass, PreparePass(who, request->model(), request->dataset(), request->split()));
    const auto writes = deadlines_.ForWrites(context);
    bool gone = false;
    auto progress = [&](int64_t done, int64_t total) {
      v1::EvaluateProgress p;
      p.set_images_done(done);
      p.set_images_total(total);
      if (!StreamWatchdog::Write(*writes, writer, p)) gone = true;
    };
    const core::Caller caller([&]() { return gone || context->IsCancelled(); }, who.name);
    core::Evaluation evaluation;
    if (request->set_profile()) {
      ASSIGN_OR_RETURN(evaluation, core::EvaluateAndProfile(*predictor_, pass.run, pass.dataset.name, pass.split,
                                                            pass.run.model->info().spec.seed, progress, caller));
    } else {
      ASSIGN_OR_RETURN(evaluation.report,
                       core::EvaluateModel(*predictor_, pass.run, pass.dataset.name, pass.split, progress, caller));
    }
    const core::EvaluationReport& report = evaluation.report;
    if (request->set_profile()) {
      if (evaluation.profile == nullptr) {
        return absl::FailedPreconditionError(absl::StrCat("no reference profile could be made of model '",
                                                          request->model(), "' on these images (the log says why)"));
      }
      RETURN_IF_ERROR(store_.SetProfile(pass.run.model->info().id, evaluation.profile));
    }
    v1::EvaluateProgress last;
    last.set_images_done(report.images);
    last.set_images_total(report.images);
    ToProto(report, last.mutable_report());
    if (!StreamWatchdog::Write(*writes, writer, last)) {
      return writes->expired() ? writes->Expired("read of the report") : absl::CancelledError("the client went away");
    }
    if (gone) return writes->expired() ? writes->Expired("read of the progress") : absl::CancelledError("the client went away");
    return absl::OkStatus();
  }());
}

grpc::Status ModelsService::PredictDataset(grpc::ServerContext* context, const v1::PredictDatasetRequest* request,
                                           grpc::ServerWriter<v1::PredictDatasetResponse>* writer) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Models/PredictDataset");
  GRAFT_CHECK_STRINGS(*request);
  auto slot = passes_.Acquire(who.name);
  if (!slot.ok()) return ToGrpcStatus(slot.status());
  return ToGrpcStatus([&]() -> absl::Status {
    ASSIGN_OR_RETURN(const Pass pass, PreparePass(who, request->model(), request->dataset(), request->split()));
    const auto& names = pass.run.model->info().class_names;
    ASSIGN_OR_RETURN(const int k, core::ResolveTopK(request->has_top_k() ? std::optional<int>(request->top_k())
                                                                          : std::nullopt,
                                                    static_cast<int64_t>(names.size())));
    if (pass.run.images.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("dataset '", pass.dataset.name, "' has no ", pass.split, " images"));
    }
    std::map<std::string, int> index;
    for (size_t i = 0; i < names.size(); ++i) index.emplace(names[i], static_cast<int>(i));
    const int64_t total = static_cast<int64_t>(pass.run.images.size());
    int64_t done = 0;
    bool gone = false;
    const auto writes = deadlines_.ForWrites(context);
    RETURN_IF_ERROR(core::RunDatasetPass(
        *predictor_, pass.run,
        [&](const std::vector<const core::DatasetImage*>& images, const core::ModelOutputs& out) -> absl::Status {
          const auto top = core::TopKOfProbabilities(out.probabilities, k, names);
          v1::PredictDatasetResponse response;
          for (size_t i = 0; i < images.size(); ++i) {
            v1::DatasetPrediction* p = response.add_predictions();
            p->set_file(images[i]->path);
            const std::string& label = pass.run.dataset_classes.at(static_cast<size_t>(images[i]->label));
            p->set_true_label(label);
            const auto it = index.find(label);
            p->set_true_index(it == index.end() ? -1 : it->second);
            for (const core::ClassScore& c : top[i]) {
              v1::ClassScore* out = p->add_top();
              out->set_index(c.index);
              out->set_label(c.label);
              out->set_probability(c.probability);
            }
          }
          done += static_cast<int64_t>(images.size());
          response.set_images_done(done);
          response.set_images_total(total);
          if (!StreamWatchdog::Write(*writes, writer, response)) gone = true;
          return absl::OkStatus();
        },
        {}, core::Caller([&]() { return gone || context->IsCancelled(); }, who.name)));
    if (gone) return writes->expired() ? writes->Expired("read of the predictions") : absl::CancelledError("the client went away");
    return absl::OkStatus();
  }());
}

}  // namespace graft::server
