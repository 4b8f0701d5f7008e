#include "core/zoo/archive_check.h"

#include <algorithm>
#include <cstring>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"

// The pickle check of core/zoo/archive_check.h: how deep a pickle's
// containers nest, measured without running it.

namespace graft::core {
namespace {

// ---- pickle ----------------------------------------------------------------

// Simulates the pickle machine's stack with one node per container (leaves
// are -1) and records parent -> child edges, then measures the longest chain.
class PickleShape {
 public:
  explicit PickleShape(const std::string& data) : d_(data) {}

  absl::Status Run() {
    while (true) {
      if (pos_ >= d_.size()) return Bad("ends without STOP");
      const auto op = static_cast<unsigned char>(d_[pos_++]);
      if (op == '.') return absl::OkStatus();
      RETURN_IF_ERROR(Step(op));
    }
  }

  absl::StatusOr<int> Depth() const {
    const int n = nodes_;
    std::vector<int> first(static_cast<size_t>(n) + 1, 0);
    for (const auto& e : edges_) ++first[static_cast<size_t>(e.first) + 1];
    for (int i = 0; i < n; ++i) first[static_cast<size_t>(i) + 1] += first[static_cast<size_t>(i)];
    std::vector<int> child(edges_.size());
    std::vector<int> fill(first.begin(), first.end() - 1);
    for (const auto& e : edges_) child[static_cast<size_t>(fill[static_cast<size_t>(e.first)]++)] = e.second;
    std::vector<int> depth(static_cast<size_t>(n), 0);  // 0: unvisited, -1: on the path
    int deepest = 0;
    std::vector<std::pair<int, int>> path;  // node, next edge
    for (int root = 0; root < n; ++root) {
      if (depth[static_cast<size_t>(root)] != 0) continue;
      path.push_back({root, first[static_cast<size_t>(root)]});
      depth[static_cast<size_t>(root)] = -1;
      while (!path.empty()) {
        auto& [node, next] = path.back();
        if (next < first[static_cast<size_t>(node) + 1]) {
          const int c = child[static_cast<size_t>(next++)];
          if (depth[static_cast<size_t>(c)] == -1) return absl::InvalidArgumentError("pickle holds a reference cycle");
          if (depth[static_cast<size_t>(c)] == 0) {
            depth[static_cast<size_t>(c)] = -1;
            path.push_back({c, first[static_cast<size_t>(c)]});
          }
          continue;
        }
        int d = 1;
        for (int e = first[static_cast<size_t>(node)]; e < first[static_cast<size_t>(node) + 1]; ++e) {
          d = std::max(d, depth[static_cast<size_t>(child[static_cast<size_t>(e)])] + 1);
        }
        depth[static_cast<size_t>(node)] = d;
        deepest = std::max(deepest, d);
        path.pop_back();
      }
    }
    return deepest;
  }

 private:
  absl::Status Bad(const std::string& why) const {
    return absl::InvalidArgumentError(absl::StrCat("malformed pickle at byte ", pos_, ": ", why));
  }
  absl::Status Skip(uint64_t n) {
    if (n > d_.size() - pos_) return Bad("argument runs past the end");
    pos_ += n;
    return absl::OkStatus();
  }
  absl::StatusOr<uint64_t> Uint(int bytes) {
    if (static_cast<size_t>(bytes) > d_.size() - pos_) return Bad("argument runs past the end");
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(d_[pos_ + i])) << (8 * i);
    pos_ += static_cast<size_t>(bytes);
    return v;
  }
  absl::StatusOr<std::string> Line() {
    const size_t end = d_.find('\n', pos_);
    if (end == std::string::npos) return Bad("line argument without newline");
    std::string s = d_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return s;
  }
  absl::StatusOr<int> Pop() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) return Bad("stack underflow");
    const int v = stack_.back();
    stack_.pop_back();
    return v;
  }
  absl::StatusOr<std::vector<int>> PopMark() {
    if (marks_.empty()) return Bad("no MARK");
    std::vector<int> items(stack_.begin() + static_cast<std::ptrdiff_t>(marks_.back()), stack_.end());
    stack_.resize(marks_.back());
    marks_.pop_back();
    return items;
  }
  int Node(const std::vector<int>& children) {
    const int id = nodes_++;
    for (int c : children) {
      if (c >= 0) edges_.push_back({id, c});
    }
    return id;
  }
  // Adds children to the container on top of the stack.
  absl::Status Extend(const std::vector<int>& children) {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) return Bad("stack underflow");
    int& top = stack_.back();
    if (top < 0) top = Node({});
    for (int c : children) {
      if (c >= 0) edges_.push_back({top, c});
    }
    return absl::OkStatus();
  }
  absl::Status Memo(uint64_t index) {
    if (stack_.empty()) return Bad("memo of an empty stack");
    memo_[index] = stack_.back();
    return absl::OkStatus();
  }
  absl::Status Get(uint64_t index) {
    const auto it = memo_.find(index);
    if (it == memo_.end()) return Bad(absl::StrCat("memo ", index, " was never stored"));
    stack_.push_back(it->second);
    return absl::OkStatus();
  }

  absl::Status Step(unsigned char op) {
    switch (op) {
      // Leaves.
      case 'N': case 0x88: case 0x89: stack_.push_back(-1); return absl::OkStatus();
      case 'I': case 'L': case 'F': case 'S': case 'V': case 'P': {
        ASSIGN_OR_RETURN(std::string unused, Line());
        (void)unused;
        stack_.push_back(-1);
        return absl::OkStatus();
      }
      case 'c': {
        ASSIGN_OR_RETURN(std::string module, Line());
        ASSIGN_OR_RETURN(std::string name, Line());
        stack_.push_back(-1);
        return absl::OkStatus();
      }
      case 'J': RETURN_IF_ERROR(Skip(4)); stack_.push_back(-1); return absl::OkStatus();
      case 'K': RETURN_IF_ERROR(Skip(1)); stack_.push_back(-1); return absl::OkStatus();
      case 'M': RETURN_IF_ERROR(Skip(2)); stack_.push_back(-1); return absl::OkStatus();
      case 'G': RETURN_IF_ERROR(Skip(8)); stack_.push_back(-1); return absl::OkStatus();
      case 0x82: RETURN_IF_ERROR(Skip(1)); stack_.push_back(-1); return absl::OkStatus();
      case 0x83: RETURN_IF_ERROR(Skip(2)); stack_.push_back(-1); return absl::OkStatus();
      case 0x84: RETURN_IF_ERROR(Skip(4)); stack_.push_back(-1); return absl::OkStatus();
      case 0x8a: case 'U': case 0x8c: case 'C': {
        ASSIGN_OR_RETURN(const uint64_t n, Uint(1));
        RETURN_IF_ERROR(Skip(n));
        stack_.push_back(-1);
        return absl::OkStatus();
      }
      case 0x8b: case 'T': case 'X': case 'B': {
        ASSIGN_OR_RETURN(const uint64_t n, Uint(4));
        RETURN_IF_ERROR(Skip(n));
        stack_.push_back(-1);
        return absl::OkStatus();
      }
      case 0x8d: case 0x8e: case 0x96: {
        ASSIGN_OR_RETURN(const uint64_t n, Uint(8));
        RETURN_IF_ERROR(Skip(n));
        stack_.push_back(-1);
        return absl::OkStatus();
      }
      case 0x97: stack_.push_back(-1); return absl::OkStatus();  // NEXT_BUFFER
      case 0x98: return absl::OkStatus();                          // READONLY_BUFFER
      // Framing.
      case 0x80: return Skip(1);
      case 0x95: return Skip(8);
      // Memo.
      case 'p': {
        ASSIGN_OR_RETURN(std::string index, Line());
        return Memo(std::hash<std::string>{}(index));
      }
      case 'g': {
        ASSIGN_OR_RETURN(std::string index, Line());
        return Get(std::hash<std::string>{}(index));
      }
      case 'q': { ASSIGN_OR_RETURN(const uint64_t i, Uint(1)); return Memo(i); }
      case 'r': { ASSIGN_OR_RETURN(const uint64_t i, Uint(4)); return Memo(i); }
      case 'h': { ASSIGN_OR_RETURN(const uint64_t i, Uint(1)); return Get(i); }
      case 'j': { ASSIGN_OR_RETURN(const uint64_t i, Uint(4)); return Get(i); }
      case 0x94: return Memo(memo_.size());
      // Stack.
      case '(': marks_.push_back(stack_.size()); return absl::OkStatus();
      case '0': return Pop().status();
      case '1': return PopMark().status();
      case '2':
        if (stack_.empty()) return Bad("DUP of an empty stack");
        stack_.push_back(stack_.back());
        return absl::OkStatus();
      // Containers and objects.
      case ')': case ']': case '}': case 0x8f: stack_.push_back(Node({})); return absl::OkStatus();
      case 't': case 'l': case 'd': case 0x91: case 'o': {
        ASSIGN_OR_RETURN(std::vector<int> items, PopMark());
        stack_.push_back(Node(items));
        return absl::OkStatus();
      }
      case 'i': {
        ASSIGN_OR_RETURN(std::string module, Line());
        ASSIGN_OR_RETURN(std::string name, Line());
        ASSIGN_OR_RETURN(std::vector<int> items, PopMark());
        stack_.push_back(Node(items));
        return absl::OkStatus();
      }
      case 0x85: case 0x86: case 0x87: {
        std::vector<int> items(static_cast<size_t>(op - 0x84));
        for (auto it = items.rbegin(); it != items.rend(); ++it) {
          ASSIGN_OR_RETURN(*it, Pop());
        }
        stack_.push_back(Node(items));
        return absl::OkStatus();
      }
      case 'a': case 'b': {
        ASSIGN_OR_RETURN(const int item, Pop());
        return Extend({item});
      }
      case 's': {
        ASSIGN_OR_RETURN(const int value, Pop());
        ASSIGN_OR_RETURN(const int key, Pop());
        return Extend({key, value});
      }
      case 'e': case 'u': case 0x90: {
        ASSIGN_OR_RETURN(std::vector<int> items, PopMark());
        return Extend(items);
      }
      case 'R': case 0x81: case 0x93: case 'Q': case 0x92: {
        const int arity = op == 0x92 ? 3 : op == 'Q' ? 1 : 2;
        std::vector<int> items(static_cast<size_t>(arity));
        for (auto it = items.rbegin(); it != items.rend(); ++it) {
          ASSIGN_OR_RETURN(*it, Pop());
        }
        stack_.push_back(op == 0x93 ? -1 : Node(items));
        return absl::OkStatus();
      }
      default: return Bad(absl::StrCat("unknown opcode 0x", absl::Hex(op)));
    }
  }

  const std::string& d_;
  size_t pos_ = 0;
  std::vector<int> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, int> memo_;
  int nodes_ = 0;
  std::vector<std::pair<int, int>> edges_;
};

}  // namespace

absl::Status CheckPickle(const std::string& data, int max_depth) {
  PickleShape shape(data);
  RETURN_IF_ERROR(shape.Run());
  ASSIGN_OR_RETURN(const int depth, shape.Depth());
  if (depth > max_depth) {
    return absl::InvalidArgumentError(
        absl::StrCat("pickle nests containers ", depth, " deep, more than the limit of ", max_depth));
  }
  return absl::OkStatus();
}

}  // namespace graft::core
