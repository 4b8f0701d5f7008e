#pragma once

#include <opencv2/core/mat.hpp>

namespace graft::core {

enum class ResizeFilter { kBilinear, kBicubic };

// Resizes an 8-bit image (any channel count) the way PIL's Image.resize does,
// and so the way torchvision's Resize/RandomResizedCrop do on PIL images:
// separable, horizontal pass then vertical, the filter widened by the scale
// when shrinking (antialiasing), fixed-point coefficients and 8-bit rounding
// between the passes. OpenCV's INTER_LINEAR does not antialias and INTER_AREA
// is a box filter; either moves a fine-tuned model's accuracy measurably
// (bench/README.md, finetune_vs_pytorch). `src` may be a ROI.
cv::Mat ResizeLikePil(const cv::Mat& src, cv::Size size, ResizeFilter filter = ResizeFilter::kBilinear);

// The `crop` rectangle of ResizeLikePil(src, size, filter), bit for bit,
// computing only the pixels inside it (and the input rows they read): a
// resize followed by a center crop does ~25% less work.
cv::Mat ResizeLikePil(const cv::Mat& src, cv::Size size, ResizeFilter filter, const cv::Rect& crop);

// Whether the resize kernels may use AVX2 where the CPU has it (the default).
// With false they run the x86-64 baseline build of the same code: for tests
// that check both give the same pixels.
void AllowAvx2Resize(bool allow);

}  // namespace graft::core
