#pragma once

#include "core/data/dataset_store.h"
#include "core/jobs/job_runner.h"
#include "core/util/shared_slots.h"
#include "graft/v1/datasets.grpc.pb.h"
#include "server/auth.h"
#include "server/metrics.h"
#include "server/stream_watchdog.h"

namespace graft::server {

class DatasetsService final : public v1::Datasets::Service {
 public:
  // `max_uploads`: uploads in progress at once (--max_concurrent_uploads),
  // `per_principal` of them by one principal (--max_uploads_per_principal).
  DatasetsService(core::DatasetStore& store, core::JobRunner& runner, Metrics& metrics, const Auth& auth,
                  int max_uploads, int per_principal, StreamDeadlines deadlines = {})
      : store_(store),
        runner_(runner),
        metrics_(metrics),
        auth_(auth),
        deadlines_(deadlines),
        uploads_({"uploads", max_uploads, "--max_concurrent_uploads", per_principal, "--max_uploads_per_principal"}) {}

  grpc::Status UploadDataset(grpc::ServerContext*, grpc::ServerReader<v1::UploadDatasetRequest>*,
                             v1::UploadDatasetResponse*) override;
  grpc::Status ListDatasets(grpc::ServerContext*, const v1::ListDatasetsRequest*, v1::ListDatasetsResponse*) override;
  grpc::Status GetDataset(grpc::ServerContext*, const v1::GetDatasetRequest*, v1::Dataset*) override;
  grpc::Status DeleteDataset(grpc::ServerContext*, const v1::DeleteDatasetRequest*, v1::DeleteDatasetResponse*) override;

 private:
  absl::StatusOr<core::IngestResult> Receive(grpc::ServerContext* ctx, grpc::ServerReader<v1::UploadDatasetRequest>* reader,
                                             const v1::UploadHeader& header, const std::string& owner,
                                             StreamWatchdog::Watch& idle);
  // By id or by the caller's name for it; PERMISSION_DENIED for another's.
  absl::StatusOr<core::DatasetInfo> Find(const core::Principal& who, const std::string& id_or_name);

  core::DatasetStore& store_;
  core::JobRunner& runner_;
  Metrics& metrics_;
  const Auth& auth_;
  const StreamDeadlines deadlines_;
  core::SharedSlots uploads_;
};

}  // namespace graft::server
