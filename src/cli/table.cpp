#include "table.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

namespace lowbit::cli {
namespace {
bool looks_numeric(const std::string& s) {
  return !s.empty() && (std::isdigit(static_cast<unsigned char>(s[0])) || s[0] == '-' || s[0] == '+');
}
// Display width in terminal columns: count UTF-8 lead bytes only.
size_t width(const std::string& s) {
  return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xc0) != 0x80; }));
}
}  // namespace

std::string Table::render() const {
  std::vector<size_t> w(header_.size(), 0);
  for (size_t c = 0; c < header_.size(); ++c) w[c] = width(header_[c]);
  for (const auto& r : rows_)
    for (size_t c = 0; c < r.size() && c < w.size(); ++c) w[c] = std::max(w[c], width(r[c]));
  std::string out;
  auto line = [&](const std::vector<std::string>& r, bool is_header) {
    for (size_t c = 0; c < w.size(); ++c) {
      const std::string cell = c < r.size() ? r[c] : "";
      const std::string pad(w[c] - width(cell), ' ');
      const bool right = !is_header && c > 0 && looks_numeric(cell);
      out += c ? "  " : "";
      out += right ? pad + cell : cell + pad;
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    out += '\n';
  };
  line(header_, true);
  size_t total = 0;
  for (auto x : w) total += x;
  out += std::string(total + 2 * (w.size() - 1), '-') + '\n';
  for (const auto& r : rows_) line(r, false);
  return out;
}

}  // namespace lowbit::cli
