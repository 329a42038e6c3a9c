/* Unit tests for node/web.c: which path names which file of web/ (compiled
 * in by scripts/embed-web.sh), the content types, and the answers a
 * browser gets through the HTTP server, fed with a probe in every
 * chunking: the headers that keep the pages safe, HEAD, 405 and the paths
 * that are not ours. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/web.h"

static void test_find(void **state)
{
    (void)state;
    static const struct {
        const char *path, *name;
    } found[] = {
        { "/", "index.html" },
        { "/status", "status.html" },
        { "/chat.js", "chat.js" },
        { "/status.js", "status.js" },
        { "/dchat.css", "dchat.css" },
        { "/favicon.svg", "favicon.svg" },
    };
    for (size_t i = 0; i < sizeof(found) / sizeof(found[0]); i++) {
        const struct web_file *f = web_find(found[i].path);
        if (f == NULL || strcmp(f->name, found[i].name) != 0)
            fail_msg("%s: expected %s, got %s", found[i].path, found[i].name,
                     f ? f->name : "nothing");
        assert_true(f->len > 0);
        assert_int_equal(f->data[f->len], 0); /* the generator's NUL, not counted */
    }
    static const char *const missing[] = {
        "/index.html", "/status.html", "", "chat.js", "/nope.js", "/status/",
        "/web/chat.js", "/../chat.js", "/./chat.js", "//chat.js", "/chat.js/",
        "/healthz", "/api/status",
    };
    for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++)
        if (web_find(missing[i]) != NULL)
            fail_msg("\"%s\" names a file", missing[i]);
}

/* Every file of web/ is in the table once, with the bytes on disk. */
static void test_table_matches_web_dir(void **state)
{
    (void)state;
    assert_true(web_files_count >= 5);
    for (size_t i = 0; i < web_files_count; i++) {
        char path[256];
        snprintf(path, sizeof(path), "web/%s", web_files[i].name);
        FILE *fp = fopen(path, "rb");
        if (fp == NULL)
            fail_msg("%s: cannot open (run the test from the repository root)", path);
        char *buf = malloc(web_files[i].len + 1);
        size_t got = fread(buf, 1, web_files[i].len + 1, fp);
        fclose(fp);
        assert_int_equal(got, web_files[i].len);
        assert_memory_equal(buf, web_files[i].data, got);
        free(buf);
        for (size_t k = 0; k < i; k++)
            assert_string_not_equal(web_files[k].name, web_files[i].name);
    }
}

static void test_content_type(void **state)
{
    (void)state;
    assert_string_equal(web_content_type("index.html"), "text/html; charset=utf-8");
    assert_string_equal(web_content_type("chat.js"), "text/javascript; charset=utf-8");
    assert_string_equal(web_content_type("dchat.css"), "text/css; charset=utf-8");
    assert_string_equal(web_content_type("favicon.svg"), "image/svg+xml");
    assert_string_equal(web_content_type("shot.png"), "image/png");
    assert_string_equal(web_content_type("README"), "application/octet-stream");
    assert_string_equal(web_content_type("x.html.bak"), "application/octet-stream");
}

static void handler(http_request *req, void *ud)
{
    (void)ud;
    if (!web_handle(req))
        http_respond_error(req, 404, "not ours");
}

/* The whole output of a probe fed `in` cut into chunks of `chunk` bytes. */
static char *answer(const char *in, size_t chunk)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct http_server_config cfg = { .handler = handler };
    http_probe *p = http_probe_new(&loop, &cfg);
    size_t len = strlen(in);
    for (size_t i = 0; i < len; i += chunk)
        http_probe_feed(p, in + i, len - i < chunk ? len - i : chunk);
    size_t olen;
    char *out = strdup(http_probe_output(p, &olen, NULL));
    http_probe_free(p);
    assert_int_equal(uv_loop_close(&loop), 0);
    return out;
}

static void test_answers(void **state)
{
    (void)state;
    static const char in[] =
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n\r\n"
        "HEAD /chat.js HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n\r\n"
        "POST /status HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"
        "GET /index.html HTTP/1.1\r\nHost: h\r\n\r\n"
        "GET /status HTTP/1.1\r\nHost: x;script-src\r\n\r\n";
    const struct web_file *index = web_find("/");
    char *whole = answer(in, sizeof(in));
    for (size_t chunk = 1; chunk < sizeof(in); chunk = chunk * 3 + 1) {
        char *out = answer(in, chunk);
        assert_string_equal(out, whole);
        free(out);
    }
    /* GET /: the page, its type, and the headers that keep it safe. */
    char head[512];
    snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
             "Content-Length: %zu\r\n", index->len);
    assert_memory_equal(whole, head, strlen(head));
    const char *csp = "Content-Security-Policy: default-src 'none'; script-src 'self'; "
                      "style-src 'self'; img-src 'self'; connect-src 'self' "
                      "ws://127.0.0.1:9001 wss://127.0.0.1:9001; base-uri 'none'; "
                      "form-action 'none'; frame-ancestors 'none'\r\n";
    const char *end = strstr(whole, "\r\n\r\n");
    assert_non_null(end);
    const char *h1 = strstr(whole, "Cache-Control: no-cache\r\n");
    const char *h2 = strstr(whole, "X-Content-Type-Options: nosniff\r\n");
    const char *h3 = strstr(whole, csp);
    assert_true(h1 != NULL && h1 < end && h2 != NULL && h2 < end && h3 != NULL && h3 < end);
    assert_memory_equal(end + 4, index->data, index->len);
    /* HEAD: the GET answer's headers, no body. */
    const char *second = end + 4 + index->len;
    const struct web_file *js = web_find("/chat.js");
    snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Type: text/javascript; "
             "charset=utf-8\r\nContent-Length: %zu\r\n", js->len);
    assert_memory_equal(second, head, strlen(head));
    const char *third = strstr(second, "\r\n\r\n") + 4;
    /* POST: 405 naming the methods. */
    assert_memory_equal(third, "HTTP/1.1 405 ", 13);
    assert_non_null(strstr(third, "Allow: GET, HEAD\r\n"));
    assert_non_null(strstr(third, "{\"error\":\"use GET on /status\"}"));
    /* A page's file name is not a second address for it. */
    const char *fourth = strstr(third, "HTTP/1.1 404 ");
    assert_non_null(fourth);
    assert_non_null(strstr(fourth, "not ours"));
    /* A Host that could add to the policy is left out of it: 'self' only. */
    const char *fifth = strstr(fourth + 1, "HTTP/1.1 200 OK");
    assert_non_null(fifth);
    assert_non_null(strstr(fifth, "connect-src 'self'; base-uri"));
    assert_null(strstr(fifth, "x;script-src"));
    free(whole);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_table_matches_web_dir),
        cmocka_unit_test(test_content_type),
        cmocka_unit_test(test_answers),
    };
    return cmocka_run_group_tests_name("web", tests, NULL, NULL);
}
