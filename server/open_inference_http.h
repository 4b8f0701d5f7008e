#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "server/auth.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/open_inference.h"

namespace graft::server {

// The header that says how long a request's or response's JSON part is when
// binary tensor data follows it.
inline constexpr char kInferenceHeaderLength[] = "Inference-Header-Content-Length";

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8000;  // 0 picks a free port
  // PEM files as for the gRPC port: both set, HTTPS; client_ca set, clients
  // must present a certificate it signed.
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  int64_t max_body_bytes = 64 << 20;            // --max_message_bytes, as gRPC
  int64_t body_budget_bytes = 1LL << 30;        // --max_http_body_budget_bytes
  int max_connections = 256;                    // --max_http_connections
  int workers = 16;
  int timeout_seconds = 30;                     // --http_request_timeout_s: a request's header, its body, an answer
  int idle_timeout_seconds = 5;                 // --http_idle_timeout_s: between requests on a connection
};

// The Open Inference Protocol's HTTP/JSON endpoints (/v2, /v2/health/live|ready,
// /v2/models/{m}[/versions/{v}][/ready|/infer]) on HttpServer (Boost.Beast),
// as the metrics endpoint: bodies bounded while they are read, deadlines and
// a connection cap (http_server.h). BYTES inputs are base64 strings in JSON; Triton's
// binary tensor data extension carries raw tensors after the JSON header.
// The same tokens (Authorization: Bearer) as gRPC; errors are {"error": msg}
// with the HTTP status of their code (HttpStatusOf).
class OpenInferenceHttp {
 public:
  // The routes as labelled in graft_rpc_* metrics ("REST <route>").
  static std::vector<std::string> MetricLabels();

  static absl::StatusOr<std::unique_ptr<OpenInferenceHttp>> Start(const HttpOptions& options, const OpenInference& oip,
                                                                  const Auth& auth, Metrics& metrics,
                                                                  core::DecodeBudget* budget);
  ~OpenInferenceHttp();
  int port() const { return port_; }
  // Stops accepting; requests in flight finish.
  void Stop();

 private:
  OpenInferenceHttp() = default;
  std::unique_ptr<HttpServer> http_;
  int port_ = 0;
};

// The conversion between the protocol's JSON request body (with its binary
// tail, `json_bytes` long JSON first) and a ModelInferRequest: exposed for
// the fuzz target and tests. `binary_outputs`: the outputs to answer in
// binary (by name; "*": all).
struct JsonInferRequest {
  inference::ModelInferRequest request;
  std::vector<std::string> binary_outputs;
};
absl::StatusOr<JsonInferRequest> ParseJsonInferRequest(const std::string& body, size_t json_bytes);
// The memory a JSON text takes once parsed, measured from its values, object
// members and string bytes in one linear pass; INVALID_ARGUMENT when it nests
// deeper than the protocol allows (16).
absl::StatusOr<int64_t> JsonMemoryEstimate(std::string_view text);
// The answer's JSON and the binary tail of the outputs in `binary_outputs`
// (`response` raw or typed as OpenInference made it).
struct JsonInferResponse {
  std::string json;
  std::string binary;
};
absl::StatusOr<JsonInferResponse> ToJsonInferResponse(const inference::ModelInferResponse& response,
                                                      const std::vector<std::string>& binary_outputs);

}  // namespace graft::server
