#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <opencv2/core/mat.hpp>

#include "absl/status/statusor.h"

namespace graft::core {

struct ImageHeader {
  std::string format;  // "jpeg", "png", "bmp", "webp", "tiff"
  int64_t width = 0;
  int64_t height = 0;
};

// Reads the format and dimensions from the header alone, without decoding.
// INVALID_ARGUMENT when the bytes are not a supported image or the header is
// cut short.
absl::StatusOr<ImageHeader> ProbeImage(std::string_view bytes);

class DecodeBudget;

struct DecodeLimits {
  int64_t max_pixels = 40'000'000;
  // Shared memory budget of decodes in flight; null: unbounded (trusted data).
  DecodeBudget* budget = nullptr;
};

// The memory a decode of `header` may hold at its peak (decoder buffer, BGR
// and RGB copies): what it reserves from a DecodeBudget.
int64_t DecodeBytesEstimate(const ImageHeader& header);

// Decodes JPEG, PNG, BMP, WebP or TIFF bytes to an 8-bit RGB image. Checks the
// header against `limits` before decoding and rejects truncated data. The
// header probe reads what the decoders read (for TIFF: one page, tags in
// order, each once), so the pixel limit holds for what is decoded.
absl::StatusOr<cv::Mat> DecodeImage(std::string_view bytes, const DecodeLimits& limits);

// A JPEG (quality 85) of the image in `bytes`, scaled down (never up) with
// area averaging to fit max_side x max_side: the thumbnails of reports.
absl::StatusOr<std::string> JpegThumbnail(std::string_view bytes, int max_side, const DecodeLimits& limits);

}  // namespace graft::core
