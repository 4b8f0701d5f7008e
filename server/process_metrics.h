#pragma once

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <string>
#include <vector>

namespace graft::server {

// The process metrics every Prometheus client library exports (client_golang's
// and client_python's process collector), read from /proc/self at each scrape:
// process_cpu_seconds_total, process_resident_memory_bytes,
// process_virtual_memory_bytes, process_open_fds, process_max_fds,
// process_threads and process_start_time_seconds. With a `data_dir`, also the
// space of the filesystem holding it (graft_data_dir_filesystem_size_bytes,
// graft_data_dir_filesystem_avail_bytes, as node_exporter's
// node_filesystem_*_bytes). A file that cannot be read leaves its metric out.
class ProcessCollector : public prometheus::Collectable {
 public:
  explicit ProcessCollector(std::string data_dir = "") : data_dir_(std::move(data_dir)) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const std::string data_dir_;
};

}  // namespace graft::server
