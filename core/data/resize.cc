#include "core/data/resize.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace graft::core {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;

double Bilinear(double x) {
  x = std::abs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

double Bicubic(double x) {
  constexpr double a = -0.5;
  x = std::abs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
  return 0.0;
}

// For each output index: the first input index and fixed-point weights.
struct Taps {
  std::vector<int> first;
  std::vector<int> count;
  std::vector<int32_t> weights;  // `stride` per output index
  int stride = 0;
};

Taps Coefficients(int in_size, int out_size, ResizeFilter filter) {
  const double support_1 = filter == ResizeFilter::kBicubic ? 2.0 : 1.0;
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = support_1 * filterscale;
  Taps t;
  t.stride = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.first.resize(static_cast<size_t>(out_size));
  t.count.resize(static_cast<size_t>(out_size));
  t.weights.assign(static_cast<size_t>(out_size) * static_cast<size_t>(t.stride), 0);
  std::vector<double> w(static_cast<size_t>(t.stride));
  for (int o = 0; o < out_size; ++o) {
    const double center = (o + 0.5) * scale;
    const int lo = std::max(0, static_cast<int>(center - support + 0.5));
    const int hi = std::min(in_size, static_cast<int>(center + support + 0.5));
    const int n = std::min(hi - lo, t.stride);
    double sum = 0;
    for (int i = 0; i < n; ++i) {
      const double x = (i + lo - center + 0.5) / filterscale;
      w[static_cast<size_t>(i)] = filter == ResizeFilter::kBicubic ? Bicubic(x) : Bilinear(x);
      sum += w[static_cast<size_t>(i)];
    }
    int32_t* out = &t.weights[static_cast<size_t>(o) * static_cast<size_t>(t.stride)];
    for (int i = 0; i < n; ++i) {
      const double k = sum != 0 ? w[static_cast<size_t>(i)] / sum : 0;
      out[i] = static_cast<int32_t>(k < 0 ? -0.5 + k * (1 << kPrecisionBits) : 0.5 + k * (1 << kPrecisionBits));
    }
    t.first[static_cast<size_t>(o)] = lo;
    t.count[static_cast<size_t>(o)] = n;
  }
  return t;
}

uint8_t Clip8(int32_t v) {
  if (v >= (1 << kPrecisionBits << 8)) return 255;
  if (v <= 0) return 0;
  return static_cast<uint8_t>(v >> kPrecisionBits);
}

cv::Mat Horizontal(const cv::Mat& src, int out_size, ResizeFilter filter) {
  const int ch = src.channels();
  const Taps t = Coefficients(src.cols, out_size, filter);
  cv::Mat dst(src.rows, out_size, src.type());
  for (int y = 0; y < src.rows; ++y) {
    const uint8_t* in = src.ptr<uint8_t>(y);
    uint8_t* out = dst.ptr<uint8_t>(y);
    for (int x = 0; x < out_size; ++x) {
      const int32_t* k = &t.weights[static_cast<size_t>(x) * static_cast<size_t>(t.stride)];
      const uint8_t* px = in + t.first[static_cast<size_t>(x)] * ch;
      const int n = t.count[static_cast<size_t>(x)];
      for (int c = 0; c < ch; ++c) {
        int32_t acc = 1 << (kPrecisionBits - 1);
        for (int i = 0; i < n; ++i) acc += px[i * ch + c] * k[i];
        out[x * ch + c] = Clip8(acc);
      }
    }
  }
  return dst;
}

cv::Mat Vertical(const cv::Mat& src, int out_size, ResizeFilter filter) {
  const int width = src.cols * src.channels();
  const Taps t = Coefficients(src.rows, out_size, filter);
  cv::Mat dst(out_size, src.cols, src.type());
  std::vector<int32_t> acc(static_cast<size_t>(width));
  for (int y = 0; y < out_size; ++y) {
    std::fill(acc.begin(), acc.end(), 1 << (kPrecisionBits - 1));
    const int32_t* k = &t.weights[static_cast<size_t>(y) * static_cast<size_t>(t.stride)];
    for (int i = 0; i < t.count[static_cast<size_t>(y)]; ++i) {
      const uint8_t* row = src.ptr<uint8_t>(t.first[static_cast<size_t>(y)] + i);
      const int32_t w = k[i];
      for (int x = 0; x < width; ++x) acc[static_cast<size_t>(x)] += row[x] * w;
    }
    uint8_t* out = dst.ptr<uint8_t>(y);
    for (int x = 0; x < width; ++x) out[x] = Clip8(acc[static_cast<size_t>(x)]);
  }
  return dst;
}

}  // namespace

cv::Mat ResizeLikePil(const cv::Mat& src, cv::Size size, ResizeFilter filter) {
  cv::Mat out = src;
  if (size.width != src.cols) out = Horizontal(out, size.width, filter);
  if (size.height != src.rows) out = Vertical(out, size.height, filter);
  return out.data == src.data ? src.clone() : out;
}

}  // namespace graft::core
