// Which webhook target addresses count as private (refused unless allowed): every IPv4 range that
// reaches this host, its network or no one in particular, and IPv6 forms that carry them.

#include <string>

#include <boost/asio/ip/address.hpp>
#include <gtest/gtest.h>

#include "../../src/webhooks/client.h"

namespace earnd::webhooks {
namespace {

bool is_private(const std::string& text) {
  return is_private_address(boost::asio::ip::make_address(text));
}

TEST(PrivateAddressTest, RefusesEveryRangeThatIsNotThePublicInternet) {
  for (const char* a : {"127.0.0.1",
                        "10.1.2.3",
                        "172.16.0.1",
                        "192.168.1.1",
                        "169.254.169.254",
                        "0.0.0.0",
                        "100.64.0.1",
                        "192.0.0.8",
                        "198.18.0.1",
                        "198.19.255.254",
                        "224.0.0.1",
                        "240.0.0.1",
                        "255.255.255.255",
                        "::1",
                        "::",
                        "fe80::1",
                        "fd00::1",
                        "ff02::1",
                        "::ffff:127.0.0.1",
                        "::127.0.0.1",
                        "::10.0.0.1",
                        "64:ff9b::127.0.0.1",
                        "64:ff9b::a9fe:a9fe",
                        "2002:7f00:1::1",
                        "2002:c0a8:101::1"}) {
    EXPECT_TRUE(is_private(a)) << a;
  }
}

TEST(PrivateAddressTest, AcceptsPublicAddresses) {
  for (const char* a :
       {"93.184.216.34", "8.8.8.8", "198.20.0.1", "192.0.2.1", "203.0.113.9", "2606:4700::1111",
        "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"}) {
    EXPECT_FALSE(is_private(a)) << a;
  }
}

}  // namespace
}  // namespace earnd::webhooks
