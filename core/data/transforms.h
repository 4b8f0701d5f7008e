#pragma once

#include <torch/types.h>

#include <opencv2/core/mat.hpp>

#include "absl/status/statusor.h"
#include "core/data/preprocessing.h"

namespace graft::core {

// Resize (shorter side), centre crop, scale and normalise an 8-bit RGB image
// into a float tensor [3, height, width].
// torchvision's Resize(resize_size) target for a cols x rows image: the
// shorter side to resize_size, the longer rounded down (int(size*long/short)).
cv::Size ResizeTarget(int cols, int rows, int resize_size);

absl::StatusOr<torch::Tensor> PreprocessImage(const cv::Mat& rgb, const Preprocessing& p);

}  // namespace graft::core
