#pragma once

#include <atomic>

#include "core/data/dataset_store.h"
#include "core/jobs/job_runner.h"
#include "graft/v1/datasets.grpc.pb.h"
#include "server/auth.h"
#include "server/metrics.h"

namespace graft::server {

class DatasetsService final : public v1::Datasets::Service {
 public:
  // `max_uploads`: uploads in progress at once (--max_concurrent_uploads).
  DatasetsService(core::DatasetStore& store, core::JobRunner& runner, Metrics& metrics, const Auth& auth,
                  int max_uploads)
      : store_(store), runner_(runner), metrics_(metrics), auth_(auth), max_uploads_(max_uploads) {}

  grpc::Status UploadDataset(grpc::ServerContext*, grpc::ServerReader<v1::UploadDatasetRequest>*,
                             v1::UploadDatasetResponse*) override;
  grpc::Status ListDatasets(grpc::ServerContext*, const v1::ListDatasetsRequest*, v1::ListDatasetsResponse*) override;
  grpc::Status GetDataset(grpc::ServerContext*, const v1::GetDatasetRequest*, v1::Dataset*) override;
  grpc::Status DeleteDataset(grpc::ServerContext*, const v1::DeleteDatasetRequest*, v1::DeleteDatasetResponse*) override;

 private:
  absl::StatusOr<core::IngestResult> Receive(grpc::ServerContext* ctx, grpc::ServerReader<v1::UploadDatasetRequest>* reader,
                                             const v1::UploadHeader& header, const std::string& staging,
                                             const std::string& owner);
  // By id or by the caller's name for it; PERMISSION_DENIED for another's.
  absl::StatusOr<core::DatasetInfo> Find(const core::Principal& who, const std::string& id_or_name);

  core::DatasetStore& store_;
  core::JobRunner& runner_;
  Metrics& metrics_;
  const Auth& auth_;
  const int max_uploads_;
  std::atomic<int> uploads_{0};
};

}  // namespace graft::server
