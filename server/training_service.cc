#include "server/training_service.h"

#include "server/job_convert.h"
#include "server/status_util.h"

namespace graft::server {

grpc::Status TrainingService::CreateJob(grpc::ServerContext*, const v1::CreateJobRequest* request, v1::Job* response) {
  auto job = runner_.Submit(FromProto(request->spec()));
  if (!job.ok()) return ToGrpcStatus(job.status());
  ToProto(*job, response);
  return grpc::Status::OK;
}

grpc::Status TrainingService::GetJob(grpc::ServerContext*, const v1::GetJobRequest* request, v1::Job* response) {
  auto job = runner_.Get(request->id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  ToProto(*job, response);
  return grpc::Status::OK;
}

grpc::Status TrainingService::ListJobs(grpc::ServerContext*, const v1::ListJobsRequest* request,
                                       v1::ListJobsResponse* response) {
  auto jobs = runner_.List(FromProto(request->state()));
  if (!jobs.ok()) return ToGrpcStatus(jobs.status());
  for (const auto& j : *jobs) ToProto(j, response->add_jobs());
  return grpc::Status::OK;
}

grpc::Status TrainingService::CancelJob(grpc::ServerContext*, const v1::CancelJobRequest* request, v1::Job* response) {
  auto job = runner_.Cancel(request->id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  ToProto(*job, response);
  return grpc::Status::OK;
}

grpc::Status TrainingService::WatchJob(grpc::ServerContext* ctx, const v1::WatchJobRequest* request,
                                       grpc::ServerWriter<v1::JobEvent>* writer) {
  const absl::Status s = runner_.Watch(
      request->id(), request->progress(),
      [&](const core::JobEvent& e) {
        v1::JobEvent out;
        ToProto(e, &out);
        return writer->Write(out);
      },
      [&]() { return !ctx->IsCancelled(); });
  return ToGrpcStatus(s);
}

}  // namespace graft::server
