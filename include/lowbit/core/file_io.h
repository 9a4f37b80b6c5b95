// Files: read-only memory maps, and atomic writes (a temporary file renamed into place on commit).
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

namespace lowbit {

class MappedFile {
 public:
  // Maps the whole file read-only; throws lowbit::Error naming the file when it cannot.
  static std::shared_ptr<MappedFile> open(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  MappedFile() = default;
  std::filesystem::path path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Writes go to "<path>.tmp-<pid>" and reach `path` only on commit() (fsync + rename); a writer
// destroyed without commit() removes its temporary file, leaving any previous `path` untouched.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::filesystem::path path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, size_t n);
  void write(const std::string& s) { write(s.data(), s.size()); }
  void commit();

 private:
  std::filesystem::path path_, tmp_;
  std::FILE* f_ = nullptr;
  bool committed_ = false;
};

std::string read_text_file(const std::filesystem::path& path);
void write_text_file_atomic(const std::filesystem::path& path, const std::string& text);

}  // namespace lowbit
