// A corpus of hostile requests, kept as files in tests/reliability/hostile/. Each file names
// the status it must get ("4xx" for any client error), the listener, and why it is hostile;
// the rest is the request with escapes (see decode_request below). Every request must get a
// client error with a reason (a JSON error code and message, or the HTML 404 page), must not
// see any part of what it sent echoed (a canary value rides in its headers and body), and the
// server must go on serving clicks after each.

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "reliability_fixture.h"

namespace earnd::reliability {
namespace {

using integration::click_id_of;

constexpr std::string_view kCanary = "c4n4ry-Zq8vW2";

struct HostileCase {
  std::string name;
  std::string expect;    // "400", "4xx", ...
  std::string listener;  // "public" or "admin"
  std::string why;
  std::string raw;  // the request as written in the file, escapes not yet decoded
};

std::vector<HostileCase> load_corpus() {
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(EARND_HOSTILE_CORPUS_DIR)) {
    if (e.path().extension() == ".http") {
      files.push_back(e.path());
    }
  }
  std::sort(files.begin(), files.end());
  std::vector<HostileCase> out;
  for (const auto& path : files) {
    HostileCase c{.name = path.stem().string()};
    std::ifstream in(path, std::ios::binary);
    std::string line;
    while (std::getline(in, line)) {
      if (line.starts_with("# expect: ")) {
        c.expect = line.substr(10);
      } else if (line.starts_with("# listener: ")) {
        c.listener = line.substr(12);
      } else if (line.starts_with("# why: ")) {
        c.why = line.substr(7);
      } else {
        c.raw += line;  // line breaks in the file are only for reading
      }
    }
    out.push_back(std::move(c));
  }
  return out;
}

// Decodes the escapes of a corpus file: \r \n \t \0 \\ \xHH, and \{N*text} for text (itself
// decoded, ending at the first '}' after its first character) repeated N times.
std::string decode_escapes(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out.push_back(s[i]);
      continue;
    }
    char e = s[++i];
    if (e == 'r') {
      out.push_back('\r');
    } else if (e == 'n') {
      out.push_back('\n');
    } else if (e == 't') {
      out.push_back('\t');
    } else if (e == '0') {
      out.push_back('\0');
    } else if (e == 'x' && i + 2 < s.size()) {
      out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else if (e == '{') {
      std::size_t star = s.find('*', i);
      std::size_t close = s.find('}', star + 2);
      int n = std::stoi(std::string(s.substr(i + 1, star - i - 1)));
      std::string text = decode_escapes(s.substr(star + 1, close - star - 1));
      for (int k = 0; k < n; ++k) {
        out += text;
      }
      i = close;
    } else {
      out.push_back(e);
    }
  }
  return out;
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  for (std::size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) {
    s.replace(at, from.size(), to);
  }
}

class HostileRequestTest : public ReliabilityTest {
 protected:
  std::string decode_request(const HostileCase& c) {
    std::string raw = c.raw;
    replace_all(raw, "{{CANARY}}", kCanary);
    replace_all(raw, "{{PROGRAM_KEY}}", program_key_);
    replace_all(raw, "{{ADMIN_KEY}}", integration::kAdminKey);
    std::string bytes = decode_escapes(raw);
    if (std::size_t at = bytes.find("{{LEN}}"); at != std::string::npos) {
      std::size_t body = bytes.find("\r\n\r\n", at);
      std::size_t len = body == std::string::npos ? 0 : bytes.size() - body - 4;
      bytes.replace(at, 7, std::to_string(len));
    }
    return bytes;
  }
};

TEST_F(HostileRequestTest, RefusesEveryCorpusRequestWithAReasonAndKeepsServing) {
  ASSERT_NO_FATAL_FAILURE(start_server());
  ASSERT_NO_FATAL_FAILURE(create_rewarding_program());
  auto corpus = load_corpus();
  ASSERT_GE(corpus.size(), 40u) << "corpus not found in " << EARND_HOSTILE_CORPUS_DIR;

  int refused = 0, echoed = 0, unserved = 0;
  for (const auto& c : corpus) {
    SCOPED_TRACE(c.name + ": " + c.why);
    const auto& endpoint = c.listener == "admin" ? admin_endpoint() : public_endpoint();
    HttpConnection conn(endpoint);
    ASSERT_TRUE(conn.connected()) << conn.error();
    conn.send(decode_request(c));  // the server may close before reading all of it
    HttpResponse r = conn.read_response();

    bool client_error = r.status >= 400 && r.status <= 499;
    EXPECT_TRUE(client_error) << "status " << r.status << " " << r.error << " " << r.body;
    if (c.expect != "4xx") {
      EXPECT_EQ(std::to_string(r.status), c.expect) << r.body;
    }
    refused += client_error;
    std::string code = "(html)";
    if (r.header("Content-Type").value_or("").starts_with("application/json")) {
      boost::json::value v = integration::parse_json(r);
      if (v.is_object() && v.as_object().contains("error")) {
        code = boost::json::serialize(v.at("error").at("code"));
      }
      EXPECT_TRUE(v.is_object() && v.as_object().contains("error") &&
                  !v.at("error").at("code").as_string().empty() &&
                  !v.at("error").at("message").as_string().empty())
          << r.body;
    } else {
      EXPECT_EQ(r.status, 404) << "a refusal without a JSON reason: " << r.body;
    }
    std::printf("hostile %-32s -> %d %s\n", c.name.c_str(), r.status, code.c_str());
    std::string everything = r.body;
    for (const auto& [name, value] : r.headers) {
      everything += name + ": " + value + "\n";
      EXPECT_NE(name, "Set-Cookie") << "a refused request set a cookie: " << value;
    }
    bool echo = everything.find(kCanary) != std::string::npos;
    EXPECT_FALSE(echo) << "the response echoes what came in:\n" << everything;
    echoed += echo;

    HttpResponse click = visit("/r/ana");
    EXPECT_EQ(click.status, 302) << "not serving after " << c.name;
    unserved += click.status != 302;
  }
  EXPECT_EQ(visit("/healthz").status, 200);
  EXPECT_EQ(stop_server(), 0) << "earnd did not stop cleanly after the corpus";
  report_figures("hostile_requests",
                 "requests=" + std::to_string(corpus.size()) +
                     " refused=" + std::to_string(refused) + " echoed=" + std::to_string(echoed) +
                     " unserved_after=" + std::to_string(unserved) + " crashes=0");
}

// A request whose body length Transfer-Encoding leaves ambiguous is refused before its body is
// read and its connection closed, so the bytes after it never run as a second (smuggled)
// request. Also for unknown codings with a Content-Length, codings before chunked, and an
// HTTP/1.1 request with no Host or two.
TEST_F(HostileRequestTest, ClosesTheConnectionWhenFramingIsAmbiguous) {
  ASSERT_NO_FATAL_FAILURE(start_server());
  ASSERT_NO_FATAL_FAILURE(create_rewarding_program());
  const std::string smuggled =
      "GET /r/ana?smuggled=1 HTTP/1.1\r\nHost: earnd.test\r\nUser-Agent: " +
      std::string(integration::kBrowserUa) + "\r\n\r\n";

  struct Case {
    std::string head;
    int status;
    std::string code;
  };

  std::string post = "POST /v1/conversions HTTP/1.1\r\nHost: earnd.test\r\nAuthorization: Bearer " +
                     program_key_ + "\r\n";
  std::vector<Case> cases = {
      {post + "Transfer-Encoding: gzip\r\n\r\n", 400, "bad_transfer_encoding"},
      {post + "Transfer-Encoding: identity\r\n\r\n", 400, "bad_transfer_encoding"},
      {post + "Transfer-Encoding: chunked, identity\r\n\r\n", 400, "bad_transfer_encoding"},
      {post + "Transfer-Encoding: xchunked\r\nContent-Length: 2\r\n\r\n{}", 400,
       "bad_transfer_encoding"},
      {post + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501,
       "unsupported_transfer_coding"},
      {"GET /r/ana HTTP/1.1\r\nUser-Agent: x\r\n\r\n", 400, "bad_host"},
      {"GET /r/ana HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n", 400, "bad_host"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.head);
    HttpConnection conn(public_endpoint());
    ASSERT_TRUE(conn.connected()) << conn.error();
    conn.send(c.head + smuggled);
    HttpResponse r = conn.read_response();
    EXPECT_EQ(r.status, c.status) << r.body;
    EXPECT_EQ(integration::parse_json(r).at("error").at("code"), c.code.c_str()) << r.body;
    EXPECT_TRUE(conn.closed_by_peer()) << "the connection stayed open after the refusal";
  }
  // The smuggled clicks never ran: the export holds no click at all.
  std::string csv = admin("GET", "/v1/clicks/export").body;
  EXPECT_EQ(csv.find('\n'), csv.size() - 1) << "clicks were stored:\n" << csv;
  // A chunked request and an HTTP/1.0 request without Host are still served.
  HttpConnection ok(public_endpoint());
  ok.send("GET /r/ana HTTP/1.0\r\nUser-Agent: " + std::string(integration::kBrowserUa) +
          "\r\n\r\n");
  EXPECT_EQ(ok.read_response().status, 302);
}

// Beast's header limit bounds only the part of the header not yet parsed; a header of small
// fields sent in pieces must still be refused once the whole exceeds max_header_bytes.
TEST_F(HostileRequestTest, CountsTheWholeHeaderWhenItArrivesInPieces) {
  ASSERT_NO_FATAL_FAILURE(start_server());
  HttpConnection conn(public_endpoint());
  ASSERT_TRUE(conn.connected());
  ASSERT_TRUE(conn.send("GET /healthz HTTP/1.1\r\nHost: earnd.test\r\n"));
  std::string piece;
  for (int i = 0; i < 100; ++i) {
    piece += "X-M: m\r\n";  // 800 bytes, far below the limit on its own
  }
  for (int i = 0; i < 40 && conn.send(piece); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  conn.send("\r\n");
  HttpResponse r = conn.read_response();

  EXPECT_EQ(r.status, 431) << r.error << r.body;
  EXPECT_EQ(visit("/healthz").status, 200);
}

}  // namespace
}  // namespace earnd::reliability
