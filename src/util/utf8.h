/* utf8.h — UTF-8 sequences: the length of a valid one, and the encoding of a code point. */
#ifndef VT_UTF8_H
#define VT_UTF8_H

#include <stddef.h>

/* Length of the valid UTF-8 sequence at s[0..n) (n >= 1), or 0 when it is invalid or cut short:
 * no overlong forms, surrogates or code points past U+10FFFF. */
size_t vt_utf8_sequence(const unsigned char *s, size_t n);

/* Writes code point cp (below U+10000) as UTF-8 to out; returns its length, 1 to 3. */
size_t vt_utf8_put(unsigned cp, char *out);

#endif
