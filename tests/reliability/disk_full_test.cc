// Disk full: earnd's data directory is a small tmpfs that the test fills up. earnd must stop
// acknowledging what it cannot store (503 with a JSON error, never a 302 with a click id or a
// 201), fail /readyz, log one clear error line however many writes fail, keep what it stored
// readable, and start acknowledging again by itself once space is freed.
//
// earnd refuses before RocksDB meets the full disk (storage.min_free_mb), since Debian's
// librocksdb aborts on some of its write-error paths; see docs/reliability.md.
//
// Needs permission to mount tmpfs (root, or CAP_SYS_ADMIN); skipped with the reason otherwise.

#include <sys/mount.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "reliability_fixture.h"

namespace earnd::reliability {
namespace {

using namespace std::chrono_literals;
using integration::click_id_of;

constexpr const char* kTmpfsSize = "size=24m";
constexpr int kReserveMb = 4;            // storage.min_free_mb: refused below this much free space
constexpr int kMaxClicksToFill = 2'000;  // clicks sent until storage refuses one
constexpr int kClicksWhileFull = 50;     // further clicks that must all be refused
constexpr auto kRecoveryDeadline = 60s;  // bounded wait for recovery once space is back

int count_lines(const std::string& log, std::string_view needle) {
  int n = 0;
  for (std::size_t at = log.find(needle); at != std::string::npos; at = log.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

class DiskFullTest : public ReliabilityTest {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(data_dir());
    if (::mount("tmpfs", data_dir().c_str(), "tmpfs", 0, kTmpfsSize) != 0) {
      GTEST_SKIP() << "cannot mount a tmpfs for the data directory (" << std::strerror(errno)
                   << "); run as root or with CAP_SYS_ADMIN to test a full disk";
    }
    mounted_ = true;
    // One error line per ten minutes at most: the whole test sees exactly the first one.
    use_config("[log]\nwarn_interval_ms = 600000\n[storage]\nmin_free_mb = " +
               std::to_string(kReserveMb) + "\n");
  }

  void TearDown() override {
    server().kill();
    if (mounted_) {
      ::umount2(data_dir().c_str(), MNT_DETACH);
    }
  }

  // Writes a filler file until the file system is full; returns the bytes written.
  std::uint64_t fill_disk() {
    std::FILE* f = std::fopen(filler().c_str(), "wb");
    if (f == nullptr) {
      return 0;
    }
    std::vector<char> block(64 * 1024, 'x');
    std::uint64_t written = 0;
    while (true) {
      std::size_t n = std::fwrite(block.data(), 1, block.size(), f);
      written += n;
      if (n < block.size() || std::fflush(f) != 0) {
        break;
      }
    }
    std::fclose(f);
    return written;
  }

  std::filesystem::path filler() const { return data_dir() / "filler"; }

  bool mounted_ = false;
};

TEST_F(DiskFullTest, RefusesWhatItCannotStoreAndRecoversWhenSpaceReturns) {
  ASSERT_NO_FATAL_FAILURE(start_server());
  ASSERT_NO_FATAL_FAILURE(create_rewarding_program());
  std::set<std::string> acked;
  for (int i = 0; i < 20; ++i) {
    acked.insert(click_id_of(visit("/r/ana")));
  }
  ASSERT_EQ(acked.size(), 20u);

  // Fill the disk, then click until the first refusal.
  ASSERT_GT(fill_disk(), 0u);
  int tried = 0, refused = 0;
  HttpResponse refusal;
  while (refused == 0 && tried < kMaxClicksToFill) {
    HttpResponse r = visit("/r/ana");
    ++tried;
    if (r.status == 302 && !click_id_of(r).empty()) {
      acked.insert(click_id_of(r));
    } else {
      refusal = r;
      ++refused;
    }
  }
  ASSERT_EQ(refused, 1) << "every one of " << tried << " clicks was acknowledged on a full disk";
  ASSERT_EQ(refusal.status, 503) << refusal.body << refusal.error << "\n" << server().log_text();
  EXPECT_EQ(integration::parse_json(refusal).at("error").at("code"), "storage_unavailable");

  // While full: every click and conversion refused, readiness fails, the stored clicks read.
  for (int i = 0; i < kClicksWhileFull; ++i) {
    HttpResponse r = visit("/r/ana");
    EXPECT_EQ(r.status, 503) << "click " << i << " while full: " << r.body;
    EXPECT_EQ(click_id_of(r), "");
  }
  HttpResponse conv =
      integration::fetch(public_endpoint(), "POST", "/v1/conversions", conversion_headers(),
                         signup_body("ev_full", *acked.begin()));
  EXPECT_EQ(conv.status, 503) << conv.body;
  HttpResponse ready = visit("/readyz");
  EXPECT_EQ(ready.status, 503) << ready.body;
  EXPECT_EQ(integration::parse_json(ready).at("storage_writable"), false);
  HttpResponse exported = admin("GET", "/v1/clicks/export");
  ASSERT_EQ(exported.status, 200) << exported.body;
  for (const auto& id : acked) {
    EXPECT_NE(exported.body.find(id), std::string::npos) << id << " not readable while full";
  }
  std::string log = server().log_text();
  EXPECT_EQ(count_lines(log, "level=error"), 1) << log;
  EXPECT_EQ(count_lines(log, "event=click_write_failed"), 1) << log;

  // Space returns: earnd acknowledges again without a restart.
  std::filesystem::remove(filler());
  auto deadline = std::chrono::steady_clock::now() + kRecoveryDeadline;
  auto freed_at = std::chrono::steady_clock::now();
  std::string recovered;
  while (recovered.empty() && std::chrono::steady_clock::now() < deadline) {
    HttpResponse r = visit("/r/ana");
    if (r.status == 302) {
      recovered = click_id_of(r);
    } else {
      std::this_thread::sleep_for(100ms);
    }
  }
  double recovery_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - freed_at).count();
  ASSERT_FALSE(recovered.empty()) << "no click stored after space returned\n"
                                  << server().log_text();
  acked.insert(recovered);
  EXPECT_EQ(visit("/readyz").status, 200);
  HttpResponse conv2 = integration::fetch(public_endpoint(), "POST", "/v1/conversions",
                                          conversion_headers(), signup_body("ev_after", recovered));
  EXPECT_EQ(conv2.status, 201) << conv2.body;

  ASSERT_EQ(stop_server(), 0);
  std::set<std::string> stored;
  for (const auto& row : export_clicks()) {
    stored.insert(row.id);
  }
  int lost = 0;
  for (const auto& id : acked) {
    lost += stored.count(id) == 0;
  }
  EXPECT_EQ(lost, 0);
  char secs[32];
  std::snprintf(secs, sizeof(secs), "%.1f", recovery_s);
  report_figures("disk_full", "clicks_acknowledged=" + std::to_string(acked.size()) +
                                  " lost=" + std::to_string(lost) + " refused_while_full=" +
                                  std::to_string(refused + kClicksWhileFull) +
                                  " error_lines=1 recovery_s=" + secs);
}

}  // namespace
}  // namespace earnd::reliability
