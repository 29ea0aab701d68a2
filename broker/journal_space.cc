#include "broker/journal_space.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>

namespace orq {

namespace {

constexpr uint64_t kReserveBytes = 32ull << 20;

std::string DirectoryOf(const std::string& path) {
  const std::string dir = std::filesystem::path(path).parent_path().string();
  return dir.empty() ? "." : dir;
}

}  // namespace

JournalSpace::JournalSpace(const std::string& journal_path)
    : directory_(DirectoryOf(journal_path)), reserve_path_(journal_path + ".reserve") {}

std::optional<struct statvfs> JournalSpace::Stat() const {
  struct statvfs fs {};
  if (::statvfs(directory_.c_str(), &fs) != 0) return std::nullopt;
  return fs;
}

uint64_t JournalSpace::FreeBytes() const {
  const auto fs = Stat();
  return fs ? static_cast<uint64_t>(fs->f_bavail) * fs->f_frsize : UINT64_MAX;
}

bool JournalSpace::Reserve() {
  if (reserved_) return true;
  if (reserve_bytes_ == 0) {
    const auto fs = Stat();
    const uint64_t total =
        fs ? static_cast<uint64_t>(fs->f_blocks) * fs->f_frsize : kReserveBytes * 8;
    reserve_bytes_ = std::min(kReserveBytes, total / 8);
  }
  const int fd = ::open(reserve_path_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return false;
  // posix_fallocate takes the blocks now (tmpfs, ext4, xfs...), so the space is really held.
  const bool ok = ::posix_fallocate(fd, 0, static_cast<off_t>(reserve_bytes_)) == 0;
  ::close(fd);
  if (!ok) {
    ::unlink(reserve_path_.c_str());
    return false;
  }
  reserved_ = true;
  return true;
}

bool JournalSpace::Release() {
  if (!reserved_) return false;
  ::unlink(reserve_path_.c_str());
  reserved_ = false;
  return true;
}

}  // namespace orq
