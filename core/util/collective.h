#pragma once

// Data-parallel training's process group: N trainer processes (ranks) that
// rendezvous through a key-value store rank 0 serves (c10d's TCPStore) and
// all-reduce over Gloo (c10d's ProcessGroupGloo). The c10d and Gloo types
// stay in collective.cc; what differs between LibTorch 1.13 and 2.x there is
// in torch_compat_c10d.h.

#include <torch/types.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace graft::core {

// Rank 0's rendezvous store, listening on host:port (0: a free port).
class Rendezvous {
 public:
  static absl::StatusOr<std::unique_ptr<Rendezvous>> Serve(const std::string& host, int port, double timeout_s);
  ~Rendezvous();
  Rendezvous(const Rendezvous&) = delete;
  Rendezvous& operator=(const Rendezvous&) = delete;
  const std::string& host() const;
  int port() const;

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  explicit Rendezvous(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct GroupOptions {
  std::string store_host;  // rank 0's Rendezvous
  int store_port = 0;
  std::string own_host;  // where this rank accepts its peers' connections
  std::string prefix;    // the group's keys in the store (a job and its attempt)
  int rank = 0;
  int size = 1;
  // Joining waits this long for every rank; each collective, for the slowest.
  double timeout_s = 300;
  // Told each all-reduce's seconds and bytes (metrics); may be empty.
  std::function<void(double seconds, int64_t bytes)> on_all_reduce;
};

class Collective {
 public:
  virtual ~Collective() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Sums `t` over every rank in place (a contiguous CPU tensor of float,
  // double or int64); UNAVAILABLE naming the failure when a rank died,
  // timed out or the connection broke. After a failure the group is spent.
  virtual absl::Status AllReduceSum(torch::Tensor& t) = 0;
};

// Joins the group: blocks until all `size` ranks are connected or
// `timeout_s` passed (DEADLINE_EXCEEDED). Rank 0 passes the Rendezvous it
// serves; the others connect to store_host:store_port.
absl::StatusOr<std::unique_ptr<Collective>> JoinGroup(const GroupOptions& options, Rendezvous* served);

}  // namespace graft::core
