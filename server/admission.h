#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "core/data/decode_budget.h"

namespace graft::server {

// What one Predict, Embed or ModelInfer may ask for.
struct RequestLimits {
  int max_images = 64;                    // tensor batches counted whole (--max_images_per_request)
  int64_t max_pixels = 100'000'000;       // encoded images, from their headers (--max_request_pixels)
  int64_t max_image_pixels = 40'000'000;  // one image (--max_image_pixels): larger ones are refused by the decoder
  int max_models = 16;                    // models named in one Predict (--max_models_per_predict)
};

// The size of a request, counted before anything is decoded or copied.
class RequestSize {
 public:
  // An encoded image: its pixels from its header (bad or oversized headers
  // are refused per image later by the decoder, with their reason).
  void AddEncoded(const std::string& bytes, const RequestLimits& limits);
  // A float tensor of `values` elements holding `batch` images.
  void AddTensor(int64_t batch, int64_t values);

  int64_t images() const { return images_; }

 private:
  friend class Admission;
  int64_t images_ = 0;
  int64_t pixels_ = 0;
  int64_t tensor_bytes_ = 0;  // received values and the tensor made of them
};

// A request let in: holds its tensors' bytes in the decode budget until destroyed.
class Admission {
 public:
  // RESOURCE_EXHAUSTED naming the flag when the request holds too many images
  // or pixels, or its tensors do not fit the decode budget (null: unbounded).
  static absl::StatusOr<Admission> Admit(const RequestSize& size, const RequestLimits& limits,
                                         core::DecodeBudget* budget);

 private:
  std::unique_ptr<core::DecodeBudget::Reservation> reservation_;
};

}  // namespace graft::server
