// Who may talk to the server (net/access.h) and the secrets behind it (core/secret.h).
#include "core/secret.h"
#include "net/access.h"

#include <gtest/gtest.h>

#include <set>

using namespace parley;

TEST(secret, random_hex_is_128_bits_of_fresh_hex) {
    std::set<std::string> seen;
    for (int i = 0; i < 1000; ++i) {
        std::string h = random_hex(16);
        ASSERT_EQ(h.size(), 32u);
        EXPECT_EQ(h.find_first_not_of("0123456789abcdef"), std::string::npos) << h;
        seen.insert(h);
    }
    EXPECT_EQ(seen.size(), 1000u);
}

TEST(secret, hash_and_constant_time_compare) {
    // FIPS 180-2's "abc".
    EXPECT_EQ(secret_hash("abc"),
              "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_TRUE(secrets_equal("sekret", "sekret"));
    EXPECT_FALSE(secrets_equal("sekret", "sekreT"));
    EXPECT_FALSE(secrets_equal("sekret", "sekret2"));
    EXPECT_FALSE(secrets_equal("", "x"));
}

TEST(access, loopback_names_and_addresses) {
    for (const char *h :
         {"localhost", "LOCALHOST", "127.0.0.1", "127.1.2.3", "::1", "app.localhost"})
        EXPECT_TRUE(is_loopback(h)) << h;
    for (const char *h : {"127.0.0.1.evil.example", "128.0.0.1", "evil.example", "0.0.0.0",
                          "127.x.0.1", "", "localhost.evil.example"})
        EXPECT_FALSE(is_loopback(h)) << h;
}

TEST(access, host_header_names) {
    EXPECT_EQ(host_name("127.0.0.1:8000"), "127.0.0.1");
    EXPECT_EQ(host_name("[::1]:8000"), "::1");
    EXPECT_EQ(host_name("Example.COM"), "example.com");
    EXPECT_EQ(host_name("localhost.:80"), "localhost");
    EXPECT_EQ(host_name(" localhost "), "localhost");
}

TEST(access, dns_rebinding_is_refused_on_loopback) {
    const std::vector<std::string> none;
    EXPECT_FALSE(host_allowed("evil.example:8000", true, none));
    EXPECT_FALSE(host_allowed("127.0.0.1.nip.example:8000", true, none));
    EXPECT_TRUE(host_allowed("localhost:8000", true, none));
    EXPECT_TRUE(host_allowed("127.0.0.1:8000", true, none));
    EXPECT_TRUE(host_allowed("[::1]:8000", true, none));
    EXPECT_TRUE(host_allowed("", true, none)); // HTTP/1.0, not a browser
    EXPECT_TRUE(host_allowed("evil.example:8000", true, {"Evil.Example"}));
    EXPECT_TRUE(host_allowed("evil.example:8000", true, {"*"}));
    EXPECT_FALSE(host_allowed("evil.example:8000", true, {"other.example"}));
    // Any other bind needs the API key: any name.
    EXPECT_TRUE(host_allowed("voice.example:8000", false, none));
    EXPECT_FALSE(host_allowed("evil.example", false, {"voice.example"}));
}

TEST(access, origin_must_be_the_page_own_scheme_included) {
    const std::vector<std::string> none;
    EXPECT_TRUE(origin_allowed("", "127.0.0.1:8000", false, none));
    EXPECT_TRUE(origin_allowed("http://127.0.0.1:8000", "127.0.0.1:8000", false, none));
    EXPECT_TRUE(origin_allowed("HTTP://LOCALHOST:8000", "localhost:8000", false, none));
    EXPECT_FALSE(origin_allowed("https://127.0.0.1:8000", "127.0.0.1:8000", false, none));
    EXPECT_TRUE(origin_allowed("https://127.0.0.1:8000", "127.0.0.1:8000", true, none));
    EXPECT_FALSE(origin_allowed("file://127.0.0.1:8000", "127.0.0.1:8000", false, none));
    EXPECT_FALSE(origin_allowed("null", "127.0.0.1:8000", false, none));
    EXPECT_FALSE(origin_allowed("http://evil.example:8000", "127.0.0.1:8000", false, none));
    EXPECT_FALSE(origin_allowed("http://127.0.0.1:8001", "127.0.0.1:8000", false, none));
    EXPECT_TRUE(
        origin_allowed("https://app.example", "127.0.0.1:8000", false, {"https://app.example"}));
    EXPECT_FALSE(
        origin_allowed("http://app.example", "127.0.0.1:8000", false, {"https://app.example"}));
    EXPECT_TRUE(origin_allowed("http://anything.example", "127.0.0.1:8000", false, {"*"}));
}

TEST(access, api_key_in_any_of_its_places) {
    EXPECT_EQ(bearer_token("Bearer abc"), "abc");
    EXPECT_EQ(bearer_token("bearer  abc "), "abc");
    EXPECT_EQ(bearer_token("Basic YWJj"), "");
    EXPECT_EQ(bearer_token("Bearer"), "");
    EXPECT_TRUE(carries_key("K1", "Bearer K1", "", ""));
    EXPECT_TRUE(carries_key("K1", "", "K1", ""));
    EXPECT_TRUE(carries_key("K1", "", "", "parley, parley-key.K1"));
    EXPECT_TRUE(carries_key("K1", "Bearer wrong", "", "parley-key.K1,parley"));
    EXPECT_FALSE(carries_key("K1", "Bearer K1x", "K", "parley-key.K1x, xparley-key.K1"));
    EXPECT_FALSE(carries_key("K1", "", "", ""));
    EXPECT_FALSE(carries_key("", "Bearer ", "", "parley-key."));
}

TEST(access, a_trusted_proxy_names_the_client_by_its_last_forwarded_entry) {
    std::vector<std::string> proxies{"10.0.0.5", "::1"};
    // From the proxy: the last entry, the one the proxy appended (earlier ones are the
    // client's word).
    EXPECT_EQ(client_address("10.0.0.5", "1.2.3.4", proxies), "1.2.3.4");
    EXPECT_EQ(client_address("10.0.0.5", "6.6.6.6, 1.2.3.4", proxies), "1.2.3.4");
    EXPECT_EQ(client_address("10.0.0.5", "6.6.6.6,2001:db8::7 ", proxies), "2001:db8::7");
    EXPECT_EQ(client_address("::1", "1.2.3.4", proxies), "1.2.3.4");
    EXPECT_EQ(client_address("::ffff:10.0.0.5", "1.2.3.4", proxies), "1.2.3.4");
    // Not from a trusted proxy, no header, or an entry that is no address: the peer.
    EXPECT_EQ(client_address("10.0.0.6", "1.2.3.4", proxies), "10.0.0.6");
    EXPECT_EQ(client_address("10.0.0.5", "", proxies), "10.0.0.5");
    EXPECT_EQ(client_address("10.0.0.5", "1.2.3.4, unknown", proxies), "10.0.0.5");
    EXPECT_EQ(client_address("10.0.0.5", "1.2.3.4", {}), "10.0.0.5");
    EXPECT_TRUE(valid_ip_address("10.0.0.5"));
    EXPECT_TRUE(valid_ip_address("fe80::1"));
    EXPECT_FALSE(valid_ip_address("proxy.local"));
    EXPECT_FALSE(valid_ip_address(""));
}
