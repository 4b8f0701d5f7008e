#include "core/data/image_codec.h"

#include "core/data/decode_budget.h"

#include <opencv2/imgcodecs.hpp>

#include <algorithm>
#include <vector>
#include <opencv2/imgproc.hpp>

#include "absl/strings/str_cat.h"
#include "core/data/jpeg.h"
#include "core/util/limit_error.h"
#include "core/util/status_macros.h"
#include "core/util/torch_status.h"

namespace graft::core {
namespace {

uint32_t Be16(std::string_view b, size_t i) {
  return (static_cast<uint8_t>(b[i]) << 8) | static_cast<uint8_t>(b[i + 1]);
}
uint32_t Be32(std::string_view b, size_t i) { return (Be16(b, i) << 16) | Be16(b, i + 2); }
uint32_t Le16(std::string_view b, size_t i) {
  return static_cast<uint8_t>(b[i]) | (static_cast<uint8_t>(b[i + 1]) << 8);
}
uint32_t Le32(std::string_view b, size_t i) { return Le16(b, i) | (Le16(b, i + 2) << 16); }
uint32_t Le24(std::string_view b, size_t i) { return Le16(b, i) | (static_cast<uint8_t>(b[i + 2]) << 16); }

absl::Status Short(const char* format) {
  return absl::InvalidArgumentError(absl::StrCat("truncated ", format, " header"));
}

absl::StatusOr<ImageHeader> ProbeJpeg(std::string_view b) {
  size_t i = 2;
  while (i + 4 <= b.size()) {
    if (static_cast<uint8_t>(b[i]) != 0xFF) return absl::InvalidArgumentError("corrupt JPEG: bad marker");
    const uint8_t marker = static_cast<uint8_t>(b[i + 1]);
    if (marker == 0xFF) { ++i; continue; }  // fill byte
    if (marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7) || marker == 0x01) { i += 2; continue; }
    const uint32_t len = Be16(b, i + 2);
    const bool sof = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (sof) {
      if (i + 9 > b.size()) return Short("JPEG");
      return ImageHeader{"jpeg", Be16(b, i + 7), Be16(b, i + 5)};
    }
    if (marker == 0xDA || marker == 0xD9) break;  // scan data before any frame header
    i += 2 + len;
  }
  return absl::InvalidArgumentError("corrupt or truncated JPEG: no frame header");
}

absl::StatusOr<ImageHeader> ProbeWebp(std::string_view b) {
  if (b.size() < 30) return Short("WebP");
  const std::string_view chunk = b.substr(12, 4);
  if (chunk == "VP8 ") return ImageHeader{"webp", Le16(b, 26) & 0x3FFF, Le16(b, 28) & 0x3FFF};
  if (chunk == "VP8L") {
    const uint32_t bits = Le32(b, 21);
    return ImageHeader{"webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1};
  }
  if (chunk == "VP8X") return ImageHeader{"webp", Le24(b, 24) + 1, Le24(b, 27) + 1};
  return absl::InvalidArgumentError("unsupported WebP chunk");
}

absl::StatusOr<ImageHeader> ProbeTiff(std::string_view b) {
  const bool le = b[0] == 'I';
  auto u16 = [&](size_t i) { return le ? Le16(b, i) : Be16(b, i); };
  auto u32 = [&](size_t i) { return le ? Le32(b, i) : Be32(b, i); };
  if (b.size() < 8) return Short("TIFF");
  const size_t ifd = u32(4);
  if (ifd < 8 || ifd + 2 > b.size()) return Short("TIFF");
  const size_t count = u16(ifd);
  if (ifd + 2 + 12 * count + 4 > b.size()) return Short("TIFF");
  ImageHeader h{"tiff", 0, 0};
  uint32_t previous = 0;
  for (size_t k = 0; k < count; ++k) {
    const size_t e = ifd + 2 + 12 * k;
    const uint32_t tag = u16(e), type = u16(e + 2), n = u32(e + 4);
    // Decoders disagree on repeated or unordered tags (libtiff keeps the
    // first width, a last-wins reader the last): refuse what is ambiguous.
    if (k > 0 && tag <= previous) {
      return absl::InvalidArgumentError(absl::StrCat("TIFF tags out of order or repeated (tag ", tag, " after ",
                                                     previous, "): refused as ambiguous"));
    }
    previous = tag;
    if (tag == 256 || tag == 257) {
      if (n != 1 || (type != 3 && type != 4)) {
        return absl::InvalidArgumentError(absl::StrCat("TIFF dimension tag ", tag, " is not one SHORT or LONG"));
      }
      const uint32_t value = type == 3 ? u16(e + 8) : u32(e + 8);
      (tag == 256 ? h.width : h.height) = value;
    }
    if (tag == 330) return absl::InvalidArgumentError("TIFF with sub-images (SubIFDs) is not supported");
  }
  if (u32(ifd + 2 + 12 * count) != 0) {
    return absl::InvalidArgumentError("multi-page TIFF is not supported: send one image per file");
  }
  if (h.width == 0 || h.height == 0) return absl::InvalidArgumentError("TIFF without image dimensions");
  return h;
}

absl::StatusOr<ImageHeader> ProbeFormat(std::string_view b) {
  if (b.empty()) return absl::InvalidArgumentError("empty image bytes");
  if (b.size() >= 3 && static_cast<uint8_t>(b[0]) == 0xFF && static_cast<uint8_t>(b[1]) == 0xD8) return ProbeJpeg(b);
  if (b.size() >= 8 && b.substr(0, 8) == std::string_view("\x89PNG\r\n\x1a\n", 8)) {
    if (b.size() < 24) return Short("PNG");
    return ImageHeader{"png", Be32(b, 16), Be32(b, 20)};
  }
  if (b.size() >= 2 && b.substr(0, 2) == "BM") {
    if (b.size() < 26) return Short("BMP");
    const int32_t w = static_cast<int32_t>(Le32(b, 18)), h = static_cast<int32_t>(Le32(b, 22));
    return ImageHeader{"bmp", std::abs(static_cast<int64_t>(w)), std::abs(static_cast<int64_t>(h))};
  }
  if (b.size() >= 12 && b.substr(0, 4) == "RIFF" && b.substr(8, 4) == "WEBP") return ProbeWebp(b);
  if (b.size() >= 4 && (b.substr(0, 4) == std::string_view("II*\0", 4) || b.substr(0, 4) == std::string_view("MM\0*", 4))) {
    return ProbeTiff(b);
  }
  if (b.size() >= 6 && (b.substr(0, 6) == "GIF87a" || b.substr(0, 6) == "GIF89a")) {
    return absl::InvalidArgumentError("GIF is not a supported image format (JPEG, PNG, BMP, WebP, TIFF)");
  }
  return absl::InvalidArgumentError("not an image: unrecognised format (expected JPEG, PNG, BMP, WebP or TIFF)");
}

}  // namespace

absl::StatusOr<ImageHeader> ProbeImage(std::string_view b) {
  ASSIGN_OR_RETURN(ImageHeader h, ProbeFormat(b));
  // PNG and TIFF headers can declare sides up to 2^32 - 1, whose products
  // overflow: no decoder accepts such an image, and every size computed from
  // a header stays far inside int64 below this bound.
  constexpr int64_t kMaxSide = int64_t{1} << 24;
  if (h.width > kMaxSide || h.height > kMaxSide) {
    return absl::InvalidArgumentError(absl::StrCat(h.format, " header declares ", h.width, "x", h.height,
                                                   " pixels; a side may be at most ", kMaxSide));
  }
  return h;
}

int64_t DecodeBytesEstimate(const ImageHeader& header) {
  // A 4-channel, 16-bit decode buffer at worst (TIFF), then BGR and RGB copies.
  const int64_t per_pixel = header.format == "tiff" ? 8 + 3 + 3 : 4 + 3 + 3;
  return header.width * header.height * per_pixel;
}

absl::StatusOr<cv::Mat> DecodeImage(std::string_view bytes, const DecodeLimits& limits) {
  ASSIGN_OR_RETURN(const ImageHeader header, ProbeImage(bytes));
  if (header.width <= 0 || header.height <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(header.format, " header declares an empty image"));
  }
  if (header.width * header.height > limits.max_pixels) {
    return LimitError(absl::StatusCode::kInvalidArgument,
                      absl::StrCat(header.format, " image of ", header.width, "x", header.height, " = ",
                                   header.width * header.height, " pixels exceeds the limit of ", limits.max_pixels,
                                   " pixels (--max_image_pixels)"),
                      "max_image_pixels");
  }
  std::optional<DecodeBudget::Reservation> reservation;
  if (limits.budget != nullptr) {
    auto reserved = limits.budget->Reserve(DecodeBytesEstimate(header),
                                           absl::StrCat("a ", header.width, "x", header.height, " ", header.format));
    if (!reserved.ok()) return reserved.status();
    reservation.emplace(std::move(*reserved));
  }
  if (header.format == "jpeg") {
    // libjpeg decodes a truncated file with a warning and grey fill; refuse it.
    const size_t tail = bytes.size() > 4096 ? bytes.size() - 4096 : 0;
    if (bytes.substr(tail).find("\xFF\xD9") == std::string_view::npos) {
      return absl::InvalidArgumentError("truncated JPEG: no end-of-image marker");
    }
  }
  if (header.format == "jpeg") {
    // Straight to RGB: OpenCV would decode to RGB, swap to BGR pixel by
    // pixel, and leave graft to swap back (together a third of decoding).
    ASSIGN_OR_RETURN(std::optional<cv::Mat> rgb,
                     GuardExceptions(absl::StatusCode::kInvalidArgument, "decoding jpeg",
                                     [&] { return DecodeJpegRgb(bytes); }));
    if (rgb.has_value()) return *std::move(rgb);
  }
  return GuardExceptions(absl::StatusCode::kInvalidArgument, "decoding " + header.format,
                         [&]() -> absl::StatusOr<cv::Mat> {
                           const cv::Mat raw(1, static_cast<int>(bytes.size()), CV_8UC1,
                                             const_cast<char*>(bytes.data()));
                           // As PIL (and so torchvision and Keras) reads it:
                           // EXIF orientation is not applied.
                           cv::Mat bgr = cv::imdecode(raw, cv::IMREAD_COLOR | cv::IMREAD_IGNORE_ORIENTATION);
                           if (bgr.empty()) {
                             return absl::InvalidArgumentError(
                                 absl::StrCat("corrupt or truncated ", header.format, ": could not decode"));
                           }
                           cv::Mat rgb;
                           cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
                           return rgb;
                         });
}

absl::StatusOr<std::string> JpegThumbnail(std::string_view bytes, int max_side, const DecodeLimits& limits) {
  if (max_side < 1) return absl::InvalidArgumentError("a thumbnail needs a side of at least 1 pixel");
  ASSIGN_OR_RETURN(const cv::Mat rgb, DecodeImage(bytes, limits));
  return GuardExceptions(absl::StatusCode::kInternal, "making a thumbnail", [&]() -> absl::StatusOr<std::string> {
    const double scale = std::min(1.0, static_cast<double>(max_side) / std::max(rgb.cols, rgb.rows));
    cv::Mat small = rgb;
    if (scale < 1.0) {
      const int w = std::max(1, static_cast<int>(rgb.cols * scale + 0.5));
      const int h = std::max(1, static_cast<int>(rgb.rows * scale + 0.5));
      cv::resize(rgb, small, cv::Size(w, h), 0, 0, cv::INTER_AREA);
    }
    cv::Mat bgr;
    cv::cvtColor(small, bgr, cv::COLOR_RGB2BGR);
    std::vector<uchar> out;
    if (!cv::imencode(".jpg", bgr, out, {cv::IMWRITE_JPEG_QUALITY, 85})) {
      return absl::InternalError("the JPEG encoder refused the thumbnail");
    }
    return std::string(out.begin(), out.end());
  });
}

}  // namespace graft::core
