#include "core/data/jpeg.h"

// clang-format off
#include <cstdio>  // jpeglib.h needs FILE and size_t first
#include <jpeglib.h>
// clang-format on

#include <csetjmp>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace graft::core {
namespace {

// libjpeg reports a fatal error by calling error_exit, which must not return.
// It jumps back to the setjmp of whichever step below is running; each step
// is a function holding nothing but plain data, so no destructor is skipped.
struct ErrorManager {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void ErrorExit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
  cinfo->err->format_message(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// Warnings (corrupt but decodable data) are left alone, as OpenCV and PIL
// leave them; a missing end of image is caught before decoding starts.
void Silence(j_common_ptr, int) {}

bool StartDecompress(jpeg_decompress_struct* cinfo, ErrorManager* err, const unsigned char* data, unsigned long size,
                     bool* rgb_possible) {
  if (setjmp(err->jump) != 0) return false;
  jpeg_create_decompress(cinfo);
  jpeg_mem_src(cinfo, data, size);
  jpeg_read_header(cinfo, TRUE);
  *rgb_possible = cinfo->jpeg_color_space != JCS_CMYK && cinfo->jpeg_color_space != JCS_YCCK;
  if (!*rgb_possible) return true;
  cinfo->out_color_space = JCS_RGB;
  jpeg_start_decompress(cinfo);
  return true;
}

bool ReadScanlines(jpeg_decompress_struct* cinfo, ErrorManager* err, unsigned char* base, size_t step) {
  if (setjmp(err->jump) != 0) return false;
  while (cinfo->output_scanline < cinfo->output_height) {
    JSAMPROW row = base + step * cinfo->output_scanline;
    jpeg_read_scanlines(cinfo, &row, 1);
  }
  jpeg_finish_decompress(cinfo);
  return true;
}

}  // namespace

absl::StatusOr<std::optional<cv::Mat>> DecodeJpegRgb(std::string_view bytes) {
  jpeg_decompress_struct cinfo;
  ErrorManager err;
  std::memset(&cinfo, 0, sizeof(cinfo));
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = ErrorExit;
  err.mgr.emit_message = Silence;
  err.message[0] = '\0';
  struct Destroy {
    jpeg_decompress_struct* c;
    ~Destroy() { jpeg_destroy_decompress(c); }
  } destroy{&cinfo};
  bool rgb_possible = false;
  if (!StartDecompress(&cinfo, &err, reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(),
                       &rgb_possible)) {
    return absl::InvalidArgumentError(absl::StrCat("corrupt jpeg: ", err.message));
  }
  if (!rgb_possible) return std::optional<cv::Mat>();
  if (cinfo.output_components != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("jpeg decoded to ", cinfo.output_components, " components, not RGB"));
  }
  cv::Mat rgb(static_cast<int>(cinfo.output_height), static_cast<int>(cinfo.output_width), CV_8UC3);
  if (!ReadScanlines(&cinfo, &err, rgb.data, rgb.step)) {
    return absl::InvalidArgumentError(absl::StrCat("corrupt jpeg: ", err.message));
  }
  return std::optional<cv::Mat>(std::move(rgb));
}

}  // namespace graft::core
