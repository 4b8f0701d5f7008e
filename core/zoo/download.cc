#include "core/zoo/download.h"

#include <set>

#include <curl/curl.h>
#include <openssl/evp.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <regex>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace graft::core {
namespace {

namespace fs = std::filesystem;

// The files being downloaded now: two downloads of one file would write one
// partial file.
ABSL_CONST_INIT absl::Mutex active_mu(absl::kConstInit);
auto* const active ABSL_GUARDED_BY(active_mu) = new std::set<std::string>();

struct Transfer {
  std::FILE* file = nullptr;
  EVP_MD_CTX* sha = nullptr;
  int64_t done = 0;
  int64_t max_bytes = 0;
  bool write_failed = false;
  bool too_large = false;
  const std::function<void(const DownloadProgress&)>* progress = nullptr;
  const std::function<bool()>* keep_going = nullptr;
};

size_t OnData(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t bytes = size * n;
  if (t->done + static_cast<int64_t>(bytes) > t->max_bytes) {
    t->too_large = true;
    return 0;
  }
  if (std::fwrite(data, 1, bytes, t->file) != bytes) {
    t->write_failed = true;
    return 0;  // makes curl stop with CURLE_WRITE_ERROR
  }
  EVP_DigestUpdate(t->sha, data, bytes);
  t->done += static_cast<int64_t>(bytes);
  return bytes;
}

int OnProgress(void* user, curl_off_t total, curl_off_t now, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  if (t->keep_going != nullptr && *t->keep_going && !(*t->keep_going)()) return 1;  // abort
  if (t->progress != nullptr && *t->progress) (*t->progress)({static_cast<int64_t>(now), static_cast<int64_t>(total)});
  return 0;
}

std::string Hex(const unsigned char* d, unsigned n) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < n; ++i) {
    out.push_back(kDigits[d[i] >> 4]);
    out.push_back(kDigits[d[i] & 15]);
  }
  return out;
}

}  // namespace

std::string HashPrefix(const std::string& file_name) {
  static const std::regex kHash(R"(-([a-f0-9]{6,64})\.[A-Za-z]+$)");
  std::smatch m;
  return std::regex_search(file_name, m, kHash) ? m[1].str() : std::string();
}

absl::StatusOr<std::string> DownloadVerified(const std::string& url, const std::string& dir,
                                             const std::string& file_name,
                                             const std::function<void(const DownloadProgress&)>& progress,
                                             const std::function<bool()>& keep_going, int64_t max_bytes) {
  static const bool curl_ready = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;  // once, thread-safe
  if (!curl_ready) return absl::InternalError("cannot initialise libcurl");
  const std::string expected = HashPrefix(file_name);
  if (expected.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("'", file_name, "' carries no hash prefix to verify against"));
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  const fs::path final_path = fs::path(dir) / file_name;
  {
    absl::MutexLock lock(&active_mu);
    if (!active->insert(final_path.string()).second) {
      return absl::UnavailableError(absl::StrCat(file_name, " is already being downloaded; retry when it is done"));
    }
  }
  struct Done {
    std::string path;
    ~Done() {
      absl::MutexLock lock(&active_mu);
      active->erase(path);
    }
  } done{final_path.string()};
  const fs::path partial = fs::path(dir) / ("." + file_name + ".partial");
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> sha(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!curl || !sha) return absl::InternalError("cannot initialise libcurl or SHA-256");
  EVP_DigestInit_ex(sha.get(), EVP_sha256(), nullptr);
  Transfer t;
  t.file = std::fopen(partial.c_str(), "wb");
  if (t.file == nullptr) return absl::FailedPreconditionError(absl::StrCat("cannot write ", partial.string()));
  t.sha = sha.get();
  t.progress = &progress;
  t.keep_going = &keep_going;
  t.max_bytes = max_bytes;
  curl_easy_setopt(curl.get(), CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(max_bytes));
  char error[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_CONNECTTIMEOUT, 30L);
  curl_easy_setopt(curl.get(), CURLOPT_LOW_SPEED_LIMIT, 1L);    // abort a transfer stalled
  curl_easy_setopt(curl.get(), CURLOPT_LOW_SPEED_TIME, 60L);    // for a minute
  curl_easy_setopt(curl.get(), CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, OnData);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(curl.get(), CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl.get(), CURLOPT_XFERINFOFUNCTION, OnProgress);
  curl_easy_setopt(curl.get(), CURLOPT_XFERINFODATA, &t);
  const CURLcode rc = curl_easy_perform(curl.get());
  const bool closed = std::fclose(t.file) == 0;
  auto fail = [&](absl::Status s) {
    fs::remove(partial, ec);
    return s;
  };
  if (rc == CURLE_ABORTED_BY_CALLBACK) return fail(absl::CancelledError("download cancelled"));
  if (t.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
    return fail(absl::ResourceExhaustedError(
        absl::StrCat("download of ", url, " is larger than ", max_bytes, " bytes; nothing was kept")));
  }
  if (rc == CURLE_PARTIAL_FILE) {
    curl_off_t length = -1;
    curl_easy_getinfo(curl.get(), CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
    return fail(absl::DataLossError(absl::StrCat("download of ", url, " ended early: got ", t.done, " of ",
                                                 static_cast<int64_t>(length), " bytes; nothing was kept")));
  }
  if (rc != CURLE_OK || t.write_failed || !closed) {
    return fail(absl::UnavailableError(absl::StrCat("download of ", url, " failed: ",
                                                    t.write_failed || !closed ? "cannot write the file"
                                                    : error[0] != 0            ? error
                                                                               : curl_easy_strerror(rc))));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_DigestFinal_ex(sha.get(), digest, &len);
  const std::string actual = Hex(digest, len);
  if (actual.rfind(expected, 0) != 0) {
    return fail(absl::DataLossError(absl::StrCat("downloaded ", file_name, " (", t.done, " bytes) has SHA-256 ",
                                                 actual, ", which does not start with ", expected,
                                                 "; the file was corrupted or truncated and was not kept")));
  }
  fs::rename(partial, final_path, ec);
  if (ec) return fail(absl::InternalError(absl::StrCat("cannot move the download into place: ", ec.message())));
  return final_path.string();
}

}  // namespace graft::core
