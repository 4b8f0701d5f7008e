#pragma once

// A backbone small enough to train in milliseconds and to write in a test
// (random weights, a few KB), so that the zoo, the batcher and the job
// runner are tested without ../shared: two stride-2 convolutions
// (3 -> w -> 2w channels, blocks "features.0" and "features.1") on 32x32
// inputs and a 10-class linear head "fc".

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/zoo/zoo.h"

namespace graft::fakes {

// The spec of a tiny backbone called `name` of width `w` (its embedding has
// 2w dimensions).
core::BackboneSpec TinySpec(const std::string& name = "tiny", int64_t w = 4);

// Writes `spec`'s weights, drawn from `seed`, into `zoo_dir` as the zoo
// looks for them (<name>-imagenet.safetensors).
absl::Status WriteTinyWeights(const core::BackboneSpec& spec, const std::string& zoo_dir, uint64_t seed = 1);

// Options of a CPU zoo in `zoo_dir` that holds `specs` (the registry's
// backbones have no weights there), their weights written.
absl::StatusOr<core::ZooOptions> TinyZooAt(const std::string& zoo_dir,
                                           std::vector<core::BackboneSpec> specs = {TinySpec()});

}  // namespace graft::fakes
