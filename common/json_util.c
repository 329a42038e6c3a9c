/* json_util: see json_util.h. */
#include "common/json_util.h"

#include <stdio.h>
#include <string.h>

json_t *json_util_parse_object(const char *buf, size_t len, char *err,
                               size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(err, errlen, "malformed JSON at line %d column %d: %s", jerr.line,
                 jerr.column, jerr.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        snprintf(err, errlen, "the body must be a JSON object");
        return NULL;
    }
    return root;
}

int json_util_get_int(const json_t *obj, const char *key, json_int_t min,
                      json_int_t max, json_int_t *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        snprintf(err, errlen, "field \"%s\" is missing", key);
        return -1;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        snprintf(err, errlen, "field \"%s\" must be an integer between %lld and %lld",
                 key, (long long)min, (long long)max);
        return -1;
    }
    *out = json_integer_value(v);
    return 0;
}

int json_util_get_string(const json_t *obj, const char *key, size_t maxlen,
                         const char **out, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        snprintf(err, errlen, "field \"%s\" is missing", key);
        return -1;
    }
    if (!json_is_string(v)) {
        snprintf(err, errlen, "field \"%s\" must be a string", key);
        return -1;
    }
    size_t n = json_string_length(v);
    if (n == 0 || (maxlen && n > maxlen) || strlen(json_string_value(v)) != n) {
        if (maxlen)
            snprintf(err, errlen, "field \"%s\" must be 1 to %zu characters without NUL",
                     key, maxlen);
        else /* no upper bound: do not print (size_t)-1 as one */
            snprintf(err, errlen, "field \"%s\" must be at least 1 character without NUL",
                     key);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}
