#include "core/train/job_cost.h"

#include <torch/torch.h>

#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/util/limit_error.h"
#include "core/util/status_macros.h"
#include "core/util/torch_status.h"

namespace graft::core {
namespace {

ABSL_CONST_INIT absl::Mutex block_outputs_mu(absl::kConstInit);
// Per backbone (specs live as long as the process), measured once.
auto* const block_outputs ABSL_GUARDED_BY(block_outputs_mu) = new std::map<const BackboneSpec*, std::vector<int64_t>>();

// Per image: the values each block outputs at the backbone's own input size.
absl::StatusOr<std::vector<int64_t>> BlockOutputs(const ResidentBackbone& backbone) {
  {
    absl::MutexLock lock(&block_outputs_mu);
    if (const auto it = block_outputs->find(backbone.spec); it != block_outputs->end()) return it->second;
  }
  const Preprocessing& p = backbone.spec->preprocessing;
  ASSIGN_OR_RETURN(std::vector<int64_t> sizes,
                   GuardExceptions(absl::StatusCode::kInternal, "measuring " + backbone.spec->name,
                                   [&]() -> absl::StatusOr<std::vector<int64_t>> {
                                     c10::InferenceMode guard;
                                     std::vector<int64_t> out;
                                     torch::Tensor x = torch::zeros({1, 3, p.height, p.width},
                                                                    torch::TensorOptions().device(backbone.device));
                                     const size_t n = backbone.inference->blocks().size();
                                     for (size_t i = 0; i < n; ++i) {
                                       x = backbone.inference->ForwardTrunk(x, i, i + 1);
                                       out.push_back(x.numel());
                                     }
                                     return out;
                                   }));
  absl::MutexLock lock(&block_outputs_mu);
  (*block_outputs)[backbone.spec] = sizes;
  return sizes;
}

int64_t Parameters(const torch::nn::Module& module, const std::vector<std::string>& prefixes) {
  int64_t n = 0;
  for (const auto& item : module.named_parameters()) {
    for (const std::string& prefix : prefixes) {
      if (item.key().rfind(prefix, 0) == 0) {
        n += item.value().numel();
        break;
      }
    }
  }
  return n;
}

constexpr int64_t kFloat = 4;
// Saved activations per block output inside a trained block (convolution,
// batch-norm and activation inputs, and their gradients).
constexpr int64_t kSavedPerOutput = 4;

}  // namespace

absl::StatusOr<JobCost> EstimateJobCost(const JobSpec& spec, const ResidentBackbone& backbone, int num_classes) {
  JobCost c;
  int64_t in = backbone.spec->feature_dim;
  int64_t head_values = in;
  for (int units : spec.head.hidden_units) {
    c.head_parameters += in * units + units;
    head_values += units;
    in = units;
  }
  c.head_parameters += in * num_classes + num_classes;
  ASSIGN_OR_RETURN(const std::vector<int64_t> outputs, BlockOutputs(backbone));
  const Preprocessing& p = backbone.spec->preprocessing;
  const int size = spec.input_size > 0 ? spec.input_size : p.height;
  const double scale = static_cast<double>(size) * size / (static_cast<double>(p.height) * p.width);
  const int n = static_cast<int>(outputs.size());
  int64_t largest_output = 0;
  for (int64_t v : outputs) largest_output = std::max(largest_output, static_cast<int64_t>(v * scale));
  const int64_t batch = spec.batch_size;
  // The frozen part runs without gradients: two block outputs at a time.
  int64_t activations = batch * largest_output * 2 * kFloat;
  const auto& blocks = backbone.module->blocks();
  for (const StageSpec& stage : spec.stages) {
    const int k = TrainableBlocks(stage.train, n);
    if (k <= 0) continue;
    std::vector<std::string> prefixes;
    int64_t saved = 0;
    for (int i = n - k; i < n; ++i) {
      prefixes.insert(prefixes.end(), blocks[static_cast<size_t>(i)].param_prefixes.begin(),
                      blocks[static_cast<size_t>(i)].param_prefixes.end());
      saved += static_cast<int64_t>(outputs[static_cast<size_t>(i)] * scale);
    }
    c.block_parameters = std::max(c.block_parameters, Parameters(*backbone.module, prefixes));
    activations = std::max(activations, batch * saved * kSavedPerOutput * kFloat);
  }
  c.activation_bytes = activations + batch * head_values * kSavedPerOutput * kFloat;
  const int64_t trainable = c.head_parameters + c.block_parameters;
  c.model_bytes = trainable * kFloat;
  // Weights, gradients and up to two optimizer moments (Adam) per trainable value.
  c.total_bytes = trainable * kFloat * 4 + c.activation_bytes;
  return c;
}

absl::Status CheckJobCost(const JobCost& cost, const JobSpec& spec, int64_t max_bytes) {
  if (cost.total_bytes <= max_bytes) return absl::OkStatus();
  return LimitError(absl::StatusCode::kResourceExhausted,
                    absl::StrCat("spec: the job would need about ", cost.total_bytes >> 20, " MiB (",
                                 cost.head_parameters + cost.block_parameters, " trainable parameters, a ",
                                 cost.model_bytes >> 20, " MiB model, ", cost.activation_bytes >> 20,
                                 " MiB of activations at batch ", spec.batch_size, "), more than --max_job_memory_bytes (",
                                 max_bytes >> 20, " MiB); use a smaller head, batch, input size or fewer unfrozen blocks"),
                    "max_job_memory_bytes");
}

}  // namespace graft::core
