// The self-signed certificate (net/tls.h): made for the names, kept, made again when they change.
#include "net/tls.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sys/stat.h>

using namespace parley;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir() {
    char tmpl[] = "/tmp/parley-tls-XXXXXX";
    return fs::path(mkdtemp(tmpl));
}

} // namespace

TEST(tls, a_self_signed_certificate_is_made_for_the_names_and_kept) {
    fs::path dir = temp_dir() / "tls";
    std::vector<std::string> names = {"localhost", "127.0.0.1", "::1", "voice.example"};
    tls_files f;
    bool made = false;
    ASSERT_EQ(ensure_self_signed(dir.string(), names, &f, &made), "");
    EXPECT_TRUE(made);
    for (const std::string &n : names)
        EXPECT_TRUE(cert_covers(f.cert, n)) << n;
    EXPECT_FALSE(cert_covers(f.cert, "evil.example"));
    EXPECT_FALSE(cert_covers(f.cert, "10.0.0.1"));
    struct stat st {};
    ASSERT_EQ(stat(f.key.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u); // the key: its owner only
    std::string err;
    std::string fp = cert_fingerprint(f.cert, &err);
    EXPECT_EQ(fp.size(), 32u * 3 - 1) << err;
    EXPECT_EQ(fp.find_first_not_of("0123456789ABCDEF:"), std::string::npos) << fp;

    // The same names: the same certificate.
    ASSERT_EQ(ensure_self_signed(dir.string(), names, &f, &made), "");
    EXPECT_FALSE(made);
    EXPECT_EQ(cert_fingerprint(f.cert, &err), fp);
    // A name it does not cover: a new one, covering it.
    names.push_back("other.example");
    ASSERT_EQ(ensure_self_signed(dir.string(), names, &f, &made), "");
    EXPECT_TRUE(made);
    EXPECT_NE(cert_fingerprint(f.cert, &err), fp);
    EXPECT_TRUE(cert_covers(f.cert, "other.example"));
    fs::remove_all(dir.parent_path());
}

TEST(tls, a_damaged_certificate_is_made_again_and_a_bad_file_is_named) {
    fs::path dir = temp_dir();
    tls_files f;
    bool made = false;
    std::ofstream(dir / "cert.pem") << "not a certificate";
    std::ofstream(dir / "key.pem") << "not a key";
    ASSERT_EQ(ensure_self_signed(dir.string(), {"localhost"}, &f, &made), "");
    EXPECT_TRUE(made);
    EXPECT_TRUE(cert_covers(f.cert, "localhost"));

    std::string err;
    EXPECT_EQ(cert_fingerprint((dir / "key.pem").string(), &err), "");
    EXPECT_NE(err.find("key.pem holds no PEM certificate"), std::string::npos) << err;
    EXPECT_EQ(cert_fingerprint((dir / "missing.pem").string(), &err), "");
    // A folder that cannot be made.
    std::ofstream(dir / "file") << "x";
    EXPECT_NE(ensure_self_signed((dir / "file" / "tls").string(), {"localhost"}, &f), "");
    fs::remove_all(dir);
}

TEST(tls, self_signed_names_hold_loopback_this_host_and_the_allowed_names) {
    auto names = self_signed_names("0.0.0.0", {"*", "voice.example", "localhost"});
    EXPECT_EQ(names[0], "localhost");
    EXPECT_NE(std::find(names.begin(), names.end(), "127.0.0.1"), names.end());
    EXPECT_NE(std::find(names.begin(), names.end(), "::1"), names.end());
    EXPECT_NE(std::find(names.begin(), names.end(), "voice.example"), names.end());
    EXPECT_EQ(std::find(names.begin(), names.end(), "*"), names.end());
    EXPECT_EQ(std::find(names.begin(), names.end(), "0.0.0.0"), names.end());
    EXPECT_EQ(std::count(names.begin(), names.end(), "localhost"), 1);
    auto bound = self_signed_names("192.0.2.7", {});
    EXPECT_NE(std::find(bound.begin(), bound.end(), "192.0.2.7"), bound.end());
}
