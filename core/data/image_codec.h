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

struct DecodeLimits {
  int64_t max_pixels = 40'000'000;
};

// Decodes JPEG, PNG, BMP, WebP or TIFF bytes to an 8-bit RGB image. Checks the
// header against `limits` before decoding and rejects truncated data.
absl::StatusOr<cv::Mat> DecodeImage(std::string_view bytes, const DecodeLimits& limits);

}  // namespace graft::core
