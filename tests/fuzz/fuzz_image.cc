// Image bytes from a client: header probe, decode (JPEG, PNG, BMP, WebP, TIFF)
// and preprocessing, as Predict and dataset ingestion run them.
#include <cstdint>
#include <string_view>

#include "core/data/decode_budget.h"
#include "core/data/image_codec.h"
#include "core/data/transforms.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace graft::core;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const auto header = ProbeImage(bytes);
  // Small limits keep each run fast; the checks are the same at any size.
  static DecodeBudget budget(64LL << 20);
  const auto image = DecodeImage(bytes, DecodeLimits{1'000'000, &budget});
  if (!image.ok()) return 0;
  // Whatever decodes was probed first, and the probe never under-reports the
  // pixels the decoder produced: the pixel and memory limits hold.
  GRAFT_FUZZ_ASSERT(header.ok());
  GRAFT_FUZZ_ASSERT(static_cast<int64_t>(image->rows) * image->cols <= header->width * header->height);
  GRAFT_FUZZ_ASSERT(image->channels() == 3 && image->depth() == CV_8U);
  GRAFT_FUZZ_ASSERT(budget.in_use() == 0);  // every reservation returned
  Preprocessing p;
  p.height = p.width = 16;
  p.resize_size = 18;
  p.interpolation = size % 2 == 0 ? "bilinear" : "bicubic";
  const auto tensor = PreprocessImage(*image, p);
  GRAFT_FUZZ_ASSERT(tensor.ok());
  GRAFT_FUZZ_ASSERT(tensor->size(0) == 3 && tensor->size(1) == 16 && tensor->size(2) == 16);
  GRAFT_FUZZ_ASSERT(tensor->isfinite().all().item<bool>());
  return 0;
}
