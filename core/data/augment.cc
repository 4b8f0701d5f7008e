#include "core/data/augment.h"

#include <opencv2/imgproc.hpp>

#include <cmath>

#include "core/data/resize.h"
#include "core/data/transforms.h"
#include "core/util/torch_status.h"

namespace graft::core {

Preprocessing ForInputSize(const Preprocessing& base, int input_size) {
  Preprocessing p = base;
  if (input_size > 0) {
    p.height = p.width = input_size;
    p.resize_size = static_cast<int>(std::lround(input_size * 256.0 / 224.0));
  }
  return p;
}

absl::StatusOr<torch::Tensor> AugmentImage(const cv::Mat& rgb, const AugmentationSpec& aug, const Preprocessing& p,
                                           std::mt19937_64& rng) {
  if (!aug.random_resized_crop && !aug.horizontal_flip && aug.color_jitter <= 0) return PreprocessImage(rgb, p);
  return GuardExceptions(absl::StatusCode::kInvalidArgument, "augmenting", [&]() -> absl::StatusOr<torch::Tensor> {
    std::uniform_real_distribution<double> unit(0, 1);
    cv::Mat out;
    if (aug.random_resized_crop) {
      const double area = static_cast<double>(rgb.cols) * rgb.rows;
      cv::Rect box(0, 0, rgb.cols, rgb.rows);
      for (int attempt = 0; attempt < 10; ++attempt) {
        const double target = area * (aug.crop_scale_min + (1 - aug.crop_scale_min) * unit(rng));
        const double log_ratio = std::log(3.0 / 4) + (std::log(4.0 / 3) - std::log(3.0 / 4)) * unit(rng);
        const double ratio = std::exp(log_ratio);
        const int w = static_cast<int>(std::lround(std::sqrt(target * ratio)));
        const int h = static_cast<int>(std::lround(std::sqrt(target / ratio)));
        if (w > 0 && h > 0 && w <= rgb.cols && h <= rgb.rows) {
          box = cv::Rect(static_cast<int>(unit(rng) * (rgb.cols - w + 1)) % (rgb.cols - w + 1),
                         static_cast<int>(unit(rng) * (rgb.rows - h + 1)) % (rgb.rows - h + 1), w, h);
          break;
        }
      }
      out = ResizeLikePil(rgb(box), cv::Size(p.width, p.height));
    } else {
      out = ResizeCenterCrop(rgb, p);  // then the other augmentations
    }
    if (aug.horizontal_flip && unit(rng) < 0.5) cv::flip(out, out, 1);
    if (aug.color_jitter <= 0) return NormalizeToTensor(out, p);
    // Colour jitter works on [0, 1] floats.
    cv::Mat f;
    out.convertTo(f, CV_32FC3, 1.0 / 255.0);
    const double s = aug.color_jitter;
    const double brightness = 1 + s * (2 * unit(rng) - 1);
    const double contrast = 1 + s * (2 * unit(rng) - 1);
    const double saturation = 1 + s * (2 * unit(rng) - 1);
    f *= brightness;
    const cv::Scalar mean = cv::mean(f);
    const double gray_mean = (mean[0] + mean[1] + mean[2]) / 3;
    f = (f - cv::Scalar::all(gray_mean)) * contrast + cv::Scalar::all(gray_mean);
    cv::Mat gray;
    cv::cvtColor(f, gray, cv::COLOR_RGB2GRAY);
    cv::Mat gray3;
    cv::cvtColor(gray, gray3, cv::COLOR_GRAY2RGB);
    f = gray3 + (f - gray3) * saturation;
    cv::min(cv::max(f, 0.0), 1.0, f);
    cv::subtract(f, cv::Scalar(p.mean[0], p.mean[1], p.mean[2]), f);
    cv::divide(f, cv::Scalar(p.std[0], p.std[1], p.std[2]), f);
    return torch::from_blob(f.data, {p.height, p.width, 3}, torch::kFloat32).permute({2, 0, 1}).contiguous();
  });
}

}  // namespace graft::core
