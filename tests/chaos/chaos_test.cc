// The kill -9 campaign: a seeded driver runs a mixed workload against graftd
// (folder and archive uploads, head and top:N fine-tuning jobs, predicts,
// model and dataset deletes, custom backbone registration), SIGKILLs graftd
// at a random moment, restarts it, and checks after every kill that nothing
// acknowledged was lost or corrupted:
//   - every acknowledged dataset is there with all its images, and every one
//     of its blobs is on disk with its SHA-256;
//   - every acknowledged model predicts exactly as before the kill;
//   - no job stays RUNNING (it resumes to an end, or FAILED with a reason),
//     and every job's events are gapless (seq 1..n);
//   - no staging, cache, temporary or orphan checkpoint files, no orphan blobs;
//   - PRAGMA integrity_check is ok.
// GRAFT_CHAOS_KILLS (default 10; the README records 50) and GRAFT_CHAOS_SEED
// (default 1) choose the campaign.

#include <gtest/gtest.h>
#include <openssl/sha.h>
#include <signal.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "client/client.h"
#include "core/util/files.h"
#include "tests/testing/archive_writer.h"
#include "tests/testing/graftd_process.h"
#include "tests/testing/paths.h"
#include "tests/testing/temp_dir.h"

namespace graft {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::atoi(v) : fallback;
}

std::string Sha256Hex(const std::string& data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : md) {
    out += hex[c >> 4];
    out += hex[c & 15];
  }
  return out;
}

// What graftd acknowledged: it must all survive every kill.
struct Acknowledged {
  std::mutex mu;
  std::map<std::string, int> datasets;           // name -> images
  std::map<std::string, v1::PredictResponse> models;  // id -> its answer on the probe image
  std::set<std::string> jobs;
};

class Chaos : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = dir_.Join("data");
    graftd_ = std::make_unique<graft::testing::GraftdProcess>(data_, dir_.Join("graftd.log"));
    // Mid-epoch checkpoints often, so that kills land on every kind of state.
    flags_ = {"--checkpoint_interval_s=0.5", "--max_queued_jobs=64", "--max_queued_jobs_per_principal=64"};
    ASSERT_TRUE(graftd_->Start(flags_)) << graftd_->log();
    probe_ = core::ReadFile(graft::testing::SharedDir() + "/images/dog.jpg").value();
    const std::string cmd = graft::testing::Python() + " " + graft::testing::SourceDir() +
                            "/tests/integration/make_torchscript.py " + dir_.Join("scripts") + " " +
                            graft::testing::WeightsDir() + " > /dev/null 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    tiny_ = core::ReadFile(dir_.Join("scripts/tiny_pooled.pt")).value();
  }

  std::unique_ptr<client::GraftClient> Client() {
    client::ClientOptions o;
    o.token = graftd_->admin_token();
    return std::make_unique<client::GraftClient>(graftd_->address(), o);
  }

  // A small dataset of `n` coloured images per class, as a folder or archive.
  std::string MakeDataset(std::mt19937& rng, bool archive, int n) {
    const std::string name = "src" + std::to_string(made_++);
    std::vector<graft::testing::ArchiveEntry> entries;
    for (int c = 0; c < 2; ++c) {
      for (int i = 0; i < n; ++i) {
        const int shade = static_cast<int>(rng() % 60);
        entries.push_back({(c == 0 ? "red/" : "blue/") + std::to_string(i) + ".png",
                           graft::testing::EncodeImage("png", 24 + i % 8, 24, c == 0 ? shade : 200, 40,
                                                       c == 0 ? 200 : shade),
                           ""});
      }
    }
    if (archive) {
      const std::string path = dir_.Join(name + ".tar.gz");
      EXPECT_TRUE(graft::testing::WriteArchive(path, "tar.gz", entries));
      return path;
    }
    const std::string path = dir_.Join(name);
    for (const auto& e : entries) {
      fs::create_directories(fs::path(path + "/" + e.path).parent_path());
      EXPECT_TRUE(core::WriteFileAtomic(path + "/" + e.path, e.data).ok());
    }
    return path;
  }

  v1::JobSpec Spec(const std::string& dataset, bool top) {
    v1::JobSpec spec;
    spec.set_backbone("mobilenet_v2");
    spec.set_dataset(dataset);
    spec.set_input_size(64);
    spec.set_batch_size(8);
    spec.mutable_augmentation()->set_horizontal_flip(true);  // uncached: every batch runs the backbone
    auto* stage = spec.add_stages();
    stage->set_epochs(3);
    if (top) {
      stage->set_train("top:2");
      stage->mutable_optimizer()->set_kind(v1::OPTIMIZER_SGD);
      stage->mutable_optimizer()->set_learning_rate(1e-3f);
    }
    return spec;
  }

  v1::PredictRequest ProbeRequest(const std::string& model) {
    v1::PredictRequest r;
    r.add_models(model);
    r.add_images()->set_encoded(probe_);
    return r;
  }

  // One round of work, cut short by a SIGKILL after `kill_after`.
  void Round(std::mt19937& rng, Acknowledged& ack, std::chrono::milliseconds kill_after) {
    std::vector<std::thread> workers;
    std::atomic<bool> killed{false};
    const int actions = 3 + static_cast<int>(rng() % 3);
    for (int a = 0; a < actions; ++a) {
      const int kind = static_cast<int>(rng() % 7);
      const uint32_t seed = rng();
      std::string dataset_source;
      if (kind <= 1) dataset_source = MakeDataset(rng, kind == 1, 6 + static_cast<int>(rng() % 10));
      workers.emplace_back([this, kind, seed, dataset_source, &ack, &killed]() {
        std::mt19937 local(seed);
        auto c = Client();
        std::vector<std::string> names, models;
        {
          std::lock_guard<std::mutex> lock(ack.mu);
          for (const auto& [n, _] : ack.datasets) names.push_back(n);
          for (const auto& [m, _] : ack.models) models.push_back(m);
        }
        switch (kind) {
          case 0:
          case 1: {  // upload (folder or archive)
            const std::string name = "ds" + std::to_string(seed % 100000);
            auto up = c->UploadDataset(dataset_source, name);
            if (up.ok()) {
              std::lock_guard<std::mutex> lock(ack.mu);
              ack.datasets[name] = up->dataset().train_images() + up->dataset().val_images();
            }
            break;
          }
          case 2:
          case 3: {  // a fine-tuning job, head or top:2; its model once it ends
            if (names.empty()) break;
            auto job = c->CreateJob(Spec(names[local() % names.size()], kind == 3));
            if (!job.ok()) break;
            {
              std::lock_guard<std::mutex> lock(ack.mu);
              ack.jobs.insert(job->id());
            }
            (void)c->WatchJob(job->id(), false, [&](const v1::JobEvent&) { return !killed; });
            auto ended = c->GetJob(job->id());
            if (!ended.ok() || ended->state() != v1::JOB_STATE_SUCCEEDED) break;
            auto answer = c->Predict(ProbeRequest(ended->model_id()));
            if (answer.ok()) {
              std::lock_guard<std::mutex> lock(ack.mu);
              ack.models[ended->model_id()] = *answer;
            }
            break;
          }
          case 4: {  // predicts with the ImageNet head
            v1::PredictRequest r;
            r.set_backbone("mobilenet_v2");
            r.add_images()->set_encoded(probe_);
            for (int i = 0; i < 5 && !killed; ++i) (void)c->Predict(r);
            break;
          }
          case 5: {  // delete a model or a dataset
            if (!models.empty() && local() % 2 == 0) {
              const std::string m = models[local() % models.size()];
              {  // no longer promised, whether or not the kill cuts the delete short
                std::lock_guard<std::mutex> lock(ack.mu);
                ack.models.erase(m);
              }
              (void)c->DeleteModel(m);
            } else if (!names.empty()) {
              const std::string n = names[local() % names.size()];
              // Deleted or not, it is no longer promised: a delete the kill
              // cut short may have happened.
              {
                std::lock_guard<std::mutex> lock(ack.mu);
                ack.datasets.erase(n);
              }
              (void)c->DeleteDataset(n);
            }
            break;
          }
          case 6: {  // register a custom TorchScript backbone, then unregister it
            v1::RegisterBackboneRequest r;
            r.set_name("tiny" + std::to_string(seed % 1000));
            r.set_torchscript(tiny_);
            r.set_feature_dim(16);
            if (c->RegisterBackbone(r).ok() && local() % 2 == 0) (void)c->UnregisterBackbone(r.name());
            break;
          }
        }
      });
    }
    std::this_thread::sleep_for(kill_after);
    killed = true;
    graftd_->Stop(SIGKILL);
    for (auto& w : workers) w.join();
  }

  // Everything promised is there and whole; nothing else is left behind.
  void Check(Acknowledged& ack, int kill) {
    SCOPED_TRACE("after kill " + std::to_string(kill));
    auto c = Client();
    // Jobs first (every job, acknowledged or not): none stays RUNNING, each
    // ends, events are gapless.
    auto all = c->ListJobs();
    ASSERT_TRUE(all.ok()) << all.status();
    for (const v1::Job& listed : all->jobs()) {
      const std::string& id = listed.id();
      std::vector<int64_t> seqs;
      const auto deadline = Clock::now() + std::chrono::minutes(5);
      ASSERT_TRUE(c->WatchJob(id, false, [&](const v1::JobEvent& e) {
                     seqs.push_back(e.seq());
                     return Clock::now() < deadline;
                   }).ok());
      auto job = c->GetJob(id);
      ASSERT_TRUE(job.ok()) << job.status();
      EXPECT_TRUE(job->state() == v1::JOB_STATE_SUCCEEDED || job->state() == v1::JOB_STATE_FAILED ||
                  job->state() == v1::JOB_STATE_CANCELLED)
          << id << " state " << job->state();
      if (job->state() == v1::JOB_STATE_FAILED) {
        EXPECT_FALSE(job->error().empty()) << id;
      }
      for (size_t i = 0; i < seqs.size(); ++i) ASSERT_EQ(seqs[i], static_cast<int64_t>(i + 1)) << id;
      if (job->state() == v1::JOB_STATE_SUCCEEDED && !job->model_id().empty() && !ack.models.count(job->model_id())) {
        // Succeeded while its watcher was cut off: its model is promised from now on.
        auto answer = c->Predict(ProbeRequest(job->model_id()));
        if (answer.ok()) ack.models[job->model_id()] = *answer;
      }
    }
    for (const auto& [name, images] : ack.datasets) {
      auto d = c->GetDataset(name);
      ASSERT_TRUE(d.ok()) << name << ": " << d.status();
      EXPECT_EQ(d->train_images() + d->val_images(), images) << name;
    }
    for (const auto& [id, before] : ack.models) {
      auto after = c->Predict(ProbeRequest(id));
      ASSERT_TRUE(after.ok()) << id << ": " << after.status();
      const auto& a = after->results(0).predictions(0).top(0);
      const auto& b = before.results(0).predictions(0).top(0);
      EXPECT_EQ(a.index(), b.index()) << id;
      EXPECT_NEAR(a.probability(), b.probability(), 1e-5) << id;
    }
    // On disk: no staging, cache, temporaries; checkpoints only of live jobs.
    int leftovers = 0;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(data_, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      const std::string p = it->path().string();
      if (!it->is_regular_file()) continue;
      const bool stray = p.find("/datasets/staging/") != std::string::npos || p.find("/cache/") != std::string::npos ||
                         p.find(".tmp") != std::string::npos || p.find("/checkpoints/") != std::string::npos;
      if (stray) {
        ADD_FAILURE() << "left behind: " << p;
        ++leftovers;
      }
    }
    // The database: intact, and its blobs exactly the files on disk.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open_v2((data_ + "/graft.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    sqlite3_stmt* q = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &q, nullptr), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
    EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(q, 0)), "ok");
    sqlite3_finalize(q);
    std::set<std::string> referenced;
    ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT DISTINCT sha256 FROM dataset_images", -1, &q, nullptr), SQLITE_OK);
    while (sqlite3_step(q) == SQLITE_ROW) referenced.insert(reinterpret_cast<const char*>(sqlite3_column_text(q, 0)));
    sqlite3_finalize(q);
    sqlite3_close(db);
    std::set<std::string> on_disk;
    for (auto it = fs::recursive_directory_iterator(data_ + "/datasets/blobs", ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_regular_file()) on_disk.insert(it->path().filename().string());
    }
    EXPECT_EQ(on_disk, referenced) << "orphan or missing blobs";
    for (const std::string& sha : referenced) {
      const auto bytes = core::ReadFile(data_ + "/datasets/blobs/" + sha.substr(0, 2) + "/" + sha);
      ASSERT_TRUE(bytes.ok()) << sha;
      EXPECT_EQ(Sha256Hex(*bytes), sha) << "blob content changed";
    }
    EXPECT_EQ(leftovers, 0);
  }

  graft::testing::TempDir dir_;
  std::string data_;
  std::vector<std::string> flags_;
  std::unique_ptr<graft::testing::GraftdProcess> graftd_;
  std::string probe_, tiny_;
  int made_ = 0;
};

TEST_F(Chaos, NothingAcknowledgedIsLostAcrossKills) {
  const int kills = EnvInt("GRAFT_CHAOS_KILLS", 10);
  const int seed = EnvInt("GRAFT_CHAOS_SEED", 1);
  std::mt19937 rng(static_cast<uint32_t>(seed));
  Acknowledged ack;
  const auto start = Clock::now();
  for (int k = 1; k <= kills; ++k) {
    // Kill moments spread from 50 ms (mid-handshake) to 6 s (mid-epoch).
    const auto after = std::chrono::milliseconds(50 + static_cast<int>(rng() % 6000));
    Round(rng, ack, after);
    ASSERT_TRUE(graftd_->Start(flags_)) << "restart after kill " << k << ": " << graftd_->log();
    Check(ack, k);
    if (HasFatalFailure()) return;
  }
  std::printf("chaos: %d kills (seed %d) in %.0f s; %zu datasets, %zu models, %zu jobs acknowledged and intact\n", kills,
              seed, std::chrono::duration<double>(Clock::now() - start).count(), ack.datasets.size(), ack.models.size(),
              ack.jobs.size());
  EXPECT_EQ(graftd_->Stop(SIGTERM), 0);
}

}  // namespace
}  // namespace graft
