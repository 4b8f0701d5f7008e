#include "server/open_inference_http.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/util/json.h"
#include "core/util/limit_error.h"
#include "core/util/status_macros.h"
#include "server/http_server.h"
#include "server/little_endian.h"
#include "server/request_check.h"
#include "server/status_util.h"

namespace graft::server {
namespace {

using nlohmann::json;

constexpr int kFetchWaitSeconds = 30;

std::string PercentDecoded(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    int hi = 0, lo = 0;
    const auto hex = [](char c, int* v) {
      if (c >= '0' && c <= '9') return *v = c - '0', true;
      if (c >= 'a' && c <= 'f') return *v = c - 'a' + 10, true;
      if (c >= 'A' && c <= 'F') return *v = c - 'A' + 10, true;
      return false;
    };
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1], &hi) && hex(s[i + 2], &lo)) {
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace

std::vector<std::string> OpenInferenceHttp::MetricLabels() {
  return {"REST /v2",
          "REST /v2/health/live",
          "REST /v2/health/ready",
          "REST /v2/models/{m}",
          "REST /v2/models/{m}/ready",
          "REST /v2/models/{m}/infer",
          "REST (refused)"};
}

absl::StatusOr<std::unique_ptr<OpenInferenceHttp>> OpenInferenceHttp::Start(const HttpOptions& options,
                                                                            const OpenInference& oip, const Auth& auth,
                                                                            Metrics& metrics,
                                                                            core::DecodeBudget* budget) {
  std::unique_ptr<OpenInferenceHttp> s(new OpenInferenceHttp());
  HttpServerOptions server_options;
  server_options.what = "REST";
  server_options.host = options.host;
  server_options.port = options.port;
  server_options.tls_cert = options.tls_cert;
  server_options.tls_key = options.tls_key;
  server_options.tls_client_ca = options.tls_client_ca;
  server_options.workers = options.workers;
  server_options.max_body_bytes = options.max_body_bytes;
  server_options.body_budget_bytes = options.body_budget_bytes;
  server_options.max_connections = options.max_connections;
  server_options.request_timeout_s = options.timeout_seconds;
  server_options.write_timeout_s = options.timeout_seconds;
  server_options.idle_timeout_s = options.idle_timeout_seconds;
  s->http_ = std::make_unique<HttpServer>(server_options);
  HttpServer& http = *s->http_;

  // Runs `handle`, answers its error as {"error": message}, and counts it.
  using Handler = std::function<absl::Status(const HttpRequest&, HttpResponse&)>;
  const auto route = [&metrics](const std::string& label, Handler handle) {
    return [&metrics, label, handle = std::move(handle)](const HttpRequest& request, HttpResponse& response) {
      const auto start = std::chrono::steady_clock::now();
      absl::Status status;
      try {
        status = handle(request, response);
      } catch (const std::exception& e) {
        status = absl::InternalError(absl::StrCat("internal error: ", e.what()));
      }
      if (!status.ok()) {
        response = HttpResponse();
        response.status = HttpStatusOf(status.code());
        if (status.code() == absl::StatusCode::kUnauthenticated) response.headers.emplace_back("WWW-Authenticate", "Bearer");
        response.content_type = "application/json";
        json error{{"error", CappedMessage(status.message())}};
        if (const std::string flag = core::LimitFlagOf(status); !flag.empty()) error["limit_flag"] = flag;
        response.body = core::DumpJson(error);
      }
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      metrics.ObserveRpc(label, absl::StatusCodeToString(status.code()), seconds, core::LimitFlagOf(status));
    };
  };
  // Each route is its gRPC method's twin, with that method's role (MethodRoles).
  const auto who = [&auth](const HttpRequest& request, const std::string& method) {
    return auth.AuthorizeHeader(request.Header("Authorization"), "inference.GRPCInferenceService/" + method);
  };
  // The model segment is percent-decoded, so that another principal's model
  // is /v2/models/OWNER%2FNAME.
  const auto model_of = [](const HttpRequest& request) {
    return request.matches.size() > 1 ? PercentDecoded(request.matches[1]) : std::string();
  };
  const auto version_of = [](const HttpRequest& request) {
    return request.matches.size() > 2 ? request.matches[2] : std::string();
  };
  const auto json_content = [](HttpResponse& response, std::string body) {
    response.content_type = "application/json";
    response.body = std::move(body);
  };

  http.Route("GET", "/v2/health/live", route("REST /v2/health/live", [](const HttpRequest&, HttpResponse& response) {
               response.status = 200;
               return absl::OkStatus();
             }));
  http.Route("GET", "/v2/health/ready",
             route("REST /v2/health/ready", [&oip](const HttpRequest&, HttpResponse& response) {
               response.status = oip.Ready() ? 200 : 400;
               return absl::OkStatus();
             }));
  http.Route("GET", "/v2", route("REST /v2", [&oip, who, json_content](const HttpRequest& request,
                                                                       HttpResponse& response) {
               RETURN_IF_ERROR(who(request, "ServerMetadata").status());
               const auto m = oip.ServerMetadata();
               json_content(response, core::DumpJson(json{{"name", m.name()},
                                                {"version", m.version()},
                                                {"extensions", std::vector<std::string>(m.extensions().begin(),
                                                                                        m.extensions().end())}}));
               return absl::OkStatus();
             }));
  const std::string model = R"(/v2/models/([^/]+)(?:/versions/([^/]+))?)";
  http.Route("GET", model,
             route("REST /v2/models/{m}", [&oip, who, model_of, version_of, json_content](const HttpRequest& request,
                                                                                          HttpResponse& response) {
               ASSIGN_OR_RETURN(const core::Principal p, who(request, "ModelMetadata"));
               ASSIGN_OR_RETURN(const auto m, oip.ModelMetadata(p, model_of(request), version_of(request)));
               const auto tensors = [](const auto& list) {
                 json out = json::array();
                 for (const auto& t : list) {
                   out.push_back({{"name", t.name()},
                                  {"datatype", t.datatype()},
                                  {"shape", std::vector<int64_t>(t.shape().begin(), t.shape().end())}});
                 }
                 return out;
               };
               json_content(response,
                            core::DumpJson(json{{"name", m.name()},
                                      {"versions", std::vector<std::string>(m.versions().begin(), m.versions().end())},
                                      {"platform", m.platform()},
                                      {"inputs", tensors(m.inputs())},
                                      {"outputs", tensors(m.outputs())}}));
               return absl::OkStatus();
             }));
  http.Route("GET", model + "/ready",
             route("REST /v2/models/{m}/ready", [&oip, who, model_of, version_of](const HttpRequest& request,
                                                                                  HttpResponse& response) {
               ASSIGN_OR_RETURN(const core::Principal p, who(request, "ModelReady"));
               ASSIGN_OR_RETURN(const bool ready, oip.ModelReady(p, model_of(request), version_of(request)));
               response.status = ready ? 200 : 400;
               return absl::OkStatus();
             }));
  http.Route(
      "POST", model + "/infer",
      route("REST /v2/models/{m}/infer", [&oip, who, model_of, version_of, budget, json_content](
                                             const HttpRequest& request, HttpResponse& response) {
        ASSIGN_OR_RETURN(const core::Principal p, who(request, "ModelInfer"));
        size_t json_bytes = request.body.size();
        if (const std::string* header = request.Header(kInferenceHeaderLength)) {
          if (!absl::SimpleAtoi(*header, &json_bytes)) {
            return absl::InvalidArgumentError(absl::StrCat(kInferenceHeaderLength, " must be a byte count"));
          }
        }
        // The parsed JSON document's memory, held while it is converted:
        // measured from this body's values, members and strings.
        std::optional<core::DecodeBudget::Reservation> held;
        if (budget != nullptr && json_bytes > 0) {
          ASSIGN_OR_RETURN(const int64_t bytes,
                           JsonMemoryEstimate(std::string_view(request.body).substr(0, json_bytes)));
          ASSIGN_OR_RETURN(auto reservation,
                           budget->Reserve(bytes, absl::StrCat("a JSON request of ", json_bytes,
                                                               " bytes (send large tensors as binary data)")));
          held.emplace(std::move(reservation));
        }
        ASSIGN_OR_RETURN(JsonInferRequest parsed, ParseJsonInferRequest(request.body, json_bytes));
        held.reset();
        RETURN_IF_ERROR(CheckStringFields(parsed.request, MaxStringFieldBytes()));
        parsed.request.set_model_name(model_of(request));
        parsed.request.set_model_version(version_of(request));
        inference::ModelInferResponse answer;
        // HTTP carries no deadline: a first-use weights fetch is waited
        // for as long as an answer may take to write, or until shutdown.
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kFetchWaitSeconds);
        const core::CancelledFn cancelled = [&oip, deadline] {
          return !oip.Ready() || std::chrono::steady_clock::now() > deadline;
        };
        const std::string* routing_key = request.Header(kRoutingKeyHeader);
        RETURN_IF_ERROR(oip.ModelInfer(p, parsed.request, !parsed.binary_outputs.empty(), cancelled, &answer,
                                       routing_key != nullptr ? *routing_key : std::string()));
        ASSIGN_OR_RETURN(const JsonInferResponse out, ToJsonInferResponse(answer, parsed.binary_outputs));
        if (out.binary.empty()) {
          json_content(response, out.json);
        } else {
          response.headers.emplace_back(kInferenceHeaderLength, std::to_string(out.json.size()));
          response.content_type = "application/octet-stream";
          response.body = out.json + out.binary;
        }
        return absl::OkStatus();
      }),
      /*takes_body=*/true);
  http.OnNotFound([](const HttpRequest& request, HttpResponse& response) {
    response.status = 404;
    response.content_type = "application/json";
    response.body = core::DumpJson(json{{"error", absl::StrCat("no endpoint ", request.method, " ", request.path.substr(0, 256),
                                                     "; graftd serves the Open Inference Protocol under /v2")}});
  });
  http.FormatErrors([](const std::string& message, HttpResponse& response) {
    response.content_type = "application/json";
    response.body = core::DumpJson(json{{"error", message}});
  });
  // Refused before any handler ran (too large, too slow, too many
  // connections): counted with the limit flag each names.
  http.OnRefusal([&metrics](int status, const std::string&, const std::string& flag) {
    const char* code = status == 408   ? "DEADLINE_EXCEEDED"
                       : status == 413 || status == 431 || status == 503 ? "RESOURCE_EXHAUSTED"
                                                                          : "INVALID_ARGUMENT";
    metrics.ObserveRpc("REST (refused)", code, 0, flag);
  });
  if (absl::Status started = http.Start(); !started.ok()) {
    if (started.code() == absl::StatusCode::kUnavailable) {
      return absl::UnavailableError(absl::StrCat("cannot serve HTTP on ", options.host, ":", options.port,
                                                 " (--http_port; -1 turns it off): ", started.message()));
    }
    return started;
  }
  s->port_ = http.port();
  return s;
}

void OpenInferenceHttp::Stop() {
  if (http_) http_->Stop();
}

OpenInferenceHttp::~OpenInferenceHttp() { Stop(); }

}  // namespace graft::server
