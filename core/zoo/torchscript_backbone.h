#pragma once

// Custom backbones: a TorchScript file made by the user (torch.jit.script or
// torch.jit.trace in Python) that maps an image batch [N, 3, H, W] to
// features [N, D] or a feature map [N, D, h, w]. It has no ImageNet head and
// one block ("trunk"), so jobs on it train the head only.

#include <string>

#include "absl/status/statusor.h"
#include "core/data/preprocessing.h"
#include "core/zoo/registry.h"

namespace graft::core {

struct CustomBackboneDef {
  std::string name;
  std::string torchscript_path;
  int64_t feature_dim = 0;
  Preprocessing preprocessing;
};

// Checks a name for a custom backbone: 1-64 of [A-Za-z0-9_.-], starting
// with a letter or digit.
absl::Status ValidateCustomName(const std::string& name);

// Fills unset preprocessing fields (0 sizes, empty mean/std/interpolation)
// with ImageNet's and checks the rest.
absl::StatusOr<Preprocessing> CompletePreprocessing(Preprocessing p, bool mean_std_set);

// Loads the TorchScript file, runs it once on a zero batch of the declared
// input size and checks the output shape. INVALID_ARGUMENT with the reason
// for a file that does not load, has no forward, or produces the wrong shape.
absl::StatusOr<BackboneSpec> LoadTorchScriptBackbone(const CustomBackboneDef& def);

// The manifest that describes a custom backbone, as JSON:
//   {"name": "...", "torchscript": "file.pt", "feature_dim": 1280,
//    "preprocessing": {"height": 224, "width": 224, "resize_size": 256,
//                      "mean": [...], "std": [...], "interpolation": "bilinear"}}
// A relative "torchscript" path is relative to the manifest's directory.
std::string CustomManifestJson(const CustomBackboneDef& def);
absl::StatusOr<CustomBackboneDef> ReadCustomManifest(const std::string& path);

}  // namespace graft::core
