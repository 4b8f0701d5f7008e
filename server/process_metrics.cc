#include "server/process_metrics.h"

#include <sys/resource.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

namespace graft::server {
namespace {

namespace fs = std::filesystem;

prometheus::MetricFamily Family(const char* name, const char* help, prometheus::MetricType type, double value) {
  prometheus::MetricFamily family;
  family.name = name;
  family.help = help;
  family.type = type;
  prometheus::ClientMetric metric;
  if (type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  family.metric.push_back(std::move(metric));
  return family;
}

void AddGauge(std::vector<prometheus::MetricFamily>& out, const char* name, const char* help, double value) {
  out.push_back(Family(name, help, prometheus::MetricType::Gauge, value));
}

// /proc/self/stat's fields after the command name (which may hold spaces and
// parentheses, so the line is cut at its last ')'): fields[0] is field 3
// (state) of proc(5).
std::vector<std::string> StatFields() {
  std::ifstream in("/proc/self/stat");
  std::string line;
  if (!std::getline(in, line)) return {};
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return {};
  std::istringstream rest(line.substr(close + 1));
  std::vector<std::string> fields;
  for (std::string f; rest >> f;) fields.push_back(f);
  return fields;
}

// Seconds since the epoch at which the system booted (/proc/stat's btime).
double BootTime() {
  std::ifstream in("/proc/stat");
  for (std::string key; in >> key;) {
    if (key == "btime") {
      double t = 0;
      in >> t;
      return t;
    }
    in.ignore(1 << 20, '\n');
  }
  return 0;
}

}  // namespace

std::vector<prometheus::MetricFamily> ProcessCollector::Collect() const {
  std::vector<prometheus::MetricFamily> out;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  const std::vector<std::string> f = StatFields();
  // proc(5) numbering: utime 14, stime 15, num_threads 20, starttime 22,
  // vsize 23, rss 24; fields[i] is field i + 3.
  if (f.size() > 21 && ticks > 0) {
    try {
      const double cpu = (std::stod(f[11]) + std::stod(f[12])) / ticks;
      out.push_back(Family("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                           prometheus::MetricType::Counter, cpu));
      AddGauge(out, "process_threads", "Number of OS threads in the process.", std::stod(f[17]));
      if (const double boot = BootTime(); boot > 0) {
        AddGauge(out, "process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
                 boot + std::stod(f[19]) / ticks);
      }
      AddGauge(out, "process_virtual_memory_bytes", "Virtual memory size in bytes.", std::stod(f[20]));
      AddGauge(out, "process_resident_memory_bytes", "Resident memory size in bytes.", std::stod(f[21]) * page);
    } catch (const std::exception&) {
      // A malformed /proc line: those metrics are left out of this scrape.
    }
  }
  std::error_code ec;
  double fds = 0;
  for (fs::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end; it.increment(ec)) ++fds;
  // The iterator's own descriptor is among those counted.
  if (!ec) AddGauge(out, "process_open_fds", "Number of open file descriptors.", fds > 0 ? fds - 1 : 0);
  if (rlimit limit{}; getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    AddGauge(out, "process_max_fds", "Maximum number of open file descriptors.",
             limit.rlim_cur == RLIM_INFINITY ? -1 : static_cast<double>(limit.rlim_cur));
  }
  if (struct statvfs disk{}; !data_dir_.empty() && statvfs(data_dir_.c_str(), &disk) == 0) {
    const double block = static_cast<double>(disk.f_frsize);
    AddGauge(out, "graft_data_dir_filesystem_size_bytes", "Size of the filesystem holding --data_dir.",
             static_cast<double>(disk.f_blocks) * block);
    AddGauge(out, "graft_data_dir_filesystem_avail_bytes",
             "Bytes of the filesystem holding --data_dir that graftd may still write (as df's Avail).",
             static_cast<double>(disk.f_bavail) * block);
  }
  return out;
}

}  // namespace graft::server
