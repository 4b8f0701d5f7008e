#pragma once

#include "core/jobs/job_runner.h"
#include "graft/v1/training.grpc.pb.h"

namespace graft::server {

class TrainingService final : public v1::Training::Service {
 public:
  explicit TrainingService(core::JobRunner& runner) : runner_(runner) {}

  grpc::Status CreateJob(grpc::ServerContext*, const v1::CreateJobRequest*, v1::Job*) override;
  grpc::Status GetJob(grpc::ServerContext*, const v1::GetJobRequest*, v1::Job*) override;
  grpc::Status ListJobs(grpc::ServerContext*, const v1::ListJobsRequest*, v1::ListJobsResponse*) override;
  grpc::Status CancelJob(grpc::ServerContext*, const v1::CancelJobRequest*, v1::Job*) override;
  grpc::Status WatchJob(grpc::ServerContext*, const v1::WatchJobRequest*, grpc::ServerWriter<v1::JobEvent>*) override;

 private:
  core::JobRunner& runner_;
};

}  // namespace graft::server
