// Plain-text tables for the CLI: columns sized to their widest cell, numbers right-aligned.
#pragma once

#include <string>
#include <vector>

namespace lowbit::cli {

class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  std::string render() const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace lowbit::cli
