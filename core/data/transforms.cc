#include "core/data/transforms.h"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>

#include "core/data/resize.h"
#include "core/util/compute_threads.h"
#include "core/util/torch_status.h"

namespace graft::core {

cv::Size ResizeTarget(int cols, int rows, int resize_size) {
  if (cols <= rows) return {resize_size, static_cast<int>(static_cast<int64_t>(resize_size) * rows / cols)};
  return {static_cast<int>(static_cast<int64_t>(resize_size) * cols / rows), resize_size};
}

namespace {

// The centre crop's place in the resized image, and the filter.
struct CropPlan {
  cv::Size resized;
  cv::Rect crop;
  ResizeFilter filter;
};

CropPlan PlanCrop(const cv::Mat& rgb, const Preprocessing& p) {
  const cv::Size target = ResizeTarget(rgb.cols, rgb.rows, p.resize_size);
  const cv::Size resized(std::max(target.width, p.width), std::max(target.height, p.height));
  // CenterCrop: int(round((size - crop) / 2)), Python's round (ties to even);
  // only the cropped pixels are resized.
  const int x0 = static_cast<int>(std::nearbyint((resized.width - p.width) / 2.0));
  const int y0 = static_cast<int>(std::nearbyint((resized.height - p.height) / 2.0));
  return {resized, cv::Rect(x0, y0, p.width, p.height),
          p.interpolation == "bicubic" ? ResizeFilter::kBicubic : ResizeFilter::kBilinear};
}

// ToTensor + Normalize of `rgb8` into rows [row0, row0 + rgb8.rows) of the
// CHW planes at `out` (each `plane` floats). Every 8-bit value of a channel
// maps to one float: a table per channel, and one pass that also moves HWC to
// CHW.
void NormalizeRowsInto(const cv::Mat& rgb8, const Preprocessing& p, float* out, size_t plane, int row0) {
  CV_Assert(rgb8.type() == CV_8UC3);
  float table[3][256];
  for (int c = 0; c < 3; ++c) {
    for (int v = 0; v < 256; ++v) table[c][v] = (static_cast<float>(v) / 255.0f - p.mean[c]) / p.std[c];
  }
  const size_t offset = static_cast<size_t>(row0) * static_cast<size_t>(rgb8.cols);
  float* r = out + offset;
  float* g = r + plane;
  float* b = g + plane;
  for (int y = 0; y < rgb8.rows; ++y) {
    const uint8_t* px = rgb8.ptr<uint8_t>(y);
    for (int x = 0; x < rgb8.cols; ++x, px += 3) {
      *r++ = table[0][px[0]];
      *g++ = table[1][px[1]];
      *b++ = table[2][px[2]];
    }
  }
}

}  // namespace

cv::Mat ResizeCenterCrop(const cv::Mat& rgb, const Preprocessing& p) {
  const CropPlan plan = PlanCrop(rgb, p);
  return ResizeLikePil(rgb, plan.resized, plan.filter, plan.crop);
}

torch::Tensor NormalizeToTensor(const cv::Mat& rgb8, const Preprocessing& p) {
  torch::Tensor out = torch::empty({3, rgb8.rows, rgb8.cols}, torch::kFloat32);
  NormalizeRowsInto(rgb8, p, out.data_ptr<float>(), static_cast<size_t>(rgb8.rows) * static_cast<size_t>(rgb8.cols), 0);
  return out;
}

absl::StatusOr<torch::Tensor> PreprocessImage(const cv::Mat& rgb, const Preprocessing& p) {
  return GuardExceptions(absl::StatusCode::kInvalidArgument, "preprocessing", [&]() -> absl::StatusOr<torch::Tensor> {
    if (rgb.empty() || rgb.type() != CV_8UC3) return absl::InvalidArgumentError("expected an 8-bit RGB image");
    const CropPlan plan = PlanCrop(rgb, p);
    torch::Tensor out = torch::empty({3, p.height, p.width}, torch::kFloat32);
    float* planes = out.data_ptr<float>();
    const size_t plane = static_cast<size_t>(p.height) * static_cast<size_t>(p.width);
    // The crop's top and bottom halves, each resized alone (the same pixels as
    // the whole crop: ResizeLikePil computes any sub-rectangle exactly): on
    // both cores when this thread has an intra-op team to itself (a lone
    // image in the batcher); one after the other anywhere else.
    const int halves = p.height >= 32 ? 2 : 1;
    ParallelForEach(halves, [&](int64_t half) {
      const int begin = static_cast<int>(p.height * half / halves);
      const int end = static_cast<int>(p.height * (half + 1) / halves);
      const cv::Rect rows(plan.crop.x, plan.crop.y + begin, plan.crop.width, end - begin);
      NormalizeRowsInto(ResizeLikePil(rgb, plan.resized, plan.filter, rows), p, planes, plane, begin);
    });
    return out;
  });
}

}  // namespace graft::core
