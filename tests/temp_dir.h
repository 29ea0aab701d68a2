// A private temporary directory for a test, under $TMPDIR (/tmp when it is unset or empty), made
// with mkdtemp (mode 0700) and removed with everything in it when the object goes. Header-only, so
// a pure core's unit test can use it without linking anything.
#pragma once

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace orq::testing {

// $TMPDIR, or /tmp.
inline std::string TempBase() {
  const char* tmpdir = std::getenv("TMPDIR");
  return tmpdir && *tmpdir ? tmpdir : "/tmp";
}

class TempDir {
 public:
  // Makes $TMPDIR/PREFIX-XXXXXX; throws std::runtime_error (the test fails with the reason) when
  // it cannot.
  explicit TempDir(const std::string& prefix) {
    std::string pattern = TempBase() + "/" + prefix + "-XXXXXX";
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data()))
      throw std::runtime_error("cannot make a temporary directory " + pattern + ": " +
                               std::strerror(errno) + " (is $TMPDIR writable?)");
    path_ = buf.data();
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;  // absolute when $TMPDIR is; removed by the destructor
};

}  // namespace orq::testing
