#include "core/util/ids.h"

#include <openssl/evp.h>

#include <cctype>
#include <chrono>
#include <random>

#include "absl/strings/escaping.h"

namespace graft::core {

std::string NewId(const std::string& prefix) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id = prefix + "-";
  uint64_t bits = rng();
  for (int i = 0; i < 12; ++i) {
    id += kHex[bits & 0xf];
    bits >>= 4;
  }
  return id;
}

bool IsPlainName(const std::string& text, size_t max_chars) {
  if (text.empty() || text.size() > max_chars) return false;
  for (char c : text) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') return false;
  }
  return true;
}

bool LooksLikeId(const std::string& text) {
  const size_t dash = text.find('-');
  if (dash == std::string::npos || dash == 0 || text.size() != dash + 13) return false;
  for (size_t i = 0; i < dash; ++i) {
    if (text[i] < 'a' || text[i] > 'z') return false;
  }
  for (size_t i = dash + 1; i < text.size(); ++i) {
    const char c = text[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string Sha256Hex(const std::string& data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(digest), len));
}

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace graft::core
