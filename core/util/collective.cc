#include "core/util/collective.h"

#include <chrono>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include "absl/strings/str_cat.h"
#include "core/util/torch_compat_c10d.h"

namespace graft::core {
namespace {

std::chrono::milliseconds Millis(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

class GlooCollective : public Collective {
 public:
  GlooCollective(c10::intrusive_ptr<c10d::Store> store, c10::intrusive_ptr<c10d::ProcessGroupGloo> group, int rank,
                 int size, std::chrono::milliseconds timeout,
                 std::function<void(double seconds, int64_t bytes)> on_all_reduce)
      : store_(std::move(store)),
        group_(std::move(group)),
        rank_(rank),
        size_(size),
        timeout_(timeout),
        on_all_reduce_(std::move(on_all_reduce)) {}

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  absl::Status AllReduceSum(torch::Tensor& t) override {
    if (broken_) return absl::UnavailableError("the data-parallel group failed earlier");
    const auto start = std::chrono::steady_clock::now();
    try {
      std::vector<at::Tensor> tensors{t};
      auto work = group_->allreduce(tensors);
      if (!work->wait(timeout_)) {
        broken_ = true;
        return absl::UnavailableError("all-reduce did not complete");
      }
      if (on_all_reduce_) {
        on_all_reduce_(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                       t.numel() * static_cast<int64_t>(t.element_size()));
      }
      return absl::OkStatus();
    } catch (const std::exception& e) {
      broken_ = true;
      return absl::UnavailableError(absl::StrCat("all-reduce across ", size_, " trainers failed: ", e.what()));
    }
  }

 private:
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;
  int rank_, size_;
  std::chrono::milliseconds timeout_;
  std::function<void(double seconds, int64_t bytes)> on_all_reduce_;
  bool broken_ = false;
};

// c10d's messages carry a C++ backtrace after the first line.
std::string FirstLine(const std::string& what) { return what.substr(0, what.find('\n')); }

}  // namespace

struct Rendezvous::Impl {
  std::string host;
  c10::intrusive_ptr<c10d::TCPStore> store;
};

Rendezvous::Rendezvous(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Rendezvous::~Rendezvous() = default;
const std::string& Rendezvous::host() const { return impl_->host; }
int Rendezvous::port() const { return impl_->store->getPort(); }

absl::StatusOr<std::unique_ptr<Rendezvous>> Rendezvous::Serve(const std::string& host, int port, double timeout_s) {
  try {
    auto impl = std::make_unique<Impl>();
    impl->host = host;
    impl->store = c10::make_intrusive<c10d::TCPStore>(host, compat::StoreOptions(true, port, Millis(timeout_s)));
    return std::unique_ptr<Rendezvous>(new Rendezvous(std::move(impl)));
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("serving the data-parallel rendezvous on ", host, ":", port, ": ", FirstLine(e.what())));
  }
}

absl::StatusOr<std::unique_ptr<Collective>> JoinGroup(const GroupOptions& o, Rendezvous* served) {
  if (o.size < 1 || o.rank < 0 || o.rank >= o.size) {
    return absl::InvalidArgumentError(absl::StrCat("rank ", o.rank, " of a group of ", o.size));
  }
  const auto timeout = Millis(o.timeout_s);
  try {
    c10::intrusive_ptr<c10d::Store> base;
    if (served != nullptr) {
      base = served->impl().store;
    } else {
      base = c10::make_intrusive<c10d::TCPStore>(o.store_host, compat::StoreOptions(false, o.store_port, timeout));
    }
    auto store = c10::make_intrusive<c10d::PrefixStore>(o.prefix, base);
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(o.own_host));
    options->threads = 1;
    auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, o.rank, o.size, options);
    return std::unique_ptr<Collective>(new GlooCollective(store, group, o.rank, o.size, timeout, o.on_all_reduce));
  } catch (const std::exception& e) {
    const std::string what = FirstLine(e.what());
    const bool timed_out = what.find("imeout") != std::string::npos || what.find("imed out") != std::string::npos;
    const std::string message = absl::StrCat("joining the data-parallel group as rank ", o.rank, " of ", o.size,
                                             " (store ", o.store_host, ":", o.store_port, "): ", what);
    return timed_out ? absl::DeadlineExceededError(message) : absl::UnavailableError(message);
  }
}

}  // namespace graft::core
