#include "core/data/resize.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <vector>

namespace graft::core {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;

std::atomic<bool> allow_avx2{true};

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

// Taps `t` widened to exactly t.stride each, by zero weights, with each
// window moved left where it would run past the input's last column: a
// kernel whose tap count is a compile-time constant is fully unrolled (a
// quarter fewer instructions over the shared photos), and a zero weight adds
// nothing, so the result is bit for bit the same. Returns
// false (and leaves `t` alone) when the input is narrower than one window.
bool PadToStride(Taps& t, int in_size) {
  if (in_size < t.stride) return false;
  std::vector<int32_t> padded(t.weights.size(), 0);
  const auto stride = static_cast<size_t>(t.stride);
  for (size_t o = 0; o < t.first.size(); ++o) {
    const int first = std::min(t.first[o], in_size - t.stride);
    const auto shift = static_cast<size_t>(t.first[o] - first);
    for (size_t i = 0; i < static_cast<size_t>(t.count[o]); ++i) {
      padded[o * stride + shift + i] = t.weights[o * stride + i];
    }
    t.first[o] = first;
    t.count[o] = t.stride;
  }
  t.weights = std::move(padded);
  return true;
}

// One output row of the vertical pass from exactly `kTaps` input rows: one
// pass over the row with the taps unrolled, which vectorises.
template <int kTaps>
__attribute__((always_inline)) inline void VerticalRow(const uint8_t* const* rows, const int32_t* k, uint8_t* out,
                                                       int width) {
  // Local copies: a store through `out` (a char type) could otherwise alias
  // the pointers and weights, and keep the loop from vectorising.
  const uint8_t* r[kTaps];
  int32_t w[kTaps];
  for (int i = 0; i < kTaps; ++i) {
    r[i] = rows[i];
    w[i] = k[i];
  }
  for (int x = 0; x < width; ++x) {
    int32_t acc = 1 << (kPrecisionBits - 1);
    for (int i = 0; i < kTaps; ++i) acc += r[i][x] * w[i];
    out[x] = Clip8(acc);
  }
}

// VerticalRow for 1 to 5 taps (enlarging has 2 or 3 taps a row, shrinking
// up to 2x 3 to 5); false for more. The same code twice, vectorised for
// AVX2 and for the x86-64 baseline: SSE2 has no 32-bit multiply.
#define GRAFT_VERTICAL_ROW_SWITCH                                  \
  switch (n) {                                                     \
    case 1: VerticalRow<1>(rows, k, out, width); return true;      \
    case 2: VerticalRow<2>(rows, k, out, width); return true;      \
    case 3: VerticalRow<3>(rows, k, out, width); return true;      \
    case 4: VerticalRow<4>(rows, k, out, width); return true;      \
    case 5: VerticalRow<5>(rows, k, out, width); return true;      \
    default: return false;                                         \
  }

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2"))) bool VerticalRowAvx2(int n, const uint8_t* const* rows, const int32_t* k,
                                                     uint8_t* out, int width) {
  GRAFT_VERTICAL_ROW_SWITCH
}
#endif

bool VerticalRowBaseline(int n, const uint8_t* const* rows, const int32_t* k, uint8_t* out, int width) {
  GRAFT_VERTICAL_ROW_SWITCH
}
#undef GRAFT_VERTICAL_ROW_SWITCH

bool VerticalRowDispatch(int n, const uint8_t* const* rows, const int32_t* k, uint8_t* out, int width) {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2 && allow_avx2.load(std::memory_order_relaxed)) return VerticalRowAvx2(n, rows, k, out, width);
#endif
  return VerticalRowBaseline(n, rows, k, out, width);
}

// One output row of the horizontal pass over 3-channel pixels with taps
// padded to exactly `kTaps` each.
template <int kTaps>
void HorizontalRgbRow(const uint8_t* in, uint8_t* out, const Taps& t, int x0, int width) {
  constexpr int32_t kHalf = 1 << (kPrecisionBits - 1);
  for (int ox = 0; ox < width; ++ox) {
    const auto x = static_cast<size_t>(x0 + ox);
    const int32_t* k = &t.weights[x * kTaps];
    const uint8_t* px = in + t.first[x] * 3;
    int32_t r = kHalf, g = kHalf, b = kHalf;
    for (int i = 0; i < kTaps; ++i) {
      r += px[3 * i] * k[i];
      g += px[3 * i + 1] * k[i];
      b += px[3 * i + 2] * k[i];
    }
    out[ox * 3] = Clip8(r);
    out[ox * 3 + 1] = Clip8(g);
    out[ox * 3 + 2] = Clip8(b);
  }
}

// Output columns [x0, x0 + width) of the horizontal pass, for input rows
// [y0, y0 + rows).
cv::Mat Horizontal(const cv::Mat& src, int out_size, ResizeFilter filter, int x0, int width, int y0, int rows) {
  const int ch = src.channels();
  Taps t = Coefficients(src.cols, out_size, filter);
  cv::Mat dst(rows, width, src.type());
  // Enlarging bilinear (the usual case for images sized near the model's
  // input) has 3 taps; shrinking up to 2x has 5, bicubic enlarging 5.
  using RowKernel = void (*)(const uint8_t*, uint8_t*, const Taps&, int, int);
  RowKernel kernel = nullptr;
  if (ch == 3 && (t.stride == 3 || t.stride == 5 || t.stride == 7) && PadToStride(t, src.cols)) {
    kernel = t.stride == 3 ? HorizontalRgbRow<3> : t.stride == 5 ? HorizontalRgbRow<5> : HorizontalRgbRow<7>;
  }
  constexpr int32_t kHalf = 1 << (kPrecisionBits - 1);
  for (int y = 0; y < rows; ++y) {
    const uint8_t* in = src.ptr<uint8_t>(y0 + y);
    uint8_t* out = dst.ptr<uint8_t>(y);
    if (kernel != nullptr) {
      kernel(in, out, t, x0, width);
      continue;
    }
    for (int ox = 0; ox < width; ++ox) {
      const auto x = static_cast<size_t>(x0 + ox);
      const int32_t* k = &t.weights[x * static_cast<size_t>(t.stride)];
      const uint8_t* px = in + t.first[x] * ch;
      const int n = t.count[x];
      for (int c = 0; c < ch; ++c) {
        int32_t acc = kHalf;
        for (int i = 0; i < n; ++i) acc += px[i * ch + c] * k[i];
        out[ox * ch + c] = Clip8(acc);
      }
    }
  }
  return dst;
}

// Output rows [y0, y0 + height) of the vertical pass with taps `t`; `src`
// holds input rows from `src_first` on.
cv::Mat Vertical(const cv::Mat& src, const Taps& t, int y0, int height, int src_first) {
  const int width = src.cols * src.channels();
  cv::Mat dst(height, src.cols, src.type());
  std::vector<int32_t> acc(static_cast<size_t>(width));
  std::vector<const uint8_t*> rows(static_cast<size_t>(t.stride));
  for (int oy = 0; oy < height; ++oy) {
    const auto y = static_cast<size_t>(y0 + oy);
    const int32_t* k = &t.weights[y * static_cast<size_t>(t.stride)];
    const int n = t.count[y];
    for (int i = 0; i < n; ++i) rows[static_cast<size_t>(i)] = src.ptr<uint8_t>(t.first[y] + i - src_first);
    uint8_t* out = dst.ptr<uint8_t>(oy);
    if (VerticalRowDispatch(n, rows.data(), k, out, width)) continue;
    std::fill(acc.begin(), acc.end(), 1 << (kPrecisionBits - 1));
    for (int i = 0; i < n; ++i) {
      const uint8_t* row = rows[static_cast<size_t>(i)];
      const int32_t w = k[i];
      for (int x = 0; x < width; ++x) acc[static_cast<size_t>(x)] += row[x] * w;
    }
    for (int x = 0; x < width; ++x) out[x] = Clip8(acc[static_cast<size_t>(x)]);
  }
  return dst;
}

}  // namespace

cv::Mat ResizeLikePil(const cv::Mat& src, cv::Size size, ResizeFilter filter, const cv::Rect& crop) {
  CV_Assert(crop.x >= 0 && crop.y >= 0 && crop.width > 0 && crop.height > 0 && crop.x + crop.width <= size.width &&
            crop.y + crop.height <= size.height);
  const bool vertical = size.height != src.rows;
  // The input rows the crop's output rows read (just its own when the height
  // does not change).
  int rows_first = crop.y, rows_end = crop.y + crop.height;
  Taps taps;
  if (vertical) {
    taps = Coefficients(src.rows, size.height, filter);
    rows_first = src.rows;
    rows_end = 0;
    for (int y = crop.y; y < crop.y + crop.height; ++y) {
      rows_first = std::min(rows_first, taps.first[static_cast<size_t>(y)]);
      rows_end = std::max(rows_end, taps.first[static_cast<size_t>(y)] + taps.count[static_cast<size_t>(y)]);
    }
  }
  const cv::Rect rows(crop.x, rows_first, crop.width, rows_end - rows_first);
  if (size.width == src.cols) {
    return vertical ? Vertical(src(rows), taps, crop.y, crop.height, rows_first) : src(rows).clone();
  }
  const cv::Mat wide = Horizontal(src, size.width, filter, crop.x, crop.width, rows_first, rows.height);
  return vertical ? Vertical(wide, taps, crop.y, crop.height, rows_first) : wide;
}

void AllowAvx2Resize(bool allow) { allow_avx2 = allow; }

cv::Mat ResizeLikePil(const cv::Mat& src, cv::Size size, ResizeFilter filter) {
  return ResizeLikePil(src, size, filter, cv::Rect(0, 0, size.width, size.height));
}

}  // namespace graft::core
