/* json_util: typed field reads on jansson objects with error texts that
 * name the field, for request validation in discovery and the node. Each
 * reader returns 0, or -1 after writing a message such as
 *   field "syncport" must be an integer between 1 and 65535
 * into err (errlen bytes). Booleans and reals are not integers. */
#ifndef DCHAT_JSON_UTIL_H
#define DCHAT_JSON_UTIL_H

#include <jansson.h>
#include <stddef.h>

/* Parses buf as a JSON object. Returns a new reference, or NULL with
 * "malformed JSON at line L column C: ..." or "the body must be a JSON
 * object" in err. */
json_t *json_util_parse_object(const char *buf, size_t len, char *err,
                               size_t errlen);

/* A required integer field in [min, max]. */
int json_util_get_int(const json_t *obj, const char *key, json_int_t min,
                      json_int_t max, json_int_t *out, char *err,
                      size_t errlen);

/* A required string field of 1..maxlen bytes (0 = no bound), borrowed from
 * obj. */
int json_util_get_string(const json_t *obj, const char *key, size_t maxlen,
                         const char **out, char *err, size_t errlen);

#endif
