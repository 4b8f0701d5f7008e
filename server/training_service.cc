#include "server/training_service.h"

#include "absl/strings/str_cat.h"
#include "core/util/limit_error.h"
#include "core/util/status_macros.h"
#include "server/job_convert.h"
#include "server/paging.h"
#include "server/status_util.h"
#include "server/request_check.h"

namespace graft::server {

absl::StatusOr<core::JobRecord> TrainingService::Find(const core::Principal& who, const std::string& id) {
  ASSIGN_OR_RETURN(core::JobRecord job, runner_.Get(id));
  RETURN_IF_ERROR(CheckOwner(who, job.owner, absl::StrCat("job '", id, "'")));
  return job;
}

grpc::Status TrainingService::CreateJob(grpc::ServerContext* context, const v1::CreateJobRequest* request,
                                        v1::Job* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Training/CreateJob");
  GRAFT_CHECK_STRINGS(*request);
  auto spec = FromProto(request->spec());
  if (!spec.ok()) return ToGrpcStatus(spec.status());
  auto job = runner_.Submit(std::move(*spec), who);
  if (!job.ok()) return ToGrpcStatus(job.status());
  ToProto(*job, response);
  return grpc::Status::OK;
}

grpc::Status TrainingService::Retrain(grpc::ServerContext* context, const v1::RetrainRequest* request,
                                      v1::Job* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Training/Retrain");
  GRAFT_CHECK_STRINGS(*request);
  return ToGrpcStatus([&]() -> absl::Status {
    if (request->add_datasets_size() > core::kMaxAddedDatasets) {
      return absl::InvalidArgumentError(absl::StrCat("add_datasets: at most ", core::kMaxAddedDatasets, " datasets"));
    }
    core::RetrainRequest r;
    r.model = request->model();
    r.add_datasets.assign(request->add_datasets().begin(), request->add_datasets().end());
    if (request->has_epochs()) r.epochs = request->epochs();
    r.name = request->name();
    if (request->has_promotion()) {
      ASSIGN_OR_RETURN(r.promotion, FromProto(request->promotion(), &r.has_promotion));
    }
    ASSIGN_OR_RETURN(const core::JobRecord job, runner_.Retrain(r, who));
    ToProto(job, response);
    return absl::OkStatus();
  }());
}

grpc::Status TrainingService::GetJob(grpc::ServerContext* context, const v1::GetJobRequest* request,
                                     v1::Job* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Training/GetJob");
  GRAFT_CHECK_STRINGS(*request);
  auto job = Find(who, request->id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  ToProto(*job, response);
  if (job->spec.has_search || job->spec.auto_learning_rate || job->spec.has_promotion) {
    auto events = runner_.Events(job->id);
    if (!events.ok()) return ToGrpcStatus(events.status());
    AddEventsOf(*job, *events, response);
  }
  return grpc::Status::OK;
}

grpc::Status TrainingService::FindLearningRate(grpc::ServerContext* context, const v1::FindLearningRateRequest* request,
                                               v1::LearningRateCurve* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Training/FindLearningRate");
  GRAFT_CHECK_STRINGS(*request);
  auto spec = FromProto(request->spec());
  if (!spec.ok()) return ToGrpcStatus(spec.status());
  core::LrFindOptions options;
  if (request->min_lr() != 0) options.min_lr = request->min_lr();
  if (request->max_lr() != 0) options.max_lr = request->max_lr();
  if (request->steps() != 0) options.steps = request->steps();
  if (!(options.min_lr > 0 && options.min_lr < options.max_lr && options.max_lr <= 100)) {
    return ToGrpcStatus(absl::InvalidArgumentError("min_lr, max_lr: need 0 < min_lr < max_lr <= 100"));
  }
  if (options.steps < 5 || options.steps > 10000) {
    return ToGrpcStatus(absl::InvalidArgumentError(absl::StrCat("steps: must be 5..10000, got ", options.steps)));
  }
  auto curve = runner_.FindLearningRate(std::move(*spec), options, who, [context] { return context->IsCancelled(); });
  if (!curve.ok()) return ToGrpcStatus(curve.status());
  ToProto(*curve, response);
  return grpc::Status::OK;
}

grpc::Status TrainingService::ListJobs(grpc::ServerContext* context, const v1::ListJobsRequest* request,
                                       v1::ListJobsResponse* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Training/ListJobs");
  GRAFT_CHECK_STRINGS(*request);
  auto state = FromProto(request->state());
  if (!state.ok()) return ToGrpcStatus(state.status());
  auto jobs = runner_.List(*state);
  if (!jobs.ok()) return ToGrpcStatus(jobs.status());
  std::vector<core::JobRecord> mine;
  for (auto& j : *jobs) {
    if (core::Owns(who, j.owner)) mine.push_back(std::move(j));
  }
  const auto next = PageInto(*request, mine, response->mutable_jobs());
  if (!next.ok()) return ToGrpcStatus(next.status());
  response->set_next_page_token(*next);
  return grpc::Status::OK;
}

grpc::Status TrainingService::CancelJob(grpc::ServerContext* context, const v1::CancelJobRequest* request,
                                        v1::Job* response) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Training/CancelJob");
  GRAFT_CHECK_STRINGS(*request);
  if (auto owned = Find(who, request->id()); !owned.ok()) return ToGrpcStatus(owned.status());
  auto job = runner_.Cancel(request->id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  ToProto(*job, response);
  return grpc::Status::OK;
}

grpc::Status TrainingService::WatchJob(grpc::ServerContext* context, const v1::WatchJobRequest* request,
                                       grpc::ServerWriter<v1::JobEvent>* writer) {
  GRAFT_AUTHORIZE(const core::Principal who, auth_, context, "graft.v1.Training/WatchJob");
  GRAFT_CHECK_STRINGS(*request);
  if (auto owned = Find(who, request->id()); !owned.ok()) return ToGrpcStatus(owned.status());
  {
    absl::MutexLock lock(&mu_);
    int& open = watching_[who.name];
    if (open >= max_watch_streams_) {
      return ToGrpcStatus(core::LimitError(
          absl::StatusCode::kResourceExhausted,
          absl::StrCat("principal '", who.name, "' already watches ", open,
                       " jobs (--max_watch_streams_per_principal); close a WatchJob stream first"),
          "max_watch_streams_per_principal"));
    }
    ++open;
  }
  const auto writes = deadlines_.ForWrites(context);
  const absl::Status s = runner_.Watch(
      request->id(), request->progress(),
      [&](const core::JobEvent& e) {
        v1::JobEvent out;
        ToProto(e, &out);
        return StreamWatchdog::Write(*writes, writer, out);
      },
      [&]() { return !context->IsCancelled(); }, request->from_seq());
  {
    absl::MutexLock lock(&mu_);
    if (--watching_[who.name] == 0) watching_.erase(who.name);
  }
  if (writes->expired()) return ToGrpcStatus(writes->Expired("read of the job's events"));
  return ToGrpcStatus(s);
}

}  // namespace graft::server
