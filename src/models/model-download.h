// One file over HTTP(S) with libcurl: resumes from DEST.part with a Range request, shows
// progress, checks SHA-256, and renames DEST.part to DEST only when the bytes are right.
//
//   download_request req;
//   req.url = "https://huggingface.co/org/repo/resolve/main/model.gguf";
//   req.dest = "/cache/parley/models/x/model.gguf";
//   download_result r = download_file(req);
//   if (r.status != DOWNLOAD_OK) fprintf(stderr, "%s\n", r.error.c_str());
//
// Blocking; call from one thread per file (the CLI's). The only file that sees curl.h.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace parley {

enum download_status {
    DOWNLOAD_OK = 0,
    DOWNLOAD_NOT_FOUND,   // HTTP 404
    DOWNLOAD_AUTH,        // HTTP 401/403: a token is needed or was refused
    DOWNLOAD_HTTP,        // another HTTP error status
    DOWNLOAD_OFFLINE,     // DNS failure, connection refused, no route
    DOWNLOAD_INTERRUPTED, // the connection broke mid-file; DEST.part is kept for a resume
    DOWNLOAD_CHECKSUM,    // wrong SHA-256 or size; DEST.part is deleted
    DOWNLOAD_DISK_FULL,   // ENOSPC/EDQUOT while writing; DEST.part is kept
    DOWNLOAD_IO,          // any other local file error
    DOWNLOAD_BUSY,        // another process is downloading the same file
};

struct download_request {
    std::string url;
    std::string dest;            // final path; DEST.part holds the bytes until they are verified
    std::string label;           // shown in progress lines (default: the file name of dest)
    std::string sha256;          // expected; empty: the hub's X-Linked-ETag/ETag when it is one
    int64_t size = -1;           // expected bytes; -1: the hub's X-Linked-Size or Content-Length
    std::string bearer_token;    // sent as Authorization: Bearer (HF_TOKEN); never to other hosts
    bool progress_bar = false;   // true: a bar redrawn in place (a terminal); false: quiet lines
    double line_interval_s = 1;  // quiet lines: at most one per interval, at each 10 % step
    FILE *progress_out = stderr; // nullptr: silent
    long connect_timeout_s = 30;
    long stall_timeout_s = 60; // abort when nothing arrives for this long
};

struct download_result {
    download_status status = DOWNLOAD_OK;
    std::string error;        // one line, for the user
    std::string sha256;       // of the finished file
    int64_t bytes = 0;        // size of the finished file
    int64_t resumed_from = 0; // bytes of DEST.part that were kept
    bool verified = false;    // false: no checksum was known, the file was taken as it came
    long http_status = 0;
};

download_result download_file(const download_request &req);

// "1.5 MiB", "740 KiB", "12 B".
std::string format_bytes(int64_t bytes);

} // namespace parley
