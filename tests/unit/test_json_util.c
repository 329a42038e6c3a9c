/* Unit tests for common/json_util.c: json_util_parse_object (good objects,
 * malformed JSON, non-objects, duplicate keys) and the typed getters
 * json_util_get_int / json_util_get_string with good, missing and ill-typed
 * fields; every error text must name the field. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "common/json_util.h"

static json_t *parse(const char *text)
{
    char err[256] = "";
    json_t *j = json_util_parse_object(text, strlen(text), err, sizeof(err));
    if (j == NULL)
        fail_msg("parse failed: %s", err);
    return j;
}

static void test_parse_object_good(void **state)
{
    (void)state;
    char err[256] = "untouched";
    const char *text = "{\"a\": 1, \"b\": \"x\", \"c\": [true, null]}";
    json_t *j = json_util_parse_object(text, strlen(text), err, sizeof(err));
    assert_non_null(j);
    assert_true(json_is_object(j));
    assert_int_equal(json_object_size(j), 3);
    json_decref(j);
    /* Only len bytes are read: no NUL terminator needed. */
    const char buf[] = { '{', '}', 'X', 'X' };
    j = json_util_parse_object(buf, 2, err, sizeof(err));
    assert_non_null(j);
    assert_int_equal(json_object_size(j), 0);
    json_decref(j);
}

static void test_parse_object_malformed(void **state)
{
    (void)state;
    char err[256];
    const char *bad[] = {
        "", "{", "{\"a\":}", "{\"a\":1,}", "{a:1}", "{\"a\":1} trailing", "nul",
        "{\"a\":1}\n{\"b\":2}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        json_t *j = json_util_parse_object(bad[i], strlen(bad[i]), err, sizeof(err));
        if (j != NULL)
            fail_msg("accepted malformed JSON \"%s\"", bad[i]);
        assert_non_null(strstr(err, "malformed JSON at line "));
        assert_non_null(strstr(err, " column "));
    }
    /* The position is reported. */
    const char *text = "{\n  \"a\": 1,\n  \"b\": ]\n}";
    assert_null(json_util_parse_object(text, strlen(text), err, sizeof(err)));
    assert_non_null(strstr(err, "line 3 "));
    /* Duplicate keys are refused. */
    text = "{\"a\":1,\"a\":2}";
    assert_null(json_util_parse_object(text, strlen(text), err, sizeof(err)));
    assert_non_null(strstr(err, "malformed JSON"));
    assert_non_null(strstr(err, "duplicate"));
}

static void test_parse_object_not_object(void **state)
{
    (void)state;
    char err[256];
    const char *bad[] = { "[]", "[1,2]", "\"str\"", "42", "true", "null" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        json_t *j = json_util_parse_object(bad[i], strlen(bad[i]), err, sizeof(err));
        if (j != NULL)
            fail_msg("accepted non-object \"%s\"", bad[i]);
        /* Scalars at top level may be refused by jansson itself (without
         * JSON_DECODE_ANY) as malformed; either text is fine, but not empty. */
        assert_true(strcmp(err, "the body must be a JSON object") == 0 ||
                    strstr(err, "malformed JSON") == err);
    }
    assert_null(json_util_parse_object("[1]", 3, err, sizeof(err)));
    assert_string_equal(err, "the body must be a JSON object");
}

static void test_parse_object_small_err(void **state)
{
    (void)state;
    char err[8];
    memset(err, 'x', sizeof(err));
    assert_null(json_util_parse_object("{", 1, err, sizeof(err)));
    assert_int_equal(strlen(err), sizeof(err) - 1); /* truncated, terminated */
}

static void test_get_int_good(void **state)
{
    (void)state;
    json_t *j = parse("{\"port\": 8080, \"neg\": -5, \"zero\": 0, \"big\": 9007199254740993}");
    char err[128] = "";
    json_int_t v = -1;
    assert_int_equal(json_util_get_int(j, "port", 1, 65535, &v, err, sizeof(err)), 0);
    assert_int_equal(v, 8080);
    assert_int_equal(json_util_get_int(j, "neg", -10, 10, &v, err, sizeof(err)), 0);
    assert_int_equal(v, -5);
    assert_int_equal(json_util_get_int(j, "zero", 0, 0, &v, err, sizeof(err)), 0);
    assert_int_equal(v, 0);
    assert_int_equal(json_util_get_int(j, "big", 0, INT64_MAX, &v, err, sizeof(err)), 0);
    assert_true(v == 9007199254740993LL);
    /* The bounds are inclusive. */
    assert_int_equal(json_util_get_int(j, "port", 8080, 8080, &v, err, sizeof(err)), 0);
    assert_string_equal(err, "");
    json_decref(j);
}

static void test_get_int_missing(void **state)
{
    (void)state;
    json_t *j = parse("{\"other\": 1}");
    char err[128] = "";
    json_int_t v = 77;
    assert_int_equal(json_util_get_int(j, "syncport", 1, 65535, &v, err, sizeof(err)), -1);
    assert_int_equal(v, 77); /* untouched */
    assert_string_equal(err, "field \"syncport\" is missing");
    json_decref(j);
}

static void test_get_int_ill_typed(void **state)
{
    (void)state;
    json_t *j = parse("{\"s\": \"80\", \"r\": 80.0, \"t\": true, \"f\": false, \"n\": null,"
                      " \"a\": [80], \"o\": {\"x\": 80}, \"low\": 0, \"high\": 65536}");
    const char *keys[] = { "s", "r", "t", "f", "n", "a", "o", "low", "high" };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        char err[128] = "";
        char want[128];
        json_int_t v = 77;
        if (json_util_get_int(j, keys[i], 1, 65535, &v, err, sizeof(err)) != -1)
            fail_msg("field %s accepted as an integer", keys[i]);
        assert_int_equal(v, 77);
        snprintf(want, sizeof(want), "field \"%s\" must be an integer between 1 and 65535", keys[i]);
        assert_string_equal(err, want);
    }
    /* Negative bounds are printed as such. */
    char err[128];
    json_int_t v;
    assert_int_equal(json_util_get_int(j, "high", -3, -1, &v, err, sizeof(err)), -1);
    assert_string_equal(err, "field \"high\" must be an integer between -3 and -1");
    json_decref(j);
}

static void test_get_int_not_object(void **state)
{
    (void)state;
    json_t *arr = json_array();
    char err[128];
    json_int_t v;
    assert_int_equal(json_util_get_int(arr, "x", 0, 1, &v, err, sizeof(err)), -1);
    assert_string_equal(err, "field \"x\" is missing");
    assert_int_equal(json_util_get_int(NULL, "x", 0, 1, &v, err, sizeof(err)), -1);
    assert_string_equal(err, "field \"x\" is missing");
    json_decref(arr);
}

static void test_get_string_good(void **state)
{
    (void)state;
    json_t *j = parse("{\"name\": \"alice\", \"u\": \"\\u00e9t\\u00e9\", \"one\": \"x\"}");
    char err[128] = "";
    const char *s = NULL;
    assert_int_equal(json_util_get_string(j, "name", 0, &s, err, sizeof(err)), 0);
    assert_string_equal(s, "alice");
    assert_ptr_equal(s, json_string_value(json_object_get(j, "name"))); /* borrowed */
    assert_int_equal(json_util_get_string(j, "name", 5, &s, err, sizeof(err)), 0);
    assert_int_equal(json_util_get_string(j, "one", 1, &s, err, sizeof(err)), 0);
    assert_string_equal(s, "x");
    /* Length is in bytes: "été" is 5 bytes of UTF-8. */
    assert_int_equal(json_util_get_string(j, "u", 5, &s, err, sizeof(err)), 0);
    assert_string_equal(s, "\xc3\xa9t\xc3\xa9");
    assert_int_equal(json_util_get_string(j, "u", 4, &s, err, sizeof(err)), -1);
    assert_string_equal(err, "field \"u\" must be 1 to 4 characters without NUL");
    json_decref(j);
}

static void test_get_string_missing(void **state)
{
    (void)state;
    json_t *j = parse("{}");
    char err[128];
    const char *s = "untouched";
    assert_int_equal(json_util_get_string(j, "room", 10, &s, err, sizeof(err)), -1);
    assert_string_equal(s, "untouched");
    assert_string_equal(err, "field \"room\" is missing");
    json_decref(j);
}

static void test_get_string_ill_typed(void **state)
{
    (void)state;
    json_t *j = parse("{\"i\": 1, \"r\": 1.5, \"t\": true, \"n\": null, \"a\": [\"x\"], \"o\": {}}");
    const char *keys[] = { "i", "r", "t", "n", "a", "o" };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        char err[128];
        char want[128];
        const char *s = "untouched";
        if (json_util_get_string(j, keys[i], 10, &s, err, sizeof(err)) != -1)
            fail_msg("field %s accepted as a string", keys[i]);
        assert_string_equal(s, "untouched");
        snprintf(want, sizeof(want), "field \"%s\" must be a string", keys[i]);
        assert_string_equal(err, want);
    }
    json_decref(j);
}

static void test_get_string_bad_length(void **state)
{
    (void)state;
    json_t *j = parse("{\"empty\": \"\", \"long\": \"abcdef\"}");
    json_object_set_new(j, "nul", json_stringn("a\0b", 3));
    char err[128];
    const char *s = "untouched";
    assert_int_equal(json_util_get_string(j, "empty", 10, &s, err, sizeof(err)), -1);
    assert_string_equal(err, "field \"empty\" must be 1 to 10 characters without NUL");
    assert_int_equal(json_util_get_string(j, "long", 5, &s, err, sizeof(err)), -1);
    assert_string_equal(err, "field \"long\" must be 1 to 5 characters without NUL");
    assert_int_equal(json_util_get_string(j, "long", 6, &s, err, sizeof(err)), 0);
    s = "untouched";
    /* An embedded NUL (possible with json_stringn) is refused. */
    assert_int_equal(json_util_get_string(j, "nul", 10, &s, err, sizeof(err)), -1);
    assert_string_equal(s, "untouched");
    assert_non_null(strstr(err, "field \"nul\""));
    /* Without a bound the empty string is still refused and the field named;
     * the text states only the lower bound. */
    assert_int_equal(json_util_get_string(j, "empty", 0, &s, err, sizeof(err)), -1);
    assert_string_equal(err, "field \"empty\" must be at least 1 character without NUL");
    assert_int_equal(json_util_get_string(j, "nul", 0, &s, err, sizeof(err)), -1);
    assert_string_equal(err, "field \"nul\" must be at least 1 character without NUL");
    assert_string_equal(s, "untouched");
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_object_good),
        cmocka_unit_test(test_parse_object_malformed),
        cmocka_unit_test(test_parse_object_not_object),
        cmocka_unit_test(test_parse_object_small_err),
        cmocka_unit_test(test_get_int_good),
        cmocka_unit_test(test_get_int_missing),
        cmocka_unit_test(test_get_int_ill_typed),
        cmocka_unit_test(test_get_int_not_object),
        cmocka_unit_test(test_get_string_good),
        cmocka_unit_test(test_get_string_missing),
        cmocka_unit_test(test_get_string_ill_typed),
        cmocka_unit_test(test_get_string_bad_length),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
