// JobRunner's data-parallel jobs (JobSpec::workers > 1): the job's holder
// is rank 0 of a group of trainer processes that rendezvous through its
// store and all-reduce over Gloo (core/util/collective.h); other trainers
// join by claiming ranks in the database.

#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/jobs/job_runner.h"
#include "core/train/job_cost.h"
#include "core/util/collective.h"
#include "core/util/log.h"
#include "core/util/status_macros.h"

namespace graft::core {
namespace {

// Groups opened for one run of a job before it fails: a rank that keeps
// dying is not retried for ever.
constexpr int kGroupAttempts = 3;

std::string Plural(int n, const std::string& word) { return absl::StrCat(n, " ", word, n == 1 ? "" : "s"); }

}  // namespace

absl::StatusOr<TrainedModel> JobRunner::TrainInGroup(JobRecord& job, TrainInput& input, const CancellationToken& token,
                                                     TrainEvents& events) {
  const int size = job.spec.workers;
  const auto record = [&](const std::string& reason) {
    JobEvent e;
    e.type = JobEventType::kState;
    e.state = JobState::kRunning;
    e.reason = reason;
    if (auto s = Record(job, e); !s.ok()) ABSL_LOG(ERROR) << "job " << job.id << ": " << s.status().message();
  };
  for (int attempt = 1;; ++attempt) {
    ASSIGN_OR_RETURN(auto rendezvous,
                     Rendezvous::Serve(options_.dist_host, options_.dist_port, options_.dist_timeout_s));
    const std::string address = absl::StrCat(rendezvous->host(), ":", rendezvous->port());
    ASSIGN_OR_RETURN(const int64_t generation, jobs_.OpenGroup(job.id, options_.worker_id, address, size));
    record(absl::StrCat("waiting for ", Plural(size - 1, "more trainer"), " to join (workers: ", size, "; group ",
                        generation, " at ", address, ")"));
    // The ranks claim their places in the database first: waiting here
    // sees a cancel at once, where Gloo's rendezvous would block.
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(static_cast<int64_t>(options_.dist_timeout_s * 1000));
    std::vector<std::string> members;
    while (true) {
      ASSIGN_OR_RETURN(members, jobs_.GroupMembers(job.id, generation));
      if (static_cast<int>(members.size()) >= size - 1 || token.cancelled() ||
          std::chrono::steady_clock::now() > deadline) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (static_cast<int>(members.size()) < size - 1) {
      (void)jobs_.CloseGroup(job.id);
      const char* outcome = token.stop_requested() ? "stopped" : token.cancelled() ? "cancelled" : "too_few_trainers";
      if (observer_) observer_->OnGroupEnded(outcome);
      if (token.stop_requested()) return absl::UnavailableError("stopped while waiting for the group's trainers");
      if (token.cancelled()) return absl::CancelledError("cancelled while waiting for the group's trainers");
      return absl::DeadlineExceededError(
          absl::StrCat("workers: ", size, " asked for ", Plural(size, "trainer"), ", but only ",
                       Plural(static_cast<int>(members.size()) + 1, "trainer"), " joined within --dist_timeout_s=",
                       options_.dist_timeout_s, " s; start more trainers (graftd --train) or ask for fewer workers"));
    }
    std::vector<std::string> ranks{absl::StrCat(options_.worker_id, " (rank 0)")};
    for (size_t r = 0; r < members.size(); ++r) ranks.push_back(absl::StrCat(members[r], " (rank ", r + 1, ")"));
    GroupOptions g;
    g.store_host = rendezvous->host();
    g.store_port = rendezvous->port();
    g.own_host = options_.dist_host;
    g.prefix = absl::StrCat(job.id, "/", generation, "/");
    g.rank = 0;
    g.size = size;
    g.timeout_s = options_.dist_timeout_s;
    g.on_all_reduce = AllReduceObserver();
    auto group = JoinGroup(g, rendezvous.get());
    absl::StatusOr<TrainedModel> trained = absl::UnknownError("not trained");
    if (!group.ok()) {
      trained = group.status();
    } else {
      record(absl::StrCat("data-parallel group ", generation, " of ", size, ": ", absl::StrJoin(ranks, ", ")));
      input.collective = group->get();
      trained = Train(input, token, events);
      input.collective = nullptr;
      if (trained.ok()) {
        record(absl::StrCat("group ", generation, " done; rank 0 read ", trained->images_read, " of ",
                            input.images.size(), " images"));
      }
    }
    (void)jobs_.CloseGroup(job.id);
    const bool group_failed = !trained.ok() && !token.cancelled() &&
                              (absl::IsUnavailable(trained.status()) || absl::IsDeadlineExceeded(trained.status()));
    if (observer_) {
      const char* outcome = trained.ok()             ? "done"
                            : group_failed           ? "failed"
                            : token.stop_requested() ? "stopped"
                            : token.cancelled()      ? "cancelled"
                                                     : "job_error";
      observer_->OnGroupEnded(outcome);
    }
    if (!group_failed) return trained;
    if (attempt >= kGroupAttempts) {
      return absl::UnavailableError(absl::StrCat("the data-parallel group failed ", kGroupAttempts,
                                                 " times; the last: ", trained.status().message()));
    }
    record(absl::StrCat(trained.status().message(), "; resuming from the last checkpoint in a new group (attempt ",
                        attempt + 1, " of ", kGroupAttempts, ")"));
  }
}

std::function<void(double, int64_t)> JobRunner::AllReduceObserver() const {
  if (observer_ == nullptr) return nullptr;
  return [observer = observer_](double seconds, int64_t bytes) { observer->OnAllReduce(seconds, bytes); };
}

void JobRunner::ExecuteRank(const JobStore::RankClaim& claim) {
  const std::string& id = claim.job_id;
  std::shared_ptr<CancellationToken> token;
  {
    absl::MutexLock lock(&mu_);
    token = ranks_[id];
  }
  const std::string me = absl::StrCat("job ", id, " rank ", claim.rank, " of ", claim.size, ": ");
  auto job = jobs_.Get(id);
  if (!job.ok()) {
    ABSL_LOG(WARNING) << me << job.status().message();
    return;
  }
  // Rank 0 fetched the weights before it opened the group.
  const auto cancelled = [&] { return token->cancelled(); };
  auto resident = zoo_.Resident(job->spec.backbone, cancelled);
  TrainInput input;
  DatasetInfo dataset;
  absl::Status ready = resident.status();
  if (ready.ok()) {
    input.resident = *resident;
    ready = FillInput(*job, input, dataset);
  }
  if (!ready.ok()) {  // rank 0 waits for another trainer, or times out
    ABSL_LOG(WARNING) << me << "not joining: " << ready.message();
    return;
  }
  const auto cost = EstimateJobCost(job->spec, **resident, input.num_classes);
  auto charge = zoo_.Charge(DeviceLedger::Kind::kJob, cost.ok() ? cost->total_bytes : 0);
  std::shared_ptr<DeviceLedger::Charge> cache_charge;
  input.on_cache_in_memory = [&](int64_t bytes) { cache_charge = zoo_.Charge(DeviceLedger::Kind::kJob, bytes); };
  input.write_checkpoints = false;
  GroupOptions g;
  const size_t colon = claim.address.rfind(':');
  g.store_host = claim.address.substr(0, colon);
  g.store_port = colon == std::string::npos ? 0 : std::atoi(claim.address.c_str() + colon + 1);
  g.own_host = options_.dist_host;
  g.prefix = absl::StrCat(id, "/", claim.generation, "/");
  g.rank = claim.rank;
  g.size = claim.size;
  g.timeout_s = options_.dist_timeout_s;
  g.on_all_reduce = AllReduceObserver();
  auto group = JoinGroup(g, nullptr);
  if (!group.ok()) {
    ABSL_LOG(WARNING) << me << group.status().message();
    return;
  }
  input.collective = group->get();
  ABSL_LOG(INFO) << me << "training " << job->spec.backbone << " on " << dataset.name;
  TrainEvents silent;
  auto trained = Train(input, *token, silent);
  if (trained.ok()) {
    ABSL_LOG(INFO) << me << "done; read " << trained->images_read << " of " << input.images.size() << " images";
  } else {
    ABSL_LOG(WARNING) << me << trained.status().message();
  }
}

}  // namespace graft::core
