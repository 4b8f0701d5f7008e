#include "server/server.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/data/dataset_store.h"

namespace graft::server {

absl::Status CheckServerOptions(const ServerOptions& options) {
  if (options.data_dir.empty()) return absl::InvalidArgumentError("--data_dir is required");
  if (options.max_batch_size < 1) return absl::InvalidArgumentError("--max_batch_size must be at least 1");
  if (options.max_queue_delay_us < 0) return absl::InvalidArgumentError("--max_queue_delay_us must not be negative");
  if (options.monitor_window < 0 || options.monitor_window > 1'000'000) {
    return absl::InvalidArgumentError("--monitor_window must be between 0 (no model monitoring) and 1000000");
  }
  if (!(options.monitor_window_s >= 0 && options.monitor_window_s <= 1e9)) {
    return absl::InvalidArgumentError("--monitor_window_s must be between 0 (no age bound) and 1e9");
  }
  if (options.prediction_quota_bytes < 0) {
    return absl::InvalidArgumentError("--prediction_quota_bytes must be >= 0");
  }
  if (!(options.prediction_records_per_minute > 0 && options.prediction_records_per_minute <= 1e6)) {
    return absl::InvalidArgumentError("--prediction_records_per_minute must lie in (0, 1000000]");
  }
  if (!(options.prediction_retention_s > 0)) {
    return absl::InvalidArgumentError("--prediction_retention_s must be > 0");
  }
  if (options.shadow_queue_images < 0 || options.shadow_queue_images > 1'000'000) {
    return absl::InvalidArgumentError("--shadow_queue_images must be between 0 (no shadowing) and 1000000");
  }
  if (options.monitor_max_classes < 0 || options.monitor_max_classes > 1000) {
    return absl::InvalidArgumentError("--monitor_max_classes must be between 0 and 1000");
  }
  if (options.idle_rpc_threads < 1) return absl::InvalidArgumentError("--idle_rpc_threads must be at least 1");
  if (options.search_trials_at_once < 0 || options.search_trials_at_once > 256) {
    return absl::InvalidArgumentError("--search_trials_at_once must be between 0 (the cores) and 256");
  }
  if (options.decode_prefetch_batches < 0 || options.decode_prefetch_batches > 64) {
    return absl::InvalidArgumentError("--decode_prefetch_batches must be between 0 and 64");
  }
  if (options.auth != "tokens" && options.auth != "none") {
    return absl::InvalidArgumentError(absl::StrCat("--auth must be tokens or none, got '", options.auth, "'"));
  }
  if (options.max_images_per_request < 1) return absl::InvalidArgumentError("--max_images_per_request must be at least 1");
  if (options.max_dataset_classes < 2 || options.max_dataset_classes > static_cast<int64_t>(core::DatasetStore::kMaxClasses)) {
    return absl::InvalidArgumentError(absl::StrCat("--max_dataset_classes must be 2..", core::DatasetStore::kMaxClasses,
                                                   ", got ", options.max_dataset_classes));
  }
  if (options.max_job_restarts < 0) return absl::InvalidArgumentError("--max_job_restarts must be at least 0");
  if (options.max_string_field_bytes < 256) {
    return absl::InvalidArgumentError("--max_string_field_bytes must be at least 256");
  }
  if (options.max_models_per_predict < 1) return absl::InvalidArgumentError("--max_models_per_predict must be at least 1");
  if (options.max_queued_jobs_per_principal < 1) {
    return absl::InvalidArgumentError("--max_queued_jobs_per_principal must be at least 1");
  }
  if (options.max_watch_streams_per_principal < 1) {
    return absl::InvalidArgumentError("--max_watch_streams_per_principal must be at least 1");
  }
  if (options.max_request_pixels < 1) return absl::InvalidArgumentError("--max_request_pixels must be at least 1");
  if (options.max_decode_bytes < 1) return absl::InvalidArgumentError("--max_decode_bytes must be at least 1");
  if (options.max_concurrent_uploads < 1) return absl::InvalidArgumentError("--max_concurrent_uploads must be at least 1");
  for (const auto& [flag, value] : {std::pair<const char*, int>{"--max_uploads_per_principal", options.max_uploads_per_principal},
                                    {"--max_evaluations_per_principal", options.max_evaluations_per_principal},
                                    {"--max_lr_finds_per_principal", options.max_lr_finds_per_principal}}) {
    if (value < 1) return absl::InvalidArgumentError(absl::StrCat(flag, " must be at least 1"));
  }
  if (!(options.max_archive_seconds >= 0)) return absl::InvalidArgumentError("--max_archive_seconds must be 0 (none) or more");
  if (options.max_running_jobs_per_principal < 0) {
    return absl::InvalidArgumentError("--max_running_jobs_per_principal must be 0 (no cap) or more");
  }
  for (const auto& [flag, value] : {std::pair<const char*, double>{"--upload_idle_timeout_s", options.upload_idle_timeout_s},
                                    {"--stream_write_timeout_s", options.stream_write_timeout_s}}) {
    if (!(value >= 0 && value <= 86400)) {
      return absl::InvalidArgumentError(absl::StrCat(flag, " must be 0 (none) to 86400 seconds"));
    }
  }
  if (options.dist_port < 0 || options.dist_port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("--dist_port must be 0..65535, got ", options.dist_port));
  }
  if (!(options.dist_timeout_s >= 1 && options.dist_timeout_s <= 86400)) {
    return absl::InvalidArgumentError(absl::StrCat("--dist_timeout_s must be 1..86400, got ", options.dist_timeout_s));
  }
  if (options.max_message_bytes < 1024 || options.max_message_bytes > (int64_t{1} << 31) - 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_message_bytes must be 1024..2147483647, got ", options.max_message_bytes));
  }
  if (options.max_http_body_budget_bytes < options.max_message_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("--max_http_body_budget_bytes must be at least --max_message_bytes (",
                                                   options.max_message_bytes, "), got ",
                                                   options.max_http_body_budget_bytes));
  }
  if (options.max_http_connections < 1 || options.http_request_timeout_s < 1 || options.http_idle_timeout_s < 1) {
    return absl::InvalidArgumentError(
        "--max_http_connections, --http_request_timeout_s and --http_idle_timeout_s must be at least 1");
  }
  if (options.job_heartbeat_s <= 0 || options.job_takeover_s < 2 * options.job_heartbeat_s) {
    return absl::InvalidArgumentError(
        "--job_takeover_s must be at least twice --job_heartbeat_s (and --job_heartbeat_s above 0)");
  }
  if (options.decode_on != "auto" && options.decode_on != "batcher" && options.decode_on != "callers") {
    return absl::InvalidArgumentError(
        absl::StrCat("--decode_on must be auto, batcher or callers, got '", options.decode_on, "'"));
  }
  return absl::OkStatus();
}

}  // namespace graft::server
