#include "core/data/transforms.h"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>

#include "core/util/torch_status.h"

namespace graft::core {

absl::StatusOr<torch::Tensor> PreprocessImage(const cv::Mat& rgb, const Preprocessing& p) {
  return GuardExceptions(absl::StatusCode::kInvalidArgument, "preprocessing", [&]() -> absl::StatusOr<torch::Tensor> {
    if (rgb.empty() || rgb.type() != CV_8UC3) return absl::InvalidArgumentError("expected an 8-bit RGB image");
    const int shorter = std::min(rgb.cols, rgb.rows);
    const double scale = static_cast<double>(p.resize_size) / shorter;
    // torchvision rounds the longer side down (int(size * long / short)).
    const int w = rgb.cols <= rgb.rows ? p.resize_size : static_cast<int>(rgb.cols * scale);
    const int h = rgb.rows < rgb.cols ? p.resize_size : static_cast<int>(rgb.rows * scale);
    cv::Mat resized;
    const int interp = scale < 1.0 ? cv::INTER_AREA : (p.interpolation == "bicubic" ? cv::INTER_CUBIC : cv::INTER_LINEAR);
    cv::resize(rgb, resized, cv::Size(std::max(w, p.width), std::max(h, p.height)), 0, 0, interp);
    const int x0 = static_cast<int>(std::round((resized.cols - p.width) / 2.0));
    const int y0 = static_cast<int>(std::round((resized.rows - p.height) / 2.0));
    cv::Mat crop = resized(cv::Rect(x0, y0, p.width, p.height));
    cv::Mat f;
    crop.convertTo(f, CV_32FC3, 1.0 / 255.0);
    cv::subtract(f, cv::Scalar(p.mean[0], p.mean[1], p.mean[2]), f);
    cv::divide(f, cv::Scalar(p.std[0], p.std[1], p.std[2]), f);
    // HWC (contiguous after convertTo) -> CHW
    return torch::from_blob(f.data, {p.height, p.width, 3}, torch::kFloat32).permute({2, 0, 1}).contiguous();
  });
}

}  // namespace graft::core
