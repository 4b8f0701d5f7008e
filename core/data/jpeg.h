#pragma once

#include <optional>
#include <string_view>

#include <opencv2/core/mat.hpp>

#include "absl/status/statusor.h"

namespace graft::core {

// Decodes a baseline or progressive JPEG straight to 8-bit RGB with libjpeg's
// defaults (accurate integer IDCT, fancy upsampling): the pixels PIL, and so
// torchvision and Keras, decode. EXIF orientation is not applied, as PIL does
// not. std::nullopt for colour spaces libjpeg cannot convert to RGB itself
// (CMYK, YCCK); INVALID_ARGUMENT naming libjpeg's complaint for corrupt data.
absl::StatusOr<std::optional<cv::Mat>> DecodeJpegRgb(std::string_view bytes);

}  // namespace graft::core
