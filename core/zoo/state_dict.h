#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace graft::core {

// An ordered list of named tensors, as in a PyTorch state dict.
using StateDict = std::vector<std::pair<std::string, torch::Tensor>>;

// Reads a torchvision .pth file written by torch.save (zip archive with a
// pickled OrderedDict of tensors, _metadata included). Tensors are on CPU.
absl::StatusOr<StateDict> ReadPth(const std::string& path);

// Reads a .safetensors file. Tensors are on CPU.
absl::StatusOr<StateDict> ReadSafetensors(const std::string& path);
absl::StatusOr<StateDict> ParseSafetensors(const std::string& bytes, const std::string& what);

// Serialises tensors as safetensors; `metadata` goes into "__metadata__".
absl::StatusOr<std::string> SerializeSafetensors(
    const StateDict& tensors, const std::map<std::string, std::string>& metadata = {});

// Reads .pth or .safetensors by extension.
absl::StatusOr<StateDict> ReadWeightsFile(const std::string& path);

// Copies `tensors` into `module`'s parameters and buffers. Strict: every
// parameter and buffer must be present with its shape, and no extra key may
// appear; the error names the offending keys. The module is unchanged on error.
absl::Status LoadStateDict(torch::nn::Module& module, const StateDict& tensors);

// The module's parameters and buffers, torchvision-named, in registration order.
StateDict ModuleStateDict(const torch::nn::Module& module);

}  // namespace graft::core
