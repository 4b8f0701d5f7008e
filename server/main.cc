// graftd: the graft transfer-learning server.

#include <csignal>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "core/util/host_memory.h"
#include "core/util/log.h"
#include "server/server.h"

#include <torch/version.h>

#include "core/util/device.h"

namespace {

std::string DefaultDataDir() {
  if (const char* env = std::getenv("GRAFT_DATA_DIR")) return env;
  if (const char* home = std::getenv("HOME")) return std::string(home) + "/.local/share/graft";
  return "/var/lib/graft";
}

}  // namespace

ABSL_FLAG(std::string, host, "127.0.0.1",
          "Address to bind the gRPC and metrics ports on; loopback by default, 0.0.0.0 serves every interface.");
ABSL_FLAG(std::string, auth, "tokens",
          "tokens: every call needs a bearer token (the first start writes an admin token to <data_dir>/admin.token); "
          "none: no authentication, every client is an admin (only behind your own authenticating proxy).");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain for TLS on the gRPC port (with --tls_key).");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for --tls_cert.");
ABSL_FLAG(std::string, tls_client_ca, "", "PEM CA: clients must present a certificate it signed (mutual TLS).");
ABSL_FLAG(std::string, backbone_import_dir, "",
          "The only directory RegisterBackbone may load a torchscript_path from (symlinks resolved); empty: admins "
          "send the module's bytes instead.");
ABSL_FLAG(bool, reflection, false, "Serve gRPC server reflection (unauthenticated: it lists the API).");
ABSL_FLAG(int, max_images_per_request, 64, "Most images (tensor batches counted whole) in one Predict or Embed.");
ABSL_FLAG(int64_t, max_dataset_classes, 10'000,
          "Most classes one dataset upload may hold (2..50,000): reports, confusion and listings grow with them.");
ABSL_FLAG(int, max_job_restarts, 2,
          "Times a running job is resumed after its trainer ended without releasing it (a crash, an out-of-memory "
          "kill, a lost node); one more and it fails with the reason (the crash-loop guard).");
ABSL_FLAG(int64_t, max_string_field_bytes, 4096,
          "Longest string field in any request (names, ids, labels, paths, parameters), checked before it is used.");
ABSL_FLAG(std::string, default_model_owner, "admin",
          "Whose models a bare model NAME reaches when the caller (an inference token) has none of that name; "
          "another principal's model is always OWNER/NAME. Empty: none.");
ABSL_FLAG(int, max_models_per_predict, 16,
          "Most models one Predict may name (a model named twice is run once and answered once).");
ABSL_FLAG(int64_t, max_request_pixels, 100'000'000,
          "Most pixels (from the image headers) in the encoded images of one Predict or Embed: bounds how long one "
          "request holds a backbone's batcher.");
ABSL_FLAG(int64_t, max_decode_bytes, 2LL << 30,
          "Memory image decodes in flight may hold together, uploads and Predict/Embed alike; a decode waits up to 2 s "
          "for room, then is refused with RESOURCE_EXHAUSTED.");
ABSL_FLAG(int64_t, max_archive_entries, 2'000'000, "Most entries in one dataset upload (archive or folder).");
ABSL_FLAG(double, max_archive_seconds, 1800,
          "Longest an uploaded archive's walk (decompression and checks of every entry) may take; DEADLINE_EXCEEDED "
          "past it, nothing kept (0: no bound).");
ABSL_FLAG(int, max_concurrent_uploads, 4, "Dataset uploads in progress at once.");
ABSL_FLAG(int, max_uploads_per_principal, 2,
          "Of the --max_concurrent_uploads, how many one principal may hold: stalled uploads of one client never hold "
          "every slot.");
ABSL_FLAG(int, max_concurrent_evaluations, 2,
          "Evaluate and PredictDataset calls running at once (each runs a model over a stored dataset).");
ABSL_FLAG(int, max_evaluations_per_principal, 1, "Of the --max_concurrent_evaluations, how many one principal may hold.");
ABSL_FLAG(int, max_lr_finds_per_principal, 1,
          "Learning-rate range tests (FindLearningRate) one principal may run at once; --max_concurrent_jobs of them "
          "run in all.");
ABSL_FLAG(int, max_running_jobs_per_principal, 0,
          "Jobs of one principal a trainer runs at once (0: no cap beyond --max_concurrent_jobs). Either way a trainer "
          "picks the queued job of the principal running the fewest first.");
ABSL_FLAG(double, upload_idle_timeout_s, 60,
          "An upload that sends no message for this long is cancelled and its slot freed (0: never).");
ABSL_FLAG(double, stream_write_timeout_s, 60,
          "A streamed response (WatchJob, Evaluate, PredictDataset, ExportModel) that the client does not read for this "
          "long is cancelled (0: never).");
ABSL_FLAG(int, max_queued_jobs_per_principal, 4, "Queued jobs one principal may hold; CreateJob answers RESOURCE_EXHAUSTED past it.");
ABSL_FLAG(int64_t, max_job_memory_bytes, 8LL << 30,
          "A job's estimated memory (trainable weights, gradients, optimizer state, activations at its batch and input "
          "size), checked at CreateJob; RESOURCE_EXHAUSTED with the estimate beyond it.");
ABSL_FLAG(int, max_watch_streams_per_principal, 16, "Open WatchJob streams one principal may hold.");
ABSL_FLAG(int64_t, max_message_bytes, 64 << 20,
          "Largest gRPC message and REST request body (after gzip/deflate decoding), in bytes.");
ABSL_FLAG(int64_t, max_http_body_budget_bytes, 1LL << 30,
          "REST request bodies read or handled at once, all connections together (a chunked body counts "
          "--max_message_bytes until it ends); past it a request is answered 503.");
ABSL_FLAG(int, max_http_connections, 256, "Open connections on the REST port; more are answered 503 and closed.");
ABSL_FLAG(int, http_request_timeout_s, 30,
          "REST: a request's header, then its body, must arrive within this; an answer must be taken within it.");
ABSL_FLAG(int, http_idle_timeout_s, 5, "REST: how long a kept-alive connection waits for its next request.");
ABSL_FLAG(int, port, 50051, "gRPC port; 0 picks a free port.");
ABSL_FLAG(int, metrics_port, 9464, "Prometheus /metrics port; 0 picks a free port, -1 disables it.");
ABSL_FLAG(int, http_port, 8000,
          "Open Inference Protocol REST port (/v2/...), with the gRPC port's tokens and TLS; 0 picks a free port, -1 "
          "disables it.");
ABSL_FLAG(std::string, data_dir, DefaultDataDir(), "Directory holding datasets, models, checkpoints and the zoo ($GRAFT_DATA_DIR).");
ABSL_FLAG(std::string, database, "",
          "Metadata database (datasets, jobs, models, names, tokens): empty for <data_dir>/graft.db (SQLite), "
          "another SQLite file, or postgresql://USER[:PASSWORD]@HOST[:PORT]/DB (also $GRAFT_DATABASE).");
ABSL_FLAG(std::string, artifact_dir, "",
          "Where datasets' image blobs, models and checkpoints live; default <data_dir>. graftd processes that share "
          "one PostgreSQL --database share it too (a shared volume).");
ABSL_FLAG(bool, serve, true,
          "Serve predictions (the Inference and Open Inference services). --serve=false: a trainer process.");
ABSL_FLAG(bool, train, true,
          "Run fine-tuning jobs from the shared queue. --train=false: a serving process (jobs it accepts are run by "
          "trainers).");
ABSL_FLAG(std::string, worker_id, "",
          "This process's name in the shared job queue; default HOSTNAME:PORT. Stable across restarts: a trainer "
          "that restarts under the same id resumes its own jobs at once.");
ABSL_FLAG(double, job_heartbeat_s, 2, "How often a trainer marks the jobs it runs as alive in the database.");
ABSL_FLAG(double, job_takeover_s, 15,
          "A job whose trainer has not heartbeaten for this long is taken over by another trainer (from its last "
          "checkpoint).");
ABSL_FLAG(std::string, dist_host, "",
          "Data-parallel jobs (workers > 1): the address this trainer's rendezvous store and Gloo connections "
          "listen on, which the other trainers must reach; default this host's name.");
ABSL_FLAG(int32_t, dist_port, 0,
          "Data-parallel jobs: the port of the rendezvous store a trainer serves for the jobs it leads (rank 0); "
          "0: any free port (the database tells the other trainers which).");
ABSL_FLAG(double, dist_timeout_s, 300,
          "Data-parallel jobs: how long rank 0 waits for the other trainers to join, and how long one collective "
          "may wait for the slowest rank.");
ABSL_FLAG(std::string, zoo_dir, "", "Directory of backbone weights <name>-imagenet.{safetensors,pth} and imagenet_classes.txt; default <data_dir>/zoo.");
ABSL_FLAG(std::string, device, "auto", "auto (CUDA when available), cpu or cuda:N.");
ABSL_FLAG(int64_t, max_image_pixels, 40'000'000, "Largest image accepted, in pixels, checked from the header before decoding.");
ABSL_FLAG(int64_t, max_batch_size, 32, "Most images the dynamic batcher gathers into one forward pass.");
ABSL_FLAG(int64_t, max_queue_delay_us, 500, "How long the oldest waiting Predict/Embed request waits for others to share its batch.");
ABSL_FLAG(std::string, decode_on, "auto",
          "Where Predict/Embed decode images: batcher (on the batcher's compute threads, in parallel, before each "
          "batch: the forward of a CPU backbone is not preempted), callers (on each request's thread before it "
          "queues: overlaps a GPU's forward), or auto (batcher for CPU backbones, callers for CUDA).");
ABSL_FLAG(int, intra_op_threads, 0, "LibTorch intra-op threads; 0 uses one per CPU graftd may run on (its affinity mask).");
ABSL_FLAG(int, max_concurrent_jobs, 1, "Fine-tuning jobs run at the same time.");
ABSL_FLAG(int, max_queued_jobs, 16, "Jobs waiting beyond the running ones; CreateJob answers RESOURCE_EXHAUSTED past it.");
ABSL_FLAG(int64_t, max_upload_file_bytes, 64LL << 20, "Largest file accepted in a dataset upload.");
ABSL_FLAG(int64_t, max_dataset_bytes, 8LL << 30, "Largest dataset upload, in bytes.");
ABSL_FLAG(int64_t, feature_cache_bytes, 2LL << 30, "Memory for cached frozen-backbone features per job.");
ABSL_FLAG(double, checkpoint_interval_s, 300,
          "A running job also checkpoints within an epoch this often (at a batch boundary), so a crash loses at most "
          "this much of a long epoch; 0: at epoch ends only. A shutdown always checkpoints at the next batch.");
ABSL_FLAG(double, shutdown_grace_s, 30,
          "On SIGTERM/SIGINT: RPCs in flight may finish for this long while running jobs checkpoint; then graftd "
          "exits 0. Keep Kubernetes' terminationGracePeriodSeconds above it.");
ABSL_FLAG(bool, offline, false,
          "Never download: official weights are otherwise fetched from --weights_base_url on first use (and by "
          "PullBackbone), hash-checked; offline sites put the files into the zoo directory.");
ABSL_FLAG(std::vector<std::string>, weights_file, {},
          "NAME=FILE,...: use another torchvision weights file for a backbone (e.g. "
          "resnet50=resnet50-11ad3fa6.pth, IMAGENET1K_V2), fetched and hash-checked like the default one.");
ABSL_FLAG(std::string, device_memory_budget, "auto",
          "Device memory for resident backbones, published models' own weights and running jobs' estimates: auto "
          "(90% of a GPU, half of the RAM on CPU), a share (75%), a size (6GiB, 512MiB) or none. A backbone load "
          "beyond it evicts the least recently used backbone that is neither pinned nor in use.");
ABSL_FLAG(std::vector<std::string>, preload, {},
          "NAME,...: backbones loaded at start and pinned (never evicted); all: every backbone with weights. Others "
          "load at first use.");
ABSL_FLAG(std::string, weights_base_url, "https://download.pytorch.org/models/", "Where official weights files are fetched from on first use and by PullBackbone (a mirror).");
ABSL_FLAG(bool, mixed_precision, true,
          "On CUDA: run inference under float16 autocast and training under bfloat16 autocast (ignored on CPU).");
ABSL_FLAG(int, idle_rpc_threads, 64,
          "gRPC handler threads kept waiting for work between bursts (more start while more requests are in flight); "
          "starting a thread per request burst costs its creation and a LibTorch thread-pool rebuild.");
ABSL_FLAG(bool, retain_host_memory, true,
          "Keep freed host memory for reuse instead of returning it to the kernel: large tensors are not mmapped and "
          "page-faulted in again on every forward (2-3x faster CPU forwards); resident memory stays at its high-water mark.");
ABSL_FLAG(int32_t, search_trials_at_once, 0,
          "A search job's trials of one backbone trained at once (threads); 0: the available cores. 1..256.");
ABSL_FLAG(int32_t, decode_prefetch_batches, 2,
          "Training batches read, decoded and augmented ahead of the forward pass on CUDA (on CPU each batch is "
          "decoded by the forward's own threads just before it): bounds a job's input memory, whatever the dataset's "
          "size.");
ABSL_FLAG(bool, feature_cache_fp16, true, "Store cached frozen features as float16 (half the memory; accuracy is unchanged).");
ABSL_FLAG(bool, feature_cache_spill, true, "Beyond --feature_cache_bytes, spill cached features to <data_dir>/cache instead of recomputing them.");

namespace {
std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }
}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("graftd: the graft transfer-learning server");
  absl::ParseCommandLine(argc, argv);
  // Before any thread exists: glibc gives a thread created before this its
  // own arena, whose 64 MiB heaps are mapped and unmapped around every large
  // tensor (measured: a job thread on such an arena ran its feature pass with
  // 2,600 munmaps and 30% of the time in the kernel). Server::Start repeats
  // this for servers started inside other programs.
  if (absl::GetFlag(FLAGS_retain_host_memory)) graft::core::RetainHostMemory();
  graft::InitLogging();

  // OpenCV's decoders check their own pixel limit (read once, at the first
  // decode): held to graftd's, as a second line behind graft's header checks.
  const std::string pixels = std::to_string(absl::GetFlag(FLAGS_max_image_pixels));
  ::setenv("OPENCV_IO_MAX_IMAGE_PIXELS", pixels.c_str(), 1);

  graft::server::ServerOptions options;
  options.host = absl::GetFlag(FLAGS_host);
  options.port = absl::GetFlag(FLAGS_port);
  options.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  options.http_port = absl::GetFlag(FLAGS_http_port);
  options.data_dir = absl::GetFlag(FLAGS_data_dir);
  options.database = absl::GetFlag(FLAGS_database);
  if (const char* env = std::getenv("GRAFT_DATABASE"); options.database.empty() && env != nullptr) options.database = env;
  options.zoo_dir = absl::GetFlag(FLAGS_zoo_dir);
  options.artifact_dir = absl::GetFlag(FLAGS_artifact_dir);
  options.serve = absl::GetFlag(FLAGS_serve);
  options.train = absl::GetFlag(FLAGS_train);
  options.worker_id = absl::GetFlag(FLAGS_worker_id);
  options.job_heartbeat_s = absl::GetFlag(FLAGS_job_heartbeat_s);
  options.job_takeover_s = absl::GetFlag(FLAGS_job_takeover_s);
  options.dist_host = absl::GetFlag(FLAGS_dist_host);
  options.dist_port = absl::GetFlag(FLAGS_dist_port);
  options.dist_timeout_s = absl::GetFlag(FLAGS_dist_timeout_s);
  options.device = absl::GetFlag(FLAGS_device);
  options.max_image_pixels = absl::GetFlag(FLAGS_max_image_pixels);
  options.max_batch_size = absl::GetFlag(FLAGS_max_batch_size);
  options.max_queue_delay_us = absl::GetFlag(FLAGS_max_queue_delay_us);
  options.decode_on = absl::GetFlag(FLAGS_decode_on);
  options.intra_op_threads = absl::GetFlag(FLAGS_intra_op_threads);
  options.max_concurrent_jobs = absl::GetFlag(FLAGS_max_concurrent_jobs);
  options.max_queued_jobs = absl::GetFlag(FLAGS_max_queued_jobs);
  options.max_upload_file_bytes = absl::GetFlag(FLAGS_max_upload_file_bytes);
  options.max_dataset_bytes = absl::GetFlag(FLAGS_max_dataset_bytes);
  options.feature_cache_bytes = absl::GetFlag(FLAGS_feature_cache_bytes);
  options.checkpoint_interval_s = absl::GetFlag(FLAGS_checkpoint_interval_s);
  options.shutdown_grace_s = absl::GetFlag(FLAGS_shutdown_grace_s);
  options.feature_cache_fp16 = absl::GetFlag(FLAGS_feature_cache_fp16);
  options.decode_prefetch_batches = absl::GetFlag(FLAGS_decode_prefetch_batches);
  options.search_trials_at_once = absl::GetFlag(FLAGS_search_trials_at_once);
  options.mixed_precision = absl::GetFlag(FLAGS_mixed_precision);
  options.retain_host_memory = absl::GetFlag(FLAGS_retain_host_memory);
  options.idle_rpc_threads = absl::GetFlag(FLAGS_idle_rpc_threads);
  options.offline = absl::GetFlag(FLAGS_offline);
  options.weights_base_url = absl::GetFlag(FLAGS_weights_base_url);
  options.device_memory_budget = absl::GetFlag(FLAGS_device_memory_budget);
  options.preload = absl::GetFlag(FLAGS_preload);
  for (const std::string& pair : absl::GetFlag(FLAGS_weights_file)) {
    const size_t eq = pair.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == pair.size()) {
      ABSL_LOG(ERROR) << "--weights_file takes NAME=FILE pairs, got '" << pair << "'";
      return 1;
    }
    options.weights_files[pair.substr(0, eq)] = pair.substr(eq + 1);
  }
  options.feature_cache_spill = absl::GetFlag(FLAGS_feature_cache_spill);
  options.auth = absl::GetFlag(FLAGS_auth);
  options.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  options.tls_key = absl::GetFlag(FLAGS_tls_key);
  options.tls_client_ca = absl::GetFlag(FLAGS_tls_client_ca);
  options.backbone_import_dir = absl::GetFlag(FLAGS_backbone_import_dir);
  options.reflection = absl::GetFlag(FLAGS_reflection);
  options.max_images_per_request = absl::GetFlag(FLAGS_max_images_per_request);
  options.max_models_per_predict = absl::GetFlag(FLAGS_max_models_per_predict);
  options.default_model_owner = absl::GetFlag(FLAGS_default_model_owner);
  options.max_string_field_bytes = absl::GetFlag(FLAGS_max_string_field_bytes);
  options.max_dataset_classes = absl::GetFlag(FLAGS_max_dataset_classes);
  options.max_job_restarts = absl::GetFlag(FLAGS_max_job_restarts);
  options.max_request_pixels = absl::GetFlag(FLAGS_max_request_pixels);
  options.max_decode_bytes = absl::GetFlag(FLAGS_max_decode_bytes);
  options.max_archive_entries = absl::GetFlag(FLAGS_max_archive_entries);
  options.max_archive_seconds = absl::GetFlag(FLAGS_max_archive_seconds);
  options.max_concurrent_uploads = absl::GetFlag(FLAGS_max_concurrent_uploads);
  options.max_concurrent_evaluations = absl::GetFlag(FLAGS_max_concurrent_evaluations);
  options.max_uploads_per_principal = absl::GetFlag(FLAGS_max_uploads_per_principal);
  options.max_evaluations_per_principal = absl::GetFlag(FLAGS_max_evaluations_per_principal);
  options.max_lr_finds_per_principal = absl::GetFlag(FLAGS_max_lr_finds_per_principal);
  options.max_running_jobs_per_principal = absl::GetFlag(FLAGS_max_running_jobs_per_principal);
  options.upload_idle_timeout_s = absl::GetFlag(FLAGS_upload_idle_timeout_s);
  options.stream_write_timeout_s = absl::GetFlag(FLAGS_stream_write_timeout_s);
  options.max_queued_jobs_per_principal = absl::GetFlag(FLAGS_max_queued_jobs_per_principal);
  options.max_watch_streams_per_principal = absl::GetFlag(FLAGS_max_watch_streams_per_principal);
  options.max_job_memory_bytes = absl::GetFlag(FLAGS_max_job_memory_bytes);
  options.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  options.max_http_body_budget_bytes = absl::GetFlag(FLAGS_max_http_body_budget_bytes);
  options.max_http_connections = absl::GetFlag(FLAGS_max_http_connections);
  options.http_request_timeout_s = absl::GetFlag(FLAGS_http_request_timeout_s);
  options.http_idle_timeout_s = absl::GetFlag(FLAGS_http_idle_timeout_s);

  auto server = graft::server::GraftServer::Start(options);
  if (!server.ok()) {
    ABSL_LOG(ERROR) << "graftd failed to start: " << server.status().message();
    return 1;
  }
  ABSL_LOG(INFO) << "graftd listening: grpc " << options.host << ":" << (*server)->port() << " metrics "
                 << ((*server)->metrics_port() >= 0 ? options.host + ":" + std::to_string((*server)->metrics_port()) + "/metrics"
                                                    : std::string("off"))
                 << " http " << ((*server)->http_port() >= 0 ? options.host + ":" + std::to_string((*server)->http_port()) + "/v2"
                                                             : std::string("off"))
                 << " data_dir " << options.data_dir << " zoo_dir " << (*server)->zoo_dir();
  ABSL_LOG(INFO) << "graftd runs on LibTorch " << TORCH_VERSION << ", CUDA "
                 << (graft::core::CudaCompiled() ? "compiled in" : "not compiled in") << ", "
                 << (graft::core::CudaAvailable() ? "a CUDA device available" : "no CUDA device");

  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  std::thread waiter([&]() { (*server)->Wait(); });
  while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ABSL_LOG(INFO) << "graftd shutting down";
  (*server)->Shutdown();
  waiter.join();
  return 0;
}
