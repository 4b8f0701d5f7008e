#pragma once

#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "core/jobs/job_runner.h"
#include "graft/v1/training.grpc.pb.h"
#include "server/auth.h"
#include "server/stream_watchdog.h"

namespace graft::server {

class TrainingService final : public v1::Training::Service {
 public:
  // `max_watch_streams` open WatchJob streams per principal (each holds a thread).
  TrainingService(core::JobRunner& runner, const Auth& auth, int max_watch_streams, StreamDeadlines deadlines = {})
      : runner_(runner), auth_(auth), max_watch_streams_(max_watch_streams), deadlines_(deadlines) {}

  grpc::Status CreateJob(grpc::ServerContext*, const v1::CreateJobRequest*, v1::Job*) override;
  grpc::Status Retrain(grpc::ServerContext*, const v1::RetrainRequest*, v1::Job*) override;
  grpc::Status GetJob(grpc::ServerContext*, const v1::GetJobRequest*, v1::Job*) override;
  grpc::Status ListJobs(grpc::ServerContext*, const v1::ListJobsRequest*, v1::ListJobsResponse*) override;
  grpc::Status CancelJob(grpc::ServerContext*, const v1::CancelJobRequest*, v1::Job*) override;
  grpc::Status FindLearningRate(grpc::ServerContext* context, const v1::FindLearningRateRequest* request,
                                v1::LearningRateCurve* response) override;
  grpc::Status WatchJob(grpc::ServerContext*, const v1::WatchJobRequest*, grpc::ServerWriter<v1::JobEvent>*) override;

 private:
  // The job, when `who` owns it (or is an admin).
  absl::StatusOr<core::JobRecord> Find(const core::Principal& who, const std::string& id);

  core::JobRunner& runner_;
  const Auth& auth_;
  const int max_watch_streams_;
  const StreamDeadlines deadlines_;
  absl::Mutex mu_;
  std::map<std::string, int> watching_ ABSL_GUARDED_BY(mu_);  // open WatchJob streams per principal
};

}  // namespace graft::server
