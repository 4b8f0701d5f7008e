#include "server/admission.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/data/image_codec.h"
#include "core/util/limit_error.h"

namespace graft::server {

void RequestSize::AddEncoded(const std::string& bytes, const RequestLimits& limits) {
  ++images_;
  const auto header = core::ProbeImage(bytes);
  if (header.ok() && header->width * header->height <= limits.max_image_pixels) {
    pixels_ += header->width * header->height;
  }
}

void RequestSize::AddTensor(int64_t batch, int64_t values) {
  images_ += std::max<int64_t>(batch, 1);
  tensor_bytes_ += values * 4 * 2;
}

absl::StatusOr<Admission> Admission::Admit(const RequestSize& size, const RequestLimits& limits,
                                           core::DecodeBudget* budget) {
  if (size.images_ > limits.max_images) {
    return core::LimitError(absl::StatusCode::kResourceExhausted,
                            absl::StrCat("the request holds ", size.images_, " images; at most ", limits.max_images,
                                         " (--max_images_per_request)"),
                            "max_images_per_request");
  }
  // Decoding time follows pixels: one request may not hold a batcher long.
  if (size.pixels_ > limits.max_pixels) {
    return core::LimitError(absl::StatusCode::kResourceExhausted,
                            absl::StrCat("the request's images hold ", size.pixels_, " pixels; at most ",
                                         limits.max_pixels, " (--max_request_pixels)"),
                            "max_request_pixels");
  }
  Admission admission;
  if (budget != nullptr && size.tensor_bytes_ > 0) {
    auto reserved =
        budget->Reserve(size.tensor_bytes_, absl::StrCat("tensor inputs of ", size.tensor_bytes_ / 2, " bytes"));
    if (!reserved.ok()) return reserved.status();
    admission.reservation_ = std::make_unique<core::DecodeBudget::Reservation>(std::move(*reserved));
  }
  return admission;
}

}  // namespace graft::server
