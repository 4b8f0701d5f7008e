#include "core/data/transforms.h"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>

#include "core/data/resize.h"
#include "core/util/torch_status.h"

namespace graft::core {

cv::Size ResizeTarget(int cols, int rows, int resize_size) {
  if (cols <= rows) return {resize_size, static_cast<int>(static_cast<int64_t>(resize_size) * rows / cols)};
  return {static_cast<int>(static_cast<int64_t>(resize_size) * cols / rows), resize_size};
}

absl::StatusOr<torch::Tensor> PreprocessImage(const cv::Mat& rgb, const Preprocessing& p) {
  return GuardExceptions(absl::StatusCode::kInvalidArgument, "preprocessing", [&]() -> absl::StatusOr<torch::Tensor> {
    if (rgb.empty() || rgb.type() != CV_8UC3) return absl::InvalidArgumentError("expected an 8-bit RGB image");
    const cv::Size target = ResizeTarget(rgb.cols, rgb.rows, p.resize_size);
    const cv::Size resized(std::max(target.width, p.width), std::max(target.height, p.height));
    // CenterCrop: int(round((size - crop) / 2)), Python's round (ties to even);
    // only the cropped pixels are resized.
    const int x0 = static_cast<int>(std::nearbyint((resized.width - p.width) / 2.0));
    const int y0 = static_cast<int>(std::nearbyint((resized.height - p.height) / 2.0));
    const cv::Mat crop = ResizeLikePil(rgb, resized, p.interpolation == "bicubic" ? ResizeFilter::kBicubic : ResizeFilter::kBilinear,
                                       cv::Rect(x0, y0, p.width, p.height));
    cv::Mat f;
    crop.convertTo(f, CV_32FC3, 1.0 / 255.0);
    cv::subtract(f, cv::Scalar(p.mean[0], p.mean[1], p.mean[2]), f);
    cv::divide(f, cv::Scalar(p.std[0], p.std[1], p.std[2]), f);
    // HWC (contiguous after convertTo) -> CHW
    return torch::from_blob(f.data, {p.height, p.width, 3}, torch::kFloat32).permute({2, 0, 1}).contiguous();
  });
}

}  // namespace graft::core
