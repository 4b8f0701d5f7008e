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

// The two halves of PreprocessImage. ResizeCenterCrop: the 8-bit RGB
// height x width centre crop of the resized image (only its pixels computed).
cv::Mat ResizeCenterCrop(const cv::Mat& rgb, const Preprocessing& p);
// ToTensor and Normalize of an 8-bit RGB image, as torchvision computes them
// in float32 ((v / 255 - mean) / std), into a [3, rows, cols] tensor.
torch::Tensor NormalizeToTensor(const cv::Mat& rgb8, const Preprocessing& p);

}  // namespace graft::core
