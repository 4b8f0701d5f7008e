// An Open Inference Protocol REST body as a client sends it: JSON, then
// (Triton's binary data extension) raw tensors. The first two bytes are the
// JSON part's length (Inference-Header-Content-Length). Parsed into the
// protocol's message; every input's BYTES in raw form split as the server
// splits them; and the answer made of it converted back to JSON.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "server/open_inference.h"
#include "server/open_inference_http.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace graft;
  if (size < 2) return 0;
  const size_t json_bytes = std::min<size_t>(size - 2, data[0] | (size_t{data[1]} << 8));
  const std::string body(reinterpret_cast<const char*>(data) + 2, size - 2);
  auto parsed = server::ParseJsonInferRequest(body, json_bytes);
  if (!parsed.ok()) return 0;
  const inference::ModelInferRequest& r = parsed->request;
  // The binary tail is all taken, input by input, and nothing beyond it.
  size_t raw = 0;
  for (const std::string& part : r.raw_input_contents()) raw += part.size();
  GRAFT_FUZZ_ASSERT(raw == body.size() - json_bytes);
  GRAFT_FUZZ_ASSERT(r.raw_input_contents_size() == 0 || r.raw_input_contents_size() == r.inputs_size());
  // Echo each input as an output, typed and raw, and convert the answer.
  inference::ModelInferResponse typed, rawform;
  for (int i = 0; i < r.inputs_size(); ++i) {
    const auto& in = r.inputs(i);
    if (in.datatype() != "BYTES" && in.datatype() != "FP32") continue;
    for (auto* response : {&typed, &rawform}) {
      auto* out = response->add_outputs();
      out->set_name(in.name());
      out->set_datatype(in.datatype());
      out->add_shape(in.datatype() == "BYTES" ? in.contents().bytes_contents_size()
                                              : in.contents().fp32_contents_size());
    }
    *typed.mutable_outputs(typed.outputs_size() - 1)->mutable_contents() = in.contents();
    std::string bytes;
    if (in.datatype() == "BYTES") {
      for (const std::string& e : in.contents().bytes_contents()) server::AppendRawBytes(e, &bytes);
      auto split = server::SplitRawBytes(bytes, in.contents().bytes_contents_size(), in.name());
      GRAFT_FUZZ_ASSERT(split.ok());
      GRAFT_FUZZ_ASSERT(static_cast<int>(split->size()) == in.contents().bytes_contents_size());
    } else {
      bytes.assign(reinterpret_cast<const char*>(in.contents().fp32_contents().data()),
                   4 * static_cast<size_t>(in.contents().fp32_contents_size()));
    }
    rawform.add_raw_output_contents(std::move(bytes));
  }
  if (typed.outputs_size() > 0) {
    auto a = server::ToJsonInferResponse(typed, parsed->binary_outputs);
    auto b = server::ToJsonInferResponse(rawform, parsed->binary_outputs);
    GRAFT_FUZZ_ASSERT(a.ok() && b.ok());
    GRAFT_FUZZ_ASSERT(a->binary == b->binary);
    GRAFT_FUZZ_ASSERT(nlohmann::json::parse(a->json, nullptr, false) == nlohmann::json::parse(b->json, nullptr, false));
  }
  // Split arbitrary bytes as raw BYTES contents: never reads past the end.
  (void)server::SplitRawBytes(body, 3, "fuzz");
  return 0;
}
