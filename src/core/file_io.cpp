#include "lowbit/core/file_io.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "lowbit/core/error.h"

namespace lowbit {

std::shared_ptr<MappedFile> MappedFile::open(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  LB_CHECK(fd >= 0, "cannot open {}: {}", path.string(), std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    fail("cannot stat {}: {}", path.string(), std::strerror(e));
  }
  std::shared_ptr<MappedFile> m(new MappedFile());
  m->path_ = path;
  m->size_ = static_cast<size_t>(st.st_size);
  if (m->size_ > 0) {
    void* p = ::mmap(nullptr, m->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    const int e = errno;
    ::close(fd);
    LB_CHECK(p != MAP_FAILED, "cannot map {}: {}", path.string(), std::strerror(e));
    m->data_ = static_cast<const uint8_t*>(p);
  } else {
    ::close(fd);
  }
  return m;
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

AtomicFileWriter::AtomicFileWriter(std::filesystem::path path) : path_(std::move(path)) {
  tmp_ = path_;
  tmp_ += ".tmp-" + std::to_string(::getpid());
  f_ = std::fopen(tmp_.c_str(), "wb");
  LB_CHECK(f_ != nullptr, "cannot create {}: {}", tmp_.string(), std::strerror(errno));
}

AtomicFileWriter::~AtomicFileWriter() {
  if (f_) std::fclose(f_);
  if (!committed_) {
    std::error_code ec;
    std::filesystem::remove(tmp_, ec);
  }
}

void AtomicFileWriter::write(const void* data, size_t n) {
  LB_CHECK(f_ != nullptr && !committed_, "write to a closed file {}", path_.string());
  if (n == 0) return;
  LB_CHECK(std::fwrite(data, 1, n, f_) == n, "write to {} failed: {}", tmp_.string(), std::strerror(errno));
}

void AtomicFileWriter::commit() {
  LB_CHECK(f_ != nullptr && !committed_, "commit of a closed file {}", path_.string());
  const bool ok = std::fflush(f_) == 0 && ::fsync(::fileno(f_)) == 0;
  const int e = errno;
  std::fclose(f_);
  f_ = nullptr;
  LB_CHECK(ok, "cannot flush {}: {}", tmp_.string(), std::strerror(e));
  LB_CHECK(std::rename(tmp_.c_str(), path_.c_str()) == 0, "cannot rename {} to {}: {}", tmp_.string(),
           path_.string(), std::strerror(errno));
  committed_ = true;
}

std::string read_text_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  LB_CHECK(in.good(), "cannot open {}: {}", path.string(), std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_text_file_atomic(const std::filesystem::path& path, const std::string& text) {
  AtomicFileWriter w(path);
  w.write(text);
  w.commit();
}

}  // namespace lowbit
