#pragma once

#include <torch/types.h>

#include <opencv2/core/mat.hpp>
#include <random>

#include "absl/status/statusor.h"
#include "core/data/augmentation_spec.h"
#include "core/data/preprocessing.h"

namespace graft::core {

// Preprocessing for a job's input size: resize = size * 256 / 224, like the
// ImageNet recipe, with the backbone's mean/std.
Preprocessing ForInputSize(const Preprocessing& base, int input_size);

// Training-time transform of a decoded RGB image: RandomResizedCrop or
// resize+centre crop, optional horizontal flip and colour jitter, normalised
// to a [3, S, S] tensor.
absl::StatusOr<torch::Tensor> AugmentImage(const cv::Mat& rgb, const AugmentationSpec& aug, const Preprocessing& p,
                                           std::mt19937_64& rng);

}  // namespace graft::core
